//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

// TestClusterEvacuate is issue 16's first failure on the production shape: an evacuation of a lab
// compute host through the cluster (the cluster's stackrun.yaml made from the lab's, its two
// workers, the CLI signing as the lab's operators). The worker running a migration is SIGKILLed;
// the other worker finishes the run, and Nova records one migration per instance: nothing is
// migrated twice. Needs the lab (`make lab`; under its lock, like the e2e tests) and fails when
// it is down.
func TestClusterEvacuate(t *testing.T) {
	lab := os.Getenv("STACKRUN_LAB_DIR")
	if lab == "" {
		lab = filepath.Join(devserver.RepoRoot(t), ".state", "lab")
	}
	labYAML := filepath.Join(lab, "stackrun.yaml")
	cfg, err := config.Load(config.LoadOptions{Path: labYAML})
	require.NoError(t, err, "the lab's configuration (make lab)")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := openstack.NewClients(ctx, openstack.Options{Cloud: cfg.OpenStack.Cloud, CloudsFile: cfg.OpenStack.CloudsFile})
	require.NoError(t, err, "the OpenStack lab does not answer: make lab")
	n := &nova{t: t, cl: cl, started: time.Now()}
	t.Cleanup(n.enableComputes)
	n.enableComputes()

	r := prepareRig(t)
	r.keys = filepath.Join(lab, "operators") // the lab's trust: block, the lab's operators
	r.start(labYAML)

	ids := n.boot("cluster-evac", "compute2", 4)
	out := r.mustCLI("run", "evacuate", "--host", "compute2", "--to", "compute3", "--parallel", "2",
		"--as", "alice", "--reason", "cluster evacuation drill", "--output", "json")
	var started struct {
		WorkflowID string `json:"workflow_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &started), out)
	id := started.WorkflowID
	require.NotEmpty(t, id, out)
	r.waitStatusFor(id, "gate approve-plan", 5*time.Minute, func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateApprovePlan
	})
	r.mustCLI("approve", id, workflows.GateApprovePlan, "--as", "bob", "--comment", "cluster drill")

	// A move in flight: kill the worker that runs it (its heartbeat stops; the other worker
	// takes the retry after the 20 s heartbeat timeout).
	var identity string
	deadline := time.Now().Add(5 * time.Minute)
	for identity == "" && time.Now().Before(deadline) {
		if _, who, ok := r.pendingActivity(id, "MoveInstance"); ok && who != "" {
			identity = who
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.NotEmpty(t, identity, "a MoveInstance activity runs on a worker")
	pid, err := strconv.Atoi(identity[strings.LastIndexByte(identity, '/')+1:])
	require.NoError(t, err, identity)
	victim, survivor := "stackrun-worker-1", "stackrun-worker-2"
	if r.pid(victim) != pid {
		victim, survivor = survivor, victim
	}
	require.Equal(t, pid, r.pid(victim), "the move runs on %s, one of the cluster's workers", identity)
	r.killPID(pid, syscall.SIGKILL)
	killedAt := time.Now()
	t.Logf("%s (pid %d) SIGKILLed with a migration in flight", victim, pid)

	var rep workflows.Report
	out = r.mustCLI("report", id, "--wait", "--format", "json", "--timeout", "10m")
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	t.Logf("evacuation completed %s after the kill: %s", time.Since(killedAt).Round(time.Second), rep.Summary)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v", rep.Summary, rep.Steps)
	require.Zero(t, r.pid(victim), "%s stayed dead: the other worker finished the run", victim)
	for _, sid := range ids {
		s, err := servers.Get(context.Background(), cl.Compute, sid).Extract()
		require.NoError(t, err)
		require.Equal(t, "compute3", s.Host, sid)
		require.Equal(t, "ACTIVE", s.Status, sid)
	}
	m := n.migrations(ids)
	require.Equal(t, map[string]int{"live-migration": len(ids)}, m, "one live migration per instance, none twice")
	// The moves left at the kill (the one in flight among them) were finished by the survivor.
	after := 0
	for _, rec := range r.auditRecords(survivor) {
		if rec.WorkflowID == id && rec.Activity == "MoveInstance" && rec.Time.After(killedAt) {
			after++
		}
	}
	require.NotZero(t, after, "%s ran the moves left after the kill", survivor)
	require.Equal(t, "enabled", n.service("compute2"), "compute2 is back in service")
}

// nova: the few lab operations the test needs (the e2e package has the full set).
type nova struct {
	t       *testing.T
	cl      *openstack.Clients
	started time.Time
}

func (n *nova) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// enableComputes leaves every compute enabled and not forced down (as the lab is kept).
func (n *nova) enableComputes() {
	ctx, cancel := n.ctx()
	defer cancel()
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return n.cl, nil }}
	up := false
	for _, h := range []string{"compute1", "compute2", "compute3"} {
		if _, err := c.SetComputeService(ctx, activities.ServiceChange{Host: h, ForcedDown: &up}); err != nil {
			n.t.Logf("restore %s forced_down: %v", h, err)
		}
		if _, err := c.SetComputeService(ctx, activities.ServiceChange{Host: h, Enable: true}); err != nil {
			n.t.Logf("restore %s enable: %v", h, err)
		}
	}
}

func (n *nova) service(host string) string {
	ctx, cancel := n.ctx()
	defer cancel()
	svcs, err := n.cl.ComputeServices(ctx, "nova-compute")
	require.NoError(n.t, err)
	for _, s := range svcs {
		if s.Host == host {
			return s.Status
		}
	}
	return ""
}

// boot creates count m1.tiny servers (no network) on host, waits for them to be ACTIVE there,
// and deletes them at clean-up.
func (n *nova) boot(prefix, host string, count int) []string {
	t := n.t
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pages, err := images.List(n.cl.Image, images.ListOpts{Status: images.ImageStatusActive}).AllPages(ctx)
	require.NoError(t, err)
	imgs, err := images.ExtractImages(pages)
	require.NoError(t, err)
	require.NotEmpty(t, imgs, "the lab has no active image")
	fp, err := flavors.ListDetail(n.cl.Compute, flavors.ListOpts{}).AllPages(ctx)
	require.NoError(t, err)
	fl, err := flavors.ExtractFlavors(fp)
	require.NoError(t, err)
	var flavor string
	for _, f := range fl {
		if f.Name == "m1.tiny" {
			flavor = f.ID
		}
	}
	require.NotEmpty(t, flavor, "the lab has no flavor m1.tiny")
	ids := make([]string, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = n.create(ctx, servers.CreateOpts{Name: fmt.Sprintf("%s-%d-%02d", prefix, time.Now().Unix(), i),
				ImageRef: imgs[0].ID, FlavorRef: flavor, AvailabilityZone: "nova:" + host, Networks: "none"})
		}()
	}
	wg.Wait()
	t.Cleanup(func() { n.delete(ids) })
	for _, err := range errs {
		require.NoError(t, err, "boot a server on %s", host)
	}
	for _, id := range ids {
		require.Eventually(t, func() bool {
			s, err := servers.Get(ctx, n.cl.Compute, id).Extract()
			return err == nil && s.Status == "ACTIVE" && s.Host == host
		}, 3*time.Minute, time.Second, "%s ACTIVE on %s", id, host)
	}
	return ids
}

// create boots one server, retrying a request the lab's nova-api leaves hanging: each try has
// its own deadline, and a server the hung request did create (its unique name) is taken instead
// of booting a second one.
func (n *nova) create(ctx context.Context, opts servers.CreateOpts) (string, error) {
	var last error
	for try := 0; try < 4 && ctx.Err() == nil; try++ {
		if try > 0 {
			pages, err := servers.List(n.cl.Compute, servers.ListOpts{Name: "^" + opts.Name + "$"}).AllPages(ctx)
			if err == nil {
				if found, _ := servers.ExtractServers(pages); len(found) == 1 {
					return found[0].ID, nil
				}
			}
		}
		tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		s, err := servers.Create(tctx, n.cl.Compute, opts, nil).Extract()
		cancel()
		if err == nil {
			return s.ID, nil
		}
		last = err
		n.t.Logf("create %s (try %d): %v", opts.Name, try+1, err)
	}
	return "", last
}

func (n *nova) delete(ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, id := range ids {
		if id != "" {
			_ = servers.ResetState(ctx, n.cl.Compute, id, servers.StateActive).ExtractErr()
			_ = servers.Delete(ctx, n.cl.Compute, id).ExtractErr()
		}
	}
	for _, id := range ids {
		for ctx.Err() == nil && id != "" {
			if _, err := servers.Get(ctx, n.cl.Compute, id).Extract(); gophercloud.ResponseCodeIs(err, 404) {
				break
			}
			time.Sleep(time.Second)
		}
	}
}

// migrations counts the migration records of the servers since the test started, by type.
func (n *nova) migrations(ids []string) map[string]int {
	ctx, cancel := n.ctx()
	defer cancel()
	out := map[string]int{}
	for _, id := range ids {
		ms, err := activities.InstanceMigrations(ctx, n.cl, id)
		require.NoError(n.t, err)
		for _, m := range ms {
			if !m.CreatedAt.Before(n.started.UTC().Add(-time.Minute)) {
				out[m.MigrationType]++
			}
		}
	}
	return out
}
