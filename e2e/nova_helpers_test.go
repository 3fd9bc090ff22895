//go:build e2e

package e2e

// Helpers of the Nova end-to-end tests: servers booted on a chosen compute, their states, the
// compute services, and the clean-up every test registers so that the shared lab stays usable.

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/placement/v1/resourceproviders"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

type novaLab struct {
	t       *testing.T
	cfgPath string
	cfg     *config.Config
	cl      *openstack.Clients
	labfail string
	labctl  string
	srv     *devserver.Server
	worker  *exec.Cmd
	image   string
	flavor  string
	started time.Time
}

// newNovaLab connects to the lab (failing when it is not up), starts a dev server and the real
// worker, and registers the clean-up that leaves every compute enabled, not forced down, and
// running nova-compute.
func newNovaLab(t *testing.T, workerEnv ...string) *novaLab {
	t.Helper()
	cfgPath := labConfig(t)
	cfg, err := config.Load(config.LoadOptions{Path: cfgPath})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := openstack.NewClients(ctx, openstack.Options{Cloud: cfg.OpenStack.Cloud, CloudsFile: cfg.OpenStack.CloudsFile})
	if err != nil {
		t.Fatalf("the OpenStack lab does not answer (%v): run lab/up.sh", err)
	}
	src := filepath.Join(devserver.RepoRoot(t), "lab", "bin")
	l := &novaLab{t: t, cfgPath: cfgPath, cfg: cfg, cl: cl, labfail: filepath.Join(src, "labfail"), labctl: filepath.Join(src, "labctl"), started: time.Now()}
	t.Cleanup(l.restoreComputes)
	l.restoreComputes() // leftovers of an earlier, interrupted run

	pages, err := images.List(cl.Image, images.ListOpts{Status: images.ImageStatusActive}).AllPages(ctx)
	require.NoError(t, err)
	imgs, err := images.ExtractImages(pages)
	require.NoError(t, err)
	require.NotEmpty(t, imgs, "the lab has no active image")
	l.image = imgs[0].ID
	fp, err := flavors.ListDetail(cl.Compute, flavors.ListOpts{}).AllPages(ctx)
	require.NoError(t, err)
	fl, err := flavors.ExtractFlavors(fp)
	require.NoError(t, err)
	for _, f := range fl {
		if f.Name == "m1.tiny" {
			l.flavor = f.ID
		}
	}
	require.NotEmpty(t, l.flavor, "the lab has no flavor m1.tiny")

	l.srv = devserver.Start(t)
	l.worker = startWorker(t, cfgPath, l.srv, workerEnv...)
	return l
}

func (l *novaLab) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// restoreComputes enables every compute, clears forced_down and starts nova-compute where it
// is stopped.
func (l *novaLab) restoreComputes() {
	ctx, cancel := l.ctx()
	defer cancel()
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return l.cl, nil }}
	for _, h := range []string{"compute1", "compute2", "compute3"} {
		_ = exec.Command(l.labctl, "unmask", h, "nova-compute").Run() // a hold an aborted run left
		for _, svc := range []string{"sshd", "nova-compute"} {
			if exec.Command(l.labctl, "status", h, svc).Run() != nil {
				if out, err := exec.Command(l.labctl, "start", h, svc).CombinedOutput(); err != nil {
					l.t.Logf("restore %s/%s: %v %s", h, svc, err, out)
				}
			}
		}
		up := false
		if _, err := c.SetComputeService(ctx, activities.ServiceChange{Host: h, ForcedDown: &up}); err != nil {
			l.t.Logf("restore %s forced_down: %v", h, err)
		}
		if _, err := c.SetComputeService(ctx, activities.ServiceChange{Host: h, Enable: true}); err != nil {
			l.t.Logf("restore %s enable: %v", h, err)
		}
	}
	for _, h := range []string{"compute1", "compute2", "compute3"} {
		l.waitSchedulable(h)
	}
}

