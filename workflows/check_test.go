package workflows_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/checks"
	wf "github.com/stackrun/stackrun/workflows"
)

var chk *activities.Checks

func checkFixture(t *testing.T, plan activities.CheckPlan) *fixture {
	f := newFixture(t, basePolicy())
	f.env.RegisterActivity(chk)
	f.env.OnActivity(chk.CheckPlan, mock.Anything, mock.Anything).Return(plan, nil)
	return f
}

// recordEcho stands in for Record: keys every finding, marks those of subject "new/..." new,
// and reports it stored.
func recordEcho(recorded *checks.Report) func(context.Context, activities.CheckReport) (activities.RecordResult, error) {
	return func(_ context.Context, rep activities.CheckReport) (activities.RecordResult, error) {
		*recorded = rep
		prev := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range rep.Findings {
			rep.Findings[i].New = strings.HasPrefix(rep.Findings[i].Subject, "new/")
		}
		return activities.RecordResult{Findings: rep.Findings, Stored: true, Previous: &prev, Markdown: "md"}, nil
	}
}

func TestCheckFailingProbeIsAFindingAndParallelismIsBounded(t *testing.T) {
	var probes []activities.ProbeSpec
	probes = append(probes, activities.ProbeSpec{Name: activities.ProbeErrorInstances}, activities.ProbeSpec{Name: activities.ProbeComputeServices})
	for _, h := range []string{"h1", "h2", "h3", "h4", "h5", "h6"} {
		probes = append(probes, activities.ProbeSpec{Name: activities.ProbeSecurityUpdates, Target: h})
	}
	f := checkFixture(t, activities.CheckPlan{Probes: probes, Parallelism: 3, ProbeTimeout: time.Minute})
	var inflight, peak atomic.Int32
	track := func() func() {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		return func() { inflight.Add(-1) }
	}
	var calls sync.Map
	f.env.OnActivity(chk.ErrorInstancesProbe, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ProbeRequest) (activities.ProbeResult, error) {
		defer track()()
		return activities.ProbeResult{Findings: []checks.Finding{{Severity: checks.Critical, Subject: "new/instance/x", Message: "vm1 is in ERROR: boom"}}}, nil
	})
	f.env.OnActivity(chk.ComputeServicesProbe, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ProbeRequest) (activities.ProbeResult, error) {
		defer track()()
		return activities.ProbeResult{}, errors.New("nova-api: 503 Service Unavailable")
	})
	// The hosts come in batches (HostProbes): each host of a batch counts as one probe at once.
	var batches [][]string
	var mu sync.Mutex
	f.env.OnActivity(chk.HostProbes, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.HostProbesRequest) ([]activities.HostProbeResult, error) {
		var done []func()
		for range r.Targets {
			done = append(done, track())
		}
		defer func() {
			for _, d := range done {
				d()
			}
		}()
		mu.Lock()
		batches = append(batches, r.Targets)
		mu.Unlock()
		var out []activities.HostProbeResult
		for _, h := range r.Targets {
			n, _ := calls.LoadOrStore(h, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			if h == "h4" {
				out = append(out, activities.HostProbeResult{Target: h, Error: "RemoteHostKey: host key mismatch"})
				continue
			}
			out = append(out, activities.HostProbeResult{Target: h, Result: activities.ProbeResult{Summary: "0 pending",
				Metrics: []checks.Metric{{Name: "host.security_updates", Subject: h, Value: 0}}}})
		}
		return out, nil
	})
	var recorded checks.Report
	f.env.OnActivity(chk.Record, mock.Anything, mock.Anything).Return(recordEcho(&recorded))
	f.run(wf.Check.Type, wf.CheckInput{Meta: wf.Meta{RequestedBy: "schedule"}, Cadence: "daily"})
	require.True(t, f.env.IsWorkflowCompleted())
	require.NoError(t, f.env.GetWorkflowError())
	var rep wf.Report
	require.NoError(t, f.env.GetWorkflowResult(&rep))

	assert.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.LessOrEqual(t, peak.Load(), int32(3), "at most checks.parallelism probes at once")
	assert.GreaterOrEqual(t, peak.Load(), int32(2), "probes run in parallel")
	// The compute-services probe failed twice (one retry), the h4 probe once (non-retryable):
	// each is a finding, the run completed.
	var failed []string
	for _, fd := range recorded.Findings {
		if strings.Contains(fd.Message, "could not answer") {
			failed = append(failed, fd.Subject+"="+fd.Severity)
		}
	}
	assert.ElementsMatch(t, []string{"probe/compute-services=warning", "probe/security-updates/h4=warning"}, failed)
	n, _ := calls.Load("h4")
	assert.Equal(t, int32(1), n.(*atomic.Int32).Load(), "a non-retryable probe error is not retried")
	assert.Len(t, recorded.Probes, 8)
	assert.Equal(t, [][]string{{"h1", "h2", "h3"}, {"h4", "h5", "h6"}}, batches, "batches of at most checks.parallelism hosts")
	assert.Len(t, recorded.Metrics, 5, "each answering host's metrics (h4 failed)")
	for _, pr := range recorded.Probes {
		if pr.Name == activities.ProbeSecurityUpdates {
			assert.Equal(t, pr.Target != "h4", pr.OK, pr.Target)
			if pr.OK {
				assert.Equal(t, "0 pending", pr.Summary, pr.Target)
			}
		}
	}
	assert.Contains(t, rep.Summary, "1 critical, 2 warning")
	assert.Contains(t, rep.Summary, "1 new since")
	assert.Contains(t, rep.Summary, "8 probe(s), 2 failed")
	var newOnes int
	for _, fd := range rep.Findings {
		if strings.HasPrefix(fd.Message, "NEW: ") {
			newOnes++
		}
	}
	assert.Equal(t, 1, newOnes)
	var hostSteps []string
	for _, s := range rep.Steps {
		assert.Contains(t, []wf.StepState{wf.StepDone}, s.State, s.Name)
		if strings.HasPrefix(s.Name, "probe/security-updates/") {
			hostSteps = append(hostSteps, s.Name+"@"+s.Target)
			assert.Equal(t, s.Name == "probe/security-updates/h4", s.Error != "", s.Name)
		}
	}
	assert.Equal(t, []string{"probe/security-updates/h1@h1", "probe/security-updates/h2@h2", "probe/security-updates/h3@h3",
		"probe/security-updates/h4@h4", "probe/security-updates/h5@h5", "probe/security-updates/h6@h6"}, hostSteps, "a step per host")
}

