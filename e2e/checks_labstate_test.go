//go:build e2e

package e2e

// Helpers of TestChecksContentOnLab: known state set up on the lab, and the cloud read directly.

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/placement/v1/resourceproviders"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/workflows"
)

// placementCapacity sums Placement's allocatable ((total - reserved) x ratio) and used.
func placementCapacity(t *testing.T, l *checksLab) (used, total map[string]float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg, err := resourceproviders.List(l.cl.Placement, resourceproviders.ListOpts{}).AllPages(ctx)
	require.NoError(t, err)
	rps, err := resourceproviders.ExtractResourceProviders(pg)
	require.NoError(t, err)
	used, total = map[string]float64{}, map[string]float64{}
	for _, rp := range rps {
		inv, err := resourceproviders.GetInventories(ctx, l.cl.Placement, rp.UUID).Extract()
		require.NoError(t, err)
		for rc, i := range inv.Inventories {
			r := float64(i.AllocationRatio)
			if r == 0 {
				r = 1
			}
			total[rc] += float64(i.Total-i.Reserved) * r
		}
		us, err := resourceproviders.GetUsages(ctx, l.cl.Placement, rp.UUID).Extract()
		require.NoError(t, err)
		for rc, u := range us.Usages {
			used[rc] += float64(u)
		}
	}
	return used, total
}

func probeSummaries(t *testing.T, rep *workflows.Report) map[string]string {
	out := map[string]string{}
	for _, p := range probesOf(t, rep) {
		if p.Target == "" {
			require.True(t, p.OK, "%s: %s", p.Name, p.Error)
			out[p.Name] = p.Summary
		}
	}
	return out
}

func subjectsOf(fs []activities.CheckFinding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Subject)
	}
	return out
}

func chkServers(t *testing.T, l *checksLab) []servers.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg, err := servers.List(l.cl.Compute, servers.ListOpts{AllTenants: true}).AllPages(ctx)
	require.NoError(t, err)
	s, err := servers.ExtractServers(pg)
	require.NoError(t, err)
	return s
}

// chkActive boots an m1.tiny instance (no network) and waits for it ACTIVE; deleted at the end.
func chkActive(t *testing.T, l *checksLab, name string, meta map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pages, err := images.List(l.cl.Image, images.ListOpts{Status: images.ImageStatusActive}).AllPages(ctx)
	require.NoError(t, err)
	imgs, _ := images.ExtractImages(pages)
	require.NotEmpty(t, imgs)
	fp, err := flavors.ListDetail(l.cl.Compute, flavors.ListOpts{}).AllPages(ctx)
	require.NoError(t, err)
	fls, _ := flavors.ExtractFlavors(fp)
	var tiny string
	for _, f := range fls {
		if f.Name == "m1.tiny" {
			tiny = f.ID
		}
	}
	require.NotEmpty(t, tiny, "the lab's m1.tiny flavor")
	srv, err := servers.Create(ctx, l.cl.Compute, servers.CreateOpts{Name: name, ImageRef: imgs[0].ID, FlavorRef: tiny, Networks: "none", Metadata: meta}, nil).Extract()
	require.NoError(t, err)
	t.Cleanup(func() { chkDeleteServer(l.cl, srv.ID) })
	chkWait(t, l, srv.ID, "ACTIVE")
	return srv.ID
}

func chkWait(t *testing.T, l *checksLab, id, status string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.Eventually(t, func() bool {
		s, err := servers.Get(ctx, l.cl.Compute, id).Extract()
		return err == nil && s.Status == status && s.TaskState == ""
	}, 2*time.Minute, 500*time.Millisecond, "server %s %s", id, status)
}

// chkSetService updates a host's nova-compute; the lab's nova-api now and then leaves a request
// hanging, and the update is idempotent, so it is tried again with a fresh deadline.
func chkSetService(t *testing.T, l *checksLab, host string, opts services.UpdateOpts) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sp, err := services.List(l.cl.Compute, services.ListOpts{Host: host, Binary: "nova-compute"}).AllPages(ctx)
	require.NoError(t, err)
	svcs, _ := services.ExtractServices(sp)
	require.Len(t, svcs, 1)
	for try := 0; ; try++ {
		uctx, ucancel := context.WithTimeout(ctx, 90*time.Second)
		_, err = services.Update(uctx, l.cl.Compute, svcs[0].ID, opts).Extract()
		ucancel()
		if err == nil || try == 2 {
			break
		}
		t.Logf("update %s's nova-compute (try %d): %v", host, try+1, err)
	}
	if err != nil {
		t.Errorf("update %s's nova-compute to %s: %v", host, opts.Status, err)
	}
}

// novaRW opens the lab's Nova database with its writable account (databases.nova_rw_dsn).
func novaRW(t *testing.T, l *checksLab) *sql.DB {
	t.Helper()
	require.NotEmpty(t, l.cfg.Databases.NovaRWDSN, "databases.nova_rw_dsn in the lab's stackrun.yaml")
	_, err := mysql.ParseDSN(l.cfg.Databases.NovaRWDSN)
	require.NoError(t, err)
	db, err := sql.Open("mysql", l.cfg.Databases.NovaRWDSN)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// fillTo fills the file system at dir to frac of its capacity (df's used / (used + available)).
func fillTo(t *testing.T, dir string, frac float64) {
	t.Helper()
	var sf syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &sf))
	bs := int64(sf.Frsize) // df counts in fragment size units
	usedB := int64(sf.Blocks-sf.Bfree) * bs
	capB := usedB + int64(sf.Bavail)*bs
	want := int64(float64(capB)*frac) - usedB
	require.Greater(t, want, int64(0), "%s is already above %.0f%%", dir, frac*100)
	p := filepath.Join(dir, "chk-e2e-fill")
	out, err := exec.Command("fallocate", "-l", fmt.Sprint(want), p).CombinedOutput()
	require.NoError(t, err, "fill %s: %s", dir, out)
	t.Cleanup(func() { _ = os.Remove(p) })
}

// mountsUnder lists the mount points directly under dir (their names), from /proc/self/mounts.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	require.NoError(t, err)
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && filepath.Dir(f[1]) == dir && !slices.Contains(out, filepath.Base(f[1])) {
			out = append(out, filepath.Base(f[1]))
		}
	}
	sort.Strings(out)
	return out
}
