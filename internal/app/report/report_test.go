package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/workflows"
)

func sample() *workflows.Report {
	t0 := time.Date(2026, 5, 1, 14, 0, 0, 0, time.UTC)
	t1, t2 := t0.Add(2*time.Second), t0.Add(75*time.Second)
	return &workflows.Report{
		WorkflowID: "restart-service/compute1/nova-compute", RunID: "r-1",
		Runbook: "restart-service", Target: "compute1/nova-compute", RequestedBy: "alice", Reason: "config change",
		Status: workflows.StatusAborted, Started: t0, Ended: t0.Add(3 * time.Minute),
		Summary:   "step \"start\" aborted by operator",
		LeftState: "nova-compute on compute1 is STOPPED",
		Plan:      []string{"stop nova-compute on compute1", "start nova-compute and verify it runs"},
		Steps: []workflows.StepStatus{
			{Name: "describe-host", State: workflows.StepDone, Target: "compute1", Started: &t0, Ended: &t1, Attempts: 1},
			{Name: "start", State: workflows.StepFailed, Target: "compute1", Started: &t1, Ended: &t2, Attempts: 2, Error: "exit 1 | unit failed"},
			{Name: "verify", State: workflows.StepPending, Detail: "not reached"},
		},
		Findings: []activities.Finding{
			{Severity: activities.SeverityInfo, Subject: "compute1", Message: "uptime 3 days"},
			{Severity: activities.SeverityCritical, Subject: "compute1/nova-compute", Message: "not running"},
			{Severity: activities.SeverityWarning, Subject: "compute1/nova-compute", Message: "no AMQP connection"},
		},
		Decisions: []workflows.Decision{
			{Kind: "gate", Name: "approve-restart", Outcome: "approved", By: "bob", Via: "cli", Comment: "ok", At: t1, Key: "SHA256:bobkey"},
			{Kind: "resolve", Name: "start", Outcome: "abort", By: "alice", Via: "slack:U1", At: t2, Key: "SHA256:gw", Gateway: "chat", ChatUser: "slack:U1"},
		},
		Refused: []workflows.RefusedMessage{{Signal: "approve", Target: "approve-restart", By: "alice", Reason: "alice requested this run", At: t1, Via: "update", Key: "SHA256:alicekey"}},
		Start:   &workflows.StartRecord{By: "alice", Key: "SHA256:alicekey"},
		Audit: []workflows.AuditEntry{
			{At: t0, Step: "describe-host", Activity: "DescribeHost", Target: "compute1", RequestedBy: "alice", Result: "ok", Duration: 1500 * time.Millisecond},
			{At: t1, Step: "start", Activity: "SetService", Target: "compute1", RequestedBy: "alice", Result: "error", Error: "exit 1", Duration: 3 * time.Second},
		},
	}
}

func TestMarkdown(t *testing.T) {
	md := Markdown(sample())
	for _, want := range []string{
		"# restart-service on `compute1/nova-compute`\n",
		"- **Status:** Aborted\n",
		"- **Run:** `restart-service/compute1/nova-compute` (run ID `r-1`)\n",
		"- **Reason:** config change\n",
		"- **Ended:** 2026-05-01T14:03:00Z (took 3m0s)\n",
		"**Left state: nova-compute on compute1 is STOPPED**\n",
		"## Plan\n\n1. stop nova-compute on compute1\n2. start nova-compute and verify it runs\n",
		"| Step | State | Duration | Target | Attempts | Detail | Error |\n",
		"| describe-host | done | 2s | compute1 | 1 |  |  |\n",
		"| start | failed | 1m13s | compute1 | 2 |  | exit 1 \\| unit failed |\n",
		"| verify | pending |  |  |  | not reached |  |\n",
		"## Decisions\n",
		"| 2026-05-01T14:00:02Z | gate | approve-restart | approved | bob | cli | ok | bob (SHA256:bobkey) |\n",
		"| resolve | start | abort | alice | slack:U1 |  | chat gateway chat for slack:U1 (SHA256:gw) |\n",
		"## Refused signals\n",
		"| 2026-05-01T14:00:02Z | approve | approve-restart | alice | alice requested this run | update | SHA256:alicekey |\n",
		"- **Requested by:** alice (signed with SHA256:alicekey)\n",
		"## Audit\n",
		"| 2026-05-01T14:00:02Z | start | SetService | compute1 | alice | error | 3s | exit 1 |\n",
		"| 2026-05-01T14:00:00Z | describe-host | DescribeHost | compute1 | alice | ok | 1.5s |  |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n---\n%s", want, md)
		}
	}
	// Findings grouped by severity, critical first.
	crit, warn, info := strings.Index(md, "### Critical"), strings.Index(md, "### Warning"), strings.Index(md, "### Info")
	if crit < 0 || warn < crit || info < warn {
		t.Errorf("findings not ordered critical, warning, info:\n%s", md)
	}
	if !strings.Contains(md, "### Critical\n\n- **compute1/nova-compute**: not running\n") {
		t.Errorf("critical finding missing:\n%s", md)
	}
	// Sections in order.
	last := -1
	for _, h := range []string{"## Plan", "## Steps", "## Findings", "## Decisions", "## Refused signals", "## Audit"} {
		i := strings.Index(md, h)
		if i <= last {
			t.Errorf("section %s out of order", h)
		}
		last = i
	}
	if strings.HasSuffix(md, "\n\n") || !strings.HasSuffix(md, "\n") {
		t.Error("markdown should end with exactly one newline")
	}
}

func TestMarkdownMinimal(t *testing.T) {
	md := Markdown(&workflows.Report{Runbook: "post-reboot-check", Target: "compute1", Status: workflows.StatusCompleted,
		DryRun: true, Summary: "dry run: plan computed, nothing changed"})
	for _, absent := range []string{"Left state", "## Findings", "## Decisions", "## Refused", "## Audit", "## Steps", "Reason"} {
		if strings.Contains(md, absent) {
			t.Errorf("minimal report shows %q:\n%s", absent, md)
		}
	}
	if !strings.Contains(md, "_Dry run: the plan only, nothing was changed._") {
		t.Errorf("dry run not said:\n%s", md)
	}
	if Markdown(nil) != "" {
		t.Error("nil report rendered")
	}
}

func TestJSON(t *testing.T) {
	b, err := JSON(sample())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"workflow_id", "run_id", "runbook", "target", "requested_by", "status", "summary", "left_state", "plan", "steps", "findings", "decisions", "refused", "audit"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks key %q", k)
		}
	}
	var back workflows.Report
	if err := json.Unmarshal(b, &back); err != nil || back.Decisions[0].By != "bob" {
		t.Errorf("round trip: %v %+v", err, back.Decisions)
	}
	if _, err := JSON(nil); err == nil {
		t.Error("nil accepted")
	}
}

func TestTable(t *testing.T) {
	var b strings.Builder
	if err := Table(&b, []string{"A", "LONGER"}, [][]string{{"x", ""}, {"yyyy", "two\nlines"}}); err != nil {
		t.Fatal(err)
	}
	want := "A     LONGER\nx     -\nyyyy  two lines\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
}
