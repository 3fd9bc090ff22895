package openstack

import (
	"cmp"
	"context"
	"slices"

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

// ImageStatusActive is the status of an image that can be booted.
const ImageStatusActive = string(images.ImageStatusActive)

// ImageListOpts tunes ListImages.
type ImageListOpts struct {
	// Limit is the page size (0: Glance's default); every page is read.
	Limit int
}

// ListImages lists the images the credentials can see (all of them for an
// admin), sorted by name then ID.
func (c *Clients) ListImages(ctx context.Context, opts ImageListOpts) ([]Image, error) {
	sc, err := c.need(c.Image, ServiceImage)
	if err != nil {
		return nil, err
	}
	list, err := listAll(ctx, "list images", images.List(sc, images.ListOpts{Limit: opts.Limit}), images.ExtractImages)
	if err != nil {
		return nil, err
	}
	out := convert(list, func(i images.Image) Image {
		return Image{
			ID:         i.ID,
			Name:       i.Name,
			Status:     string(i.Status),
			Visibility: string(i.Visibility),
			Owner:      i.Owner,
			SizeBytes:  i.SizeBytes,
		}
	})
	slices.SortFunc(out, func(a, b Image) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}
