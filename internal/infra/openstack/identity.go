package openstack

import (
	"cmp"
	"context"
	"slices"

	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
)

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
	list, err := listAll(ctx, "list projects", projects.List(c.Identity, projects.ListOpts{}), projects.ExtractProjects)
	if err != nil {
		return nil, err
	}
	out := convert(list, func(p projects.Project) Project {
		return Project{ID: p.ID, Name: p.Name, DomainID: p.DomainID, Enabled: p.Enabled}
	})
	slices.SortFunc(out, func(a, b Project) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// User is a Keystone user, minimal.
type User struct {
	ID      string
	Name    string
	Enabled bool
	// LastActiveAt is Keystone's last_active_at (a date, "" when Keystone does not track it:
	// it does only with [security_compliance] disable_user_account_days_inactive).
	LastActiveAt string
}

// ListUsers lists Keystone users in Keystone's order.
func (c *Clients) ListUsers(ctx context.Context) ([]User, error) {
	list, err := listAll(ctx, "list users", users.List(c.Identity, users.ListOpts{}), users.ExtractUsers)
	if err != nil {
		return nil, err
	}
	return convert(list, func(u users.User) User {
		last, _ := u.Extra["last_active_at"].(string)
		return User{ID: u.ID, Name: u.Name, Enabled: u.Enabled, LastActiveAt: last}
	}), nil
}
