package control

import (
	"strings"
	"testing"
	"time"

	"github.com/stackrun/stackrun/workflows"
)

func TestQuery(t *testing.T) {
	cases := []struct {
		f    Filter
		want string
	}{
		{Filter{}, ""},
		{Filter{Status: "WaitingApproval"}, "RunbookStatus = 'WaitingApproval'"},
		{Filter{Runbook: "restart-service"}, "WorkflowType = 'RestartService'"},
		{Filter{Runbook: "SomeWorkflow"}, "WorkflowType = 'SomeWorkflow'"},
		{Filter{Status: "Stalled", Runbook: "post-reboot-check", Target: "compute1.example.org"},
			"RunbookStatus = 'Stalled' AND WorkflowType = 'PostRebootCheck' AND RunbookTarget = 'compute1.example.org'"},
		{Filter{Target: "compute1/nova-compute"}, "RunbookTarget = 'compute1/nova-compute'"},
	}
	for _, c := range cases {
		got, err := Query(c.f)
		if err != nil {
			t.Errorf("%+v: %v", c.f, err)
			continue
		}
		if got != c.want {
			t.Errorf("%+v: got %q, want %q", c.f, got, c.want)
		}
	}
}

func TestQueryRefusesInjection(t *testing.T) {
	bad := []Filter{
		{Status: "Running' OR 1=1 --"},
		{Status: "running"}, // case matters: the attribute is a keyword
		{Target: "x' OR WorkflowId != '"},
		{Target: `x" OR "a" = "a`},
		{Target: `x\' OR 1=1`},
		{Target: "x\nOR 1=1"},
		{Target: "x`y"},
		{Target: strings.Repeat("a", 300)},
		{Runbook: "restart-service' OR 'a'='a"},
		{Runbook: "a b"},
	}
	for _, f := range bad {
		if q, err := Query(f); err == nil {
			t.Errorf("%+v: accepted as %q", f, q)
		}
	}
	_, err := Query(Filter{Status: "Bogus"})
	if err == nil || !strings.Contains(err.Error(), "WaitingApproval") {
		t.Errorf("status error should list the statuses: %v", err)
	}
}

func TestWorkflowTypeAndRunbookName(t *testing.T) {
	for _, rb := range workflows.Runbooks {
		wt := WorkflowType(rb)
		if wt == "" || strings.ContainsAny(wt, "./") {
			t.Errorf("%s: workflow type %q", rb.Name, wt)
		}
		if RunbookName(wt) != rb.Name {
			t.Errorf("RunbookName(%q) = %q, want %q", wt, RunbookName(wt), rb.Name)
		}
	}
	if RunbookName("Nope") != "" {
		t.Error("unknown type mapped")
	}
}

func TestIdentity(t *testing.T) {
	if got, err := Identity("bob"); err != nil || got != "bob" {
		t.Errorf("Identity(bob) = %q, %v", got, err)
	}
	for _, bad := range []string{"bob smith", "-x", "a'b", strings.Repeat("a", 65)} {
		if _, err := Identity(bad); err == nil {
			t.Errorf("Identity(%q) accepted", bad)
		}
	}
	if got, err := Identity(""); err == nil && !workflows.ValidOperator(got) {
		t.Errorf("login name %q accepted but invalid", got)
	}
}

func TestDryRunSuffix(t *testing.T) {
	if got := DryRunSuffix(time.Unix(1700000000, 0)); got != "/dry-run-1700000000" {
		t.Errorf("suffix %q", got)
	}
}
