package workflows

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A report over the budget is cut, longest list first, until it fits: the run still ends with a
// report (Temporal terminates a run whose result passes 2 MB), which says what was cut; one
// under the budget is left as it was.
func TestFitReportCutsTheLongestListsUntilItFits(t *testing.T) {
	var rows []string
	for i := range 30000 {
		rows = append(rows, fmt.Sprintf("nova on compute-%05d: python3-nova 2:26.2.2-1~deb12u4 → 2:26.2.2-1~deb12u5 %s", i, strings.Repeat("x", 20)))
	}
	small := []map[string]any{{"host": "controller", "changes": []string{"a"}}}
	rep := &Report{Summary: "done", Plan: rows[:2000], Details: map[string]any{"packages": rows, "upgrade_plan": small}}
	details := rep.Details
	b, _ := json.Marshal(rep)
	require.Greater(t, len(b), 2<<20, "the report is over Temporal's 2 MB before")

	fitReport(rep, ReportBudget)
	b, _ = json.Marshal(rep)
	assert.LessOrEqual(t, len(b), ReportBudget)
	pk := rep.Details["packages"].([]any)
	assert.Equal(t, rows[0], pk[0], "the first entries are kept")
	assert.Contains(t, pk[len(pk)-1], "more entries cut (of ")
	assert.Len(t, details["packages"], 30000, "the run's own details are not changed")
	assert.Equal(t, small, rep.Details["upgrade_plan"], "a short list is left as it was")
	require.NotEmpty(t, rep.Findings)
	assert.Contains(t, rep.Findings[len(rep.Findings)-1].Message, "cut packages (")

	before := &Report{Summary: "done", Plan: rows[:10], Details: map[string]any{"packages": rows[:100]}}
	fitReport(before, ReportBudget)
	assert.Len(t, before.Details["packages"], 100)
	assert.Len(t, before.Plan, 10)
	assert.Empty(t, before.Findings)
}

// TestCarryAuditByActivityPastItsMax: a wave's hosts each have steps of their own with a few
// calls each: past carryAuditMax entries the successful calls are one entry per activity, and
// every failure stays.
func TestCarryAuditByActivityPastItsMax(t *testing.T) {
	var audit []AuditEntry
	for h := range 500 {
		for _, a := range []string{"InstancesOnHost", "SetComputeService", "MoveInstance"} {
			audit = append(audit, AuditEntry{Step: fmt.Sprintf("c%d/%s", h, a), Activity: a, Target: fmt.Sprintf("c%d", h), Result: "ok"})
		}
	}
	audit = append(audit, AuditEntry{Step: "c7/reboot", Activity: "RebootHost", Target: "c7", Result: "error: no route"})
	require.Len(t, carryAudit(audit[:300]), 300, "under the max: as before")
	out := carryAudit(audit)
	require.Len(t, out, 4)
	for _, e := range out[:3] {
		assert.Equal(t, 500, e.Count, e.Activity)
		assert.Contains(t, e.Target, "500 item(s) in 500 step(s), every call ok")
	}
	assert.Equal(t, "error: no route", out[3].Result)
	assert.Equal(t, "c7", out[3].Target)
}