// waitSchedulable waits until host's resource provider no longer carries the trait
// COMPUTE_STATUS_DISABLED. nova-compute syncs that trait itself after an enable; a restart racing
// the enable (restoreComputes starting nova-compute just before) can leave it set for up to a
// periodic task's interval, and a boot then finds no valid host (seen in a fresh-clone run).
func (l *novaLab) waitSchedulable(host string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+30*time.Second)
	defer cancel()
	const disabled = "COMPUTE_STATUS_DISABLED"
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pages, err := resourceproviders.List(l.cl.Placement, resourceproviders.ListOpts{Name: host}).AllPages(ctx)
		var rps []resourceproviders.ResourceProvider
		if err == nil {
			rps, err = resourceproviders.ExtractResourceProviders(pages)
		}
		if err == nil && len(rps) != 1 {
			l.t.Logf("placement: %d resource providers named %s: not waiting for its traits", len(rps), host)
			return
		}
		if err == nil {
			var tr *resourceproviders.ResourceProviderTraits
			if tr, err = resourceproviders.GetTraits(ctx, l.cl.Placement, rps[0].UUID).Extract(); err == nil && !slices.Contains(tr.Traits, disabled) {
				return
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			require.Failf(l.t, "compute not schedulable", "%s's resource provider still has %s after 3 minutes (err %v)", host, disabled, err)
		}
		time.Sleep(2 * time.Second)
	}
}

// create boots one server, retrying a request that the lab's nova-api leaves hanging: each try
// has its own deadline, and a server that the hung request did create (found by its unique name)
// is taken instead of booting a second one.
func (l *novaLab) create(ctx context.Context, name, host string) (string, error) {
	var last error
	for try := 0; try < 4 && ctx.Err() == nil; try++ {
		if try > 0 {
			pages, err := servers.List(l.cl.Compute, servers.ListOpts{Name: "^" + name + "$"}).AllPages(ctx)
			if err == nil {
				if found, _ := servers.ExtractServers(pages); len(found) == 1 {
					return found[0].ID, nil
				}
			}
		}
		tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		s, err := servers.Create(tctx, l.cl.Compute, servers.CreateOpts{
			Name: name, ImageRef: l.image, FlavorRef: l.flavor,
			AvailabilityZone: "nova:" + host, Networks: "none",
		}, nil).Extract()
		cancel()
		if err == nil {
			return s.ID, nil
		}
		last = err
		l.t.Logf("create %s (try %d): %v", name, try+1, err)
	}
	return "", last
}

// boot creates n servers on host (m1.tiny, no network), waits for them to be ACTIVE, and deletes
// them at clean-up.
func (l *novaLab) boot(prefix, host string, n int) []string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ids := make([]string, n)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			id, err := l.create(ctx, fmt.Sprintf("%s-%02d", prefix, i), host)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	l.t.Cleanup(func() { l.deleteServers(ids) })
	require.Empty(l.t, errs, "boot servers")
	for _, id := range ids {
		l.waitServer(id, func(s *servers.Server) bool { return s.Status == "ACTIVE" && s.Host == host }, 3*time.Minute, "ACTIVE on "+host)
	}
	return ids
}

func (l *novaLab) deleteServers(ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, id := range ids {
		if id == "" {
			continue
		}
		// An ERROR server deletes fine; reset first in case a task is stuck.
		_ = servers.ResetState(ctx, l.cl.Compute, id, servers.StateActive).ExtractErr()
		_ = servers.Delete(ctx, l.cl.Compute, id).ExtractErr()
	}
	for _, id := range ids {
		for ctx.Err() == nil && id != "" {
			if _, err := servers.Get(ctx, l.cl.Compute, id).Extract(); gophercloud.ResponseCodeIs(err, 404) {
				break
			}
			time.Sleep(time.Second)
		}
	}
}

func (l *novaLab) server(id string) *servers.Server {
	l.t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	s, err := servers.Get(ctx, l.cl.Compute, id).Extract()
	require.NoError(l.t, err)
	return s
}

func (l *novaLab) waitServer(id string, ok func(*servers.Server) bool, timeout time.Duration, what string) *servers.Server {
	l.t.Helper()
	end := time.Now().Add(timeout)
	var s *servers.Server
	for time.Now().Before(end) {
		s = l.server(id)
		if ok(s) {
			return s
		}
		time.Sleep(time.Second)
	}
	l.t.Fatalf("server %s not %s after %s: %s on %s (task %q)", id, what, timeout, s.Status, s.Host, s.TaskState)
	return nil
}

// stop makes a server SHUTOFF; setError puts it in ERROR (os-resetState).
func (l *novaLab) stop(id string) {
	ctx, cancel := l.ctx()
	defer cancel()
	require.NoError(l.t, servers.Stop(ctx, l.cl.Compute, id).ExtractErr())
	l.waitServer(id, func(s *servers.Server) bool { return s.Status == "SHUTOFF" && s.TaskState == "" }, 2*time.Minute, "SHUTOFF")
}

