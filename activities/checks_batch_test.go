package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
)

// batchRunner answers the security-updates command per host: fails[h] errors before it answers.
type batchRunner struct {
	mu    sync.Mutex
	calls map[string]int
	fails map[string]int
	err   map[string]error
}

func (b *batchRunner) Run(_ context.Context, h remote.Host, _ remote.Command) (remote.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls[h.Name]++
	if b.calls[h.Name] <= b.fails[h.Name] {
		return remote.Result{}, b.err[h.Name]
	}
	return remote.Result{Stdout: "Inst openssl [3.0.1] (3.0.2 Debian-Security:12/stable-security [amd64])\n"}, nil
}

func batchChecks(t *testing.T, r Runner, hosts ...string) *Checks {
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	inv := map[string]InventoryHost{}
	for i, h := range hosts {
		inv[h] = InventoryHost{Address: fmt.Sprintf("10.0.0.%d", i+1), Roles: []string{"compute"}}
	}
	return &Checks{Hosts: &Hosts{Inventory: inv, Runner: r, Catalogue: cat}, Settings: CheckSettings{DefaultOSFamily: "debian"}}
}

// The batch answers per host what each host's own probe answers: the same result, a transient
// error tried again (twice: an SSH connection cut twice in a row), a host-key error not retried
// and reported as that host's error only, a host failing every try reported as its error.
func TestHostProbesAnswerPerHostAsTheProbeDoes(t *testing.T) {
	defer func(b time.Duration) { hostProbeBackoff = b }(hostProbeBackoff)
	hostProbeBackoff = 10 * time.Millisecond
	r := &batchRunner{calls: map[string]int{}, fails: map[string]int{"h2": 2, "h3": 5, "h4": 3},
		err: map[string]error{"h2": errors.New("connection reset"), "h3": fmt.Errorf("dial: %w", remote.ErrHostKeyMismatch),
			"h4": errors.New("connection reset")}}
	c := batchChecks(t, r, "h1", "h2", "h3", "h4")
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(c)
	req := HostProbesRequest{ProbeRequest: ProbeRequest{Cadence: "daily", Probe: ProbeSecurityUpdates}, Targets: []string{"h1", "h2", "h3", "h4"}}
	v, err := env.ExecuteActivity(c.HostProbes, req)
	require.NoError(t, err)
	var out []HostProbeResult
	require.NoError(t, v.Get(&out))
	require.Len(t, out, 4)

	want, err := c.SecurityUpdatesProbe(context.Background(), ProbeRequest{Cadence: "daily", Probe: ProbeSecurityUpdates, Target: "h1"})
	require.NoError(t, err)
	assert.Equal(t, HostProbeResult{Target: "h1", Result: want}, out[0])
	assert.Equal(t, "h2", out[1].Target)
	assert.Empty(t, out[1].Error, "a transient error twice is tried a third time")
	assert.Len(t, out[1].Result.Findings, 1)
	assert.Equal(t, "h3", out[2].Target)
	assert.Contains(t, out[2].Error, ErrTypeHostKey)
	assert.Equal(t, "h4", out[3].Target)
	assert.Contains(t, out[3].Error, "connection reset", "three failures: the host's error is the answer")
	assert.Equal(t, map[string]int{"h1": 2, "h2": 3, "h3": 1, "h4": 3}, r.calls, "h1 twice: once here, once for want")
}

// A batch retried after its worker died resumes from its heartbeats: hosts already answered are
// not probed again.
func TestHostProbesResumeSkipsFinishedHosts(t *testing.T) {
	r := &batchRunner{calls: map[string]int{}}
	c := batchChecks(t, r, "h1", "h2", "h3")
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(c)
	before := map[string]HostProbeResult{"h1": {Target: "h1", Result: ProbeResult{Summary: "from the first attempt"}}}
	env.SetHeartbeatDetails(before)
	v, err := env.ExecuteActivity(c.HostProbes, HostProbesRequest{ProbeRequest: ProbeRequest{Probe: ProbeSecurityUpdates}, Targets: []string{"h1", "h2", "h3"}})
	require.NoError(t, err)
	var out []HostProbeResult
	require.NoError(t, v.Get(&out))
	assert.Equal(t, "from the first attempt", out[0].Result.Summary)
	assert.Equal(t, map[string]int{"h2": 1, "h3": 1}, r.calls)
}

