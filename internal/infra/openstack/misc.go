package openstack

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// Image is a Glance image, minimal.
type Image struct {
	ID         string
	Name       string
	Status     string // active, queued, saving, deactivated...
	Visibility string // public, private, shared, community
	Owner      string // project ID
	SizeBytes  int64
}

// ListImages lists the images the credentials can see (all of them for an
// admin), sorted by name then ID.
func (c *Clients) ListImages(ctx context.Context) ([]Image, error) {
	sc, err := c.need(c.Image, ServiceImage)
	if err != nil {
		return nil, err
	}
	pages, err := images.List(sc, images.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	list, err := images.ExtractImages(pages)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]Image, 0, len(list))
	for _, i := range list {
		out = append(out, Image{
			ID:         i.ID,
			Name:       i.Name,
			Status:     string(i.Status),
			Visibility: string(i.Visibility),
			Owner:      i.Owner,
			SizeBytes:  i.SizeBytes,
		})
	}
	slices.SortFunc(out, func(a, b Image) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Project is a Keystone project, minimal.
type Project struct {
	ID       string
	Name     string
	DomainID string
	Enabled  bool
}

// ListProjects lists Keystone projects (all of them for an admin), sorted by
// name then ID.
func (c *Clients) ListProjects(ctx context.Context) ([]Project, error) {
	pages, err := projects.List(c.Identity, projects.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	list, err := projects.ExtractProjects(pages)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	out := make([]Project, 0, len(list))
	for _, p := range list {
		out = append(out, Project{ID: p.ID, Name: p.Name, DomainID: p.DomainID, Enabled: p.Enabled})
	}
	slices.SortFunc(out, func(a, b Project) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// AccountStat is the usage of the Swift account of the credentials' project.
type AccountStat struct {
	Containers int64
	Objects    int64
	BytesUsed  int64
}

// ObjectStoreAccountStat HEADs the Swift account.
func (c *Clients) ObjectStoreAccountStat(ctx context.Context) (AccountStat, error) {
	sc, err := c.need(c.ObjectStore, ServiceObjectStore)
	if err != nil {
		return AccountStat{}, err
	}
	// Swift answers HEAD on an account with 204 when it is empty and 200 otherwise (2.30 does);
	// gophercloud's accounts.Get accepts only 204, so ask directly and read the headers.
	resp, err := sc.Head(ctx, sc.ServiceURL(), &gophercloud.RequestOpts{OkCodes: []int{200, 204}})
	if err != nil {
		return AccountStat{}, fmt.Errorf("object-store account stat: %w", err)
	}
	num := func(h string) int64 {
		n, _ := strconv.ParseInt(resp.Header.Get(h), 10, 64)
		return n
	}
	return AccountStat{Containers: num("X-Account-Container-Count"), Objects: num("X-Account-Object-Count"), BytesUsed: num("X-Account-Bytes-Used")}, nil
}
