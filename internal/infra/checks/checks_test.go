package checks_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/checks"
)

func TestGroupAlertsByFailureDomain(t *testing.T) {
	inv := checks.Inventory{
		"compute1": {"rack": "r1", "switch": "sw-r1"}, "storage1": {"rack": "r1"},
		"compute2": {"rack": "r2"}, "loner": {},
	}
	addrs := map[string]string{"127.0.0.11": "compute1"}
	var alerts []checks.Alert
	for i := range 40 {
		host := "compute1"
		if i%2 == 1 {
			host = "storage1"
		}
		labels := map[string]string{"alertname": fmt.Sprintf("Alert%d", i%4), "host": host, "severity": "warning"}
		if i == 7 {
			labels = map[string]string{"alertname": "NodeDown", "instance": "127.0.0.11:9100", "severity": "critical"}
		}
		alerts = append(alerts, checks.Alert{Labels: labels})
	}
	alerts = append(alerts, checks.Alert{Labels: map[string]string{"alertname": "DiskFull", "host": "compute2"}, Annotations: map[string]string{"summary": "/ 97%"}})
	alerts = append(alerts, checks.Alert{Labels: map[string]string{"alertname": "Loose", "host": "loner"}})
	alerts = append(alerts, checks.Alert{Labels: map[string]string{"alertname": "Orphan"}})
	fs := checks.GroupAlerts(alerts, []string{"rack", "switch", "host"}, inv, addrs)
	require.Len(t, fs, 4)
	assert.Equal(t, "rack/r1", fs[0].Subject)
	assert.Equal(t, checks.Critical, fs[0].Severity, "the worst alert of the rack")
	assert.Contains(t, fs[0].Message, "40 firing alerts in rack r1")
	assert.Contains(t, fs[0].Message, "on 2 host(s): compute1, storage1")
	assert.Contains(t, fs[0].Message, "probably one rack-wide failure")
	var subjects []string
	for _, f := range fs[1:] {
		subjects = append(subjects, f.Subject+": "+f.Message)
	}
	assert.ElementsMatch(t, []string{"rack/r2: DiskFull firing on compute2: / 97%", "host/loner: Loose firing", "alert/Orphan: Orphan firing"}, subjects)
}

func TestFindingKeyIgnoresNumbers(t *testing.T) {
	a := checks.FindingKey("alerts", "rack/r1", "40 firing alerts in rack r1")
	assert.Equal(t, a, checks.FindingKey("alerts", "rack/r1", "41 firing alerts in rack r1"))
	assert.NotEqual(t, a, checks.FindingKey("alerts", "rack/r2", "40 firing alerts in rack r1"))
}

func TestProject(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var s []checks.Sample
	for d := range 10 {
		s = append(s, checks.Sample{At: t0.AddDate(0, 0, d), Value: 100 + 10*float64(d)})
	}
	p, ok := checks.Project("VCPU", s, 1190, t0.AddDate(0, 0, 9))
	require.True(t, ok)
	assert.InDelta(t, 10, p.PerDay, 1e-9)
	assert.Equal(t, "2025-04-20", p.RunsOut.Format("2006-01-02"), "1000 vCPU left at 10/day")
	_, ok = checks.Project("VCPU", s[:1], 1190, t0)
	assert.False(t, ok, "one sample is no trend")
	flat := []checks.Sample{{At: t0, Value: 5}, {At: t0.AddDate(0, 0, 1), Value: 5}}
	p, ok = checks.Project("VCPU", flat, 10, t0)
	assert.True(t, ok)
	assert.True(t, p.RunsOut.IsZero())
}

func TestMarkdown(t *testing.T) {
	prev := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	r := checks.Report{Cadence: "daily", WorkflowID: "check/daily", RequestedBy: "schedule", Ended: prev.Add(24 * time.Hour), Previous: &prev,
		Findings: []checks.Finding{{Severity: checks.Critical, Probe: "error-instances", Subject: "instance/x", Message: "a | b", New: true}},
		Probes:   []checks.ProbeRun{{Name: "error-instances", OK: true, Summary: "1 in ERROR"}, {Name: "security-updates", Target: "h1", Error: "ssh: refused"}}}
	md := r.Markdown()
	for _, want := range []string{"**1 critical, 0 warning, 0 info**", "1 new since the previous run", `| critical | new | error-instances | instance/x | a \| b |`, "FAILED: ssh: refused"} {
		assert.True(t, strings.Contains(md, want), "%q in\n%s", want, md)
	}
}