func TestHostProbesRefusesAProbeNotPerHost(t *testing.T) {
	c := batchChecks(t, &batchRunner{calls: map[string]int{}}, "h1")
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(c)
	_, err := env.ExecuteActivity(c.HostProbes, HostProbesRequest{ProbeRequest: ProbeRequest{Probe: ProbeAlerts}, Targets: []string{"h1"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), ErrTypeInvalidInput)
}

// stuckRunner answers every host but stuck, which hangs (ignoring its context) until release.
type stuckRunner struct {
	batchRunner
	stuck   string
	release chan struct{}
}

func (s *stuckRunner) Run(ctx context.Context, h remote.Host, cmd remote.Command) (remote.Result, error) {
	if h.Name == s.stuck {
		<-s.release
	}
	return s.batchRunner.Run(ctx, h, cmd)
}

func hostProbesWorkflow(ctx workflow.Context, req HostProbesRequest) ([]HostProbeResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute, HeartbeatTimeout: 2 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 2, InitialInterval: 100 * time.Millisecond}})
	var out []HostProbeResult
	err := workflow.ExecuteActivity(ctx, "HostProbes", req).Get(ctx, &out)
	return out, err
}

// A worker that dies mid-batch (here: hangs and stops reporting, as a killed one does) on a real
// dev server: the batch's retry on another worker probes only the host the dead one had not
// heartbeated as finished, and the results of the others come from its heartbeats.
func TestHostProbesWorkerDiesMidBatch(t *testing.T) {
	srv := devserver.Start(t)
	tq := "host-probes-crash"
	hosts := []string{"h1", "h2", "h3"}
	first := &stuckRunner{batchRunner: batchRunner{calls: map[string]int{}}, stuck: "h3", release: make(chan struct{})}
	t.Cleanup(func() { close(first.release) })
	wa := worker.New(srv.Client, tq, worker.Options{})
	wa.RegisterWorkflow(hostProbesWorkflow)
	wa.RegisterActivity(batchChecks(t, first, hosts...))
	require.NoError(t, wa.Start())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: tq},
		hostProbesWorkflow, HostProbesRequest{ProbeRequest: ProbeRequest{Cadence: "daily", Probe: ProbeSecurityUpdates}, Targets: hosts})
	require.NoError(t, err)
	// Wait until the server holds the heartbeat with h1 and h2 finished, then the worker dies.
	require.Eventually(t, func() bool {
		d, err := srv.Client.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
		if err != nil || len(d.PendingActivities) == 0 || d.PendingActivities[0].HeartbeatDetails == nil {
			return false
		}
		var done map[string]HostProbeResult
		_ = converter.GetDefaultDataConverter().FromPayloads(d.PendingActivities[0].HeartbeatDetails, &done)
		return len(done) == 2
	}, 30*time.Second, 100*time.Millisecond)
	wa.Stop()

	second := &batchRunner{calls: map[string]int{}}
	wb := worker.New(srv.Client, tq, worker.Options{})
	wb.RegisterWorkflow(hostProbesWorkflow)
	wb.RegisterActivity(batchChecks(t, second, hosts...))
	require.NoError(t, wb.Start())
	t.Cleanup(wb.Stop)
	var out []HostProbeResult
	require.NoError(t, run.Get(ctx, &out))
	require.Len(t, out, 3)
	for i, h := range hosts {
		assert.Equal(t, h, out[i].Target)
		assert.Empty(t, out[i].Error, h)
		assert.Len(t, out[i].Result.Findings, 1, h)
	}
	assert.Equal(t, map[string]int{"h1": 1, "h2": 1}, first.calls)
	assert.Equal(t, map[string]int{"h3": 1}, second.calls, "finished hosts are not probed again")
}
