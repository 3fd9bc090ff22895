package runmetrics_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/internal/app/runmetrics"
	"github.com/stackrun/stackrun/internal/infra/audit"
	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

// MetricsProbe stands in for a runbook: it sets RunbookStatus, answers the status query with
// st, and stays open unless st is a closed status.
func MetricsProbe(ctx workflow.Context, st workflows.Status) error {
	if err := workflow.UpsertTypedSearchAttributes(ctx, workflows.AttrStatus.ValueSet(string(st.Status))); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, workflows.QueryStatus, func() (workflows.Status, error) { return st, nil }); err != nil {
		return err
	}
	if st.Status == workflows.StatusCompleted {
		return nil
	}
	return workflow.Await(ctx, func() bool { return false })
}

func TestRunMetrics(t *testing.T) {
	srv := devserver.Start(t)
	const tq = "metrics-test"
	w := worker.New(srv.Client, tq, worker.Options{})
	w.RegisterWorkflow(MetricsProbe)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	now := time.Now()
	ctx := context.Background()
	start := func(id string, st workflows.Status) {
		_, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, MetricsProbe, st)
		require.NoError(t, err)
		t.Cleanup(func() { _ = srv.Client.TerminateWorkflow(context.Background(), id, "", "test done") })
	}
	start("probe/gate", workflows.Status{Status: workflows.StatusWaitingApproval,
		OpenGates: []workflows.GateStatus{{Name: "approve-restart", OpenedAt: now.Add(-90 * time.Second)}}})
	start("probe/stalled", workflows.Status{Status: workflows.StatusStalled,
		Stalled: []workflows.StalledStatus{{Step: "start", Since: now.Add(-10 * time.Minute)}}})
	start("probe/running", workflows.Status{Status: workflows.StatusRunning})
	start("probe/done", workflows.Status{Status: workflows.StatusCompleted})

	log := audit.New(nil)
	log.Add(audit.Record{Activity: "SetService", Result: "error", ErrorType: "HostKeyMismatch"})
	h := runmetrics.New(runmetrics.Options{Client: srv.Client, TaskQueue: tq, Audit: log, TTL: time.Millisecond,
		Pool: func() remote.Stats { return remote.Stats{Open: 3, Dials: 5, Connects: 4, Reconnects: 1} },
		Now:  func() time.Time { return now }})
	scrape := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	var m string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		m = scrape()
		if contains(m, `stackrun_runs_open{runbook="MetricsProbe",status="WaitingApproval"} 1`,
			`stackrun_runs_open{runbook="MetricsProbe",status="Stalled"} 1`, `stackrun_runs_closed{status="Completed"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("visibility does not show the runs; last scrape:\n%s", m)
		}
	}
	for _, want := range []string{
		`stackrun_runs_up 1`,
		`stackrun_runs_open{runbook="MetricsProbe",status="Running"} 1`,
		`stackrun_gate_waiting_seconds{runbook="MetricsProbe",workflow_id="probe/gate",gate="approve-restart"} 90`,
		`stackrun_gates_waiting{runbook="MetricsProbe"} 1`,
		`stackrun_step_stalled_seconds{runbook="MetricsProbe",workflow_id="probe/stalled",step="start"} 600`,
		`stackrun_steps_stalled{runbook="MetricsProbe"} 1`,
		`stackrun_activity_failures_total{activity="SetService",error_type="HostKeyMismatch"} 1`,
		`stackrun_ssh_connections_open 3`,
		`stackrun_ssh_connects_total 4`,
	} {
		assert.Contains(t, m, want)
	}
	assert.NotContains(t, m, `stackrun_runs_open{runbook="MetricsProbe",status="Completed"}`, "closed runs are not open")
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