func TestCheckProbeTimeoutIsAFinding(t *testing.T) {
	f := checkFixture(t, activities.CheckPlan{Probes: []activities.ProbeSpec{{Name: activities.ProbeAlerts}, {Name: activities.ProbeTickets}},
		Parallelism: 4, ProbeTimeout: 30 * time.Second})
	f.env.OnActivity(chk.AlertsProbe, mock.Anything, mock.Anything).Return(activities.ProbeResult{},
		temporal.NewTimeoutError(0, errors.New("Alertmanager at http://127.0.0.10:9093 is unreachable")))
	f.env.OnActivity(chk.TicketsProbe, mock.Anything, mock.Anything).Return(activities.ProbeResult{Summary: "no tickets source configured"}, nil)
	var recorded checks.Report
	f.env.OnActivity(chk.Record, mock.Anything, mock.Anything).Return(recordEcho(&recorded))
	f.run(wf.Check.Type, wf.CheckInput{Meta: wf.Meta{RequestedBy: "alice"}, Cadence: "hourly"})
	require.NoError(t, f.env.GetWorkflowError())
	require.Len(t, recorded.Findings, 1)
	assert.Equal(t, checks.Critical, recorded.Findings[0].Severity, "blind to alerts is critical")
	assert.Contains(t, recorded.Findings[0].Message, "unreachable")
}

func TestCheckRecordFailureFailsTheRun(t *testing.T) {
	f := checkFixture(t, activities.CheckPlan{Probes: []activities.ProbeSpec{{Name: activities.ProbeRelease}}, Parallelism: 1})
	f.env.OnActivity(chk.ReleaseProbe, mock.Anything, mock.Anything).Return(activities.ProbeResult{}, nil)
	var attempts atomic.Int32
	f.env.OnActivity(chk.Record, mock.Anything, mock.Anything).Return(func(context.Context, activities.CheckReport) (activities.RecordResult, error) {
		attempts.Add(1)
		return activities.RecordResult{}, errors.New("dial tcp 127.0.0.10:3306: connection refused")
	})
	f.run(wf.Check.Type, wf.CheckInput{Meta: wf.Meta{RequestedBy: "schedule"}, Cadence: "quarterly"})
	err := f.env.GetWorkflowError()
	require.Error(t, err, "a check whose report cannot be recorded fails, so that its schedule pauses")
	assert.Contains(t, err.Error(), "report not recorded")
	assert.Equal(t, int32(basePolicy().ActivityMaxAttempts), attempts.Load(), "recording is retried first")
}

func TestCheckHalfYearlyStartsStagedUpgrade(t *testing.T) {
	f := checkFixture(t, activities.CheckPlan{Parallelism: 1})
	var recorded checks.Report
	f.env.OnActivity(chk.Record, mock.Anything, mock.Anything).Return(recordEcho(&recorded))
	var started *wf.StagedUpgradeInput
	f.env.OnWorkflow(wf.StagedUpgrade.Type, mock.Anything, mock.Anything).Return(func(_ workflow.Context, in wf.StagedUpgradeInput) (*wf.Report, error) {
		started = &in
		return &wf.Report{Status: wf.StatusCompleted}, nil
	})
	f.run(wf.Check.Type, wf.CheckInput{Meta: wf.Meta{RequestedBy: "schedule"}, Cadence: "half-yearly"})
	require.NoError(t, f.env.GetWorkflowError())
	require.Len(t, recorded.Findings, 1)
	assert.Contains(t, recorded.Findings[0].Message, "half-yearly staged upgrade started: staged-upgrade/cloud")
	assert.Contains(t, recorded.Findings[0].Message, "waits at gate release-notes-read")
	require.NotNil(t, started, "the staged upgrade was started")
	assert.True(t, started.ToCandidate)
	assert.Equal(t, "schedule", started.RequestedBy)
}

func TestCheckInputValidation(t *testing.T) {
	for _, c := range []struct {
		in   wf.CheckInput
		want string
	}{
		{wf.CheckInput{Meta: wf.Meta{RequestedBy: "alice"}}, "cadence: required"},
		{wf.CheckInput{Meta: wf.Meta{RequestedBy: "alice"}, Cadence: "yearly"}, `cadence "yearly": unknown cadence: want one of hourly, daily, weekly, monthly, quarterly, half-yearly`},
		{wf.CheckInput{Meta: wf.Meta{RequestedBy: "alice"}, Cadence: "daily", Parallelism: -1}, "parallelism"},
	} {
		err := c.in.Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), c.want)
	}
	ok := wf.CheckInput{Meta: wf.Meta{RequestedBy: "alice"}, Cadence: "half-yearly"}
	require.NoError(t, ok.Validate())
	assert.Equal(t, "check/half-yearly", wf.Check.WorkflowID(&ok))
}