func (l *novaLab) setError(id string) {
	ctx, cancel := l.ctx()
	defer cancel()
	require.NoError(l.t, servers.ResetState(ctx, l.cl.Compute, id, servers.StateError).ExtractErr())
	l.waitServer(id, func(s *servers.Server) bool { return s.Status == "ERROR" }, time.Minute, "ERROR")
}

func (l *novaLab) service(host string) activities.ComputeService {
	l.t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return l.cl, nil }}
	svcs, err := c.ComputeServices(ctx)
	require.NoError(l.t, err)
	i := slices.IndexFunc(svcs, func(s activities.ComputeService) bool { return s.Host == host })
	require.GreaterOrEqual(l.t, i, 0, host)
	return svcs[i]
}

// migrations counts the migration records of the servers created since the test started, by type.
func (l *novaLab) migrations(ids []string) map[string]int {
	l.t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	out := map[string]int{}
	for _, id := range ids {
		ms, err := activities.InstanceMigrations(ctx, l.cl, id)
		require.NoError(l.t, err)
		for _, m := range ms {
			if !m.CreatedAt.Before(l.started.UTC().Add(-time.Minute)) {
				out[m.MigrationType]++
			}
		}
	}
	return out
}

func (l *novaLab) start(rb string, in workflows.Input) string {
	l.t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	r, err := workflows.FindRunbook(rb)
	require.NoError(l.t, err)
	started, err := control.Start(ctx, l.srv.Client, l.cfg.Temporal.TaskQueue, r, in, asRequester(l.t, in))
	require.NoError(l.t, err)
	return started.WorkflowID
}

func (l *novaLab) status(id string) workflows.Status {
	l.t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	st, err := control.Status(ctx, l.srv.Client, id)
	if err != nil {
		require.NoError(l.t, err, "%s", l.pollers())
	}
	return st
}

// pollers says which workers poll the task queue for workflow tasks: a status query that times
// out with none has no worker to answer it, not a slow one.
func (l *novaLab) pollers() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := l.srv.Client.DescribeTaskQueue(ctx, l.cfg.Temporal.TaskQueue, enums.TASK_QUEUE_TYPE_WORKFLOW)
	if err != nil {
		return fmt.Sprintf("workflow pollers of %s: %v", l.cfg.Temporal.TaskQueue, err)
	}
	var ps []string
	for _, p := range d.GetPollers() {
		ps = append(ps, fmt.Sprintf("%s (last poll %s ago)", p.GetIdentity(), time.Since(p.GetLastAccessTime().AsTime()).Round(time.Second)))
	}
	if len(ps) == 0 {
		return fmt.Sprintf("no worker polls task queue %s", l.cfg.Temporal.TaskQueue)
	}
	return fmt.Sprintf("workflow pollers of %s: %s", l.cfg.Temporal.TaskQueue, strings.Join(ps, ", "))
}

// waitFor polls the run's status until ok or the timeout.
func (l *novaLab) waitFor(id string, timeout time.Duration, what string, ok func(workflows.Status) bool) workflows.Status {
	l.t.Helper()
	end := time.Now().Add(timeout)
	var st workflows.Status
	for time.Now().Before(end) {
		st = l.status(id)
		if ok(st) {
			return st
		}
		if st.Status == workflows.StatusCompleted || st.Status == workflows.StatusFailed || st.Status == workflows.StatusAborted {
			break
		}
		time.Sleep(time.Second)
	}
	l.t.Fatalf("run %s: %s not reached within %s: status %s, step %s, stalled %+v, findings %+v", id, what, timeout, st.Status, st.CurrentStep, st.Stalled, st.Findings)
	return st
}

func (l *novaLab) approve(id, gate, by string) {
	l.t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	_, err := control.Approve(ctx, l.srv.Client, id, workflows.GateDecisionRequest{Gate: gate, By: by, Comment: "e2e", Via: "cli"}, as(l.t, by))
	require.NoError(l.t, err)
}

func (l *novaLab) report(id string, timeout time.Duration) *workflows.Report {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rep, err := control.Report(ctx, l.srv.Client, id, true)
	require.NoError(l.t, err, "report of %s", id)
	return rep
}

func stepByName(rep *workflows.Report, name string) *workflows.StepStatus {
	for i := range rep.Steps {
		if rep.Steps[i].Name == name {
			return &rep.Steps[i]
		}
	}
	return nil
}

func stepsWithPrefix(rep *workflows.Report, prefix string) []workflows.StepStatus {
	var out []workflows.StepStatus
	for _, s := range rep.Steps {
		if strings.HasPrefix(s.Name, prefix) {
			out = append(out, s)
		}
	}
	return out
}
