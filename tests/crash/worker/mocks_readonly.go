package main

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/diagnose"
)

// The read-only runbooks' mocks: the recurring check's probes and its reports database, and
// diagnose's collectors. A probe and a collector change nothing; the one write is the check's
// report, which the real store replaces by run ID (store.Save), and so does this one.

// mockChecks stands for activities.Checks: the daily plan is one probe of every kind but the
// half-yearly release probe, and the security updates and disks probes on two hosts each.
type mockChecks struct{ st *Store }

var checkProbes = []activities.ProbeSpec{
	{Name: activities.ProbeAlerts}, {Name: activities.ProbeTickets}, {Name: activities.ProbeErrorInstances},
	{Name: activities.ProbeComputeServices}, {Name: activities.ProbeSecurityUpdates, Target: "h1"}, {Name: activities.ProbeSecurityUpdates, Target: "h2"},
	{Name: activities.ProbeCapacity}, {Name: activities.ProbeQuotas}, {Name: activities.ProbeDisks, Target: "h1"}, {Name: activities.ProbeDisks, Target: "h2"},
	{Name: activities.ProbeImages}, {Name: activities.ProbeLargeInstances}, {Name: activities.ProbeNetwork}, {Name: activities.ProbeAlertingTest},
	{Name: activities.ProbeUsage}, {Name: activities.ProbeAccounts}, {Name: activities.ProbeProjection},
}

func registerChecks(w worker.Worker, st *Store) {
	c := &mockChecks{st: st}
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("CheckPlan", c.CheckPlan)
	for _, n := range []string{"AlertsProbe", "TicketsProbe", "ErrorInstancesProbe", "ComputeServicesProbe", "SecurityUpdatesProbe", "CapacityProbe",
		"QuotasProbe", "DisksProbe", "ImagesProbe", "LargeInstancesProbe", "NetworkProbe", "AlertingTestProbe", "UsageProbe", "AccountsProbe",
		"ProjectionProbe", "ReleaseProbe"} {
		reg(n, c.probe)
	}
	reg("HostProbes", c.hostProbes)
	reg("Record", c.Record)
	d := &mockDiagnose{}
	reg("DiagnosePlan", d.DiagnosePlan)
	for _, n := range []string{"DiagnoseComponents", "DiagnoseRelated", "DiagnoseCapacity", "DiagnoseProcesses", "DiagnoseNode", "DiagnoseLogs",
		"DiagnoseNetwork", "DiagnoseConnects", "DiagnoseAPIs"} {
		reg(n, d.collect)
	}
}

func (c *mockChecks) CheckPlan(ctx context.Context, req activities.CheckPlanRequest) (activities.CheckPlan, error) {
	time.Sleep(work)
	probes := checkProbes
	if scale > 0 { // the per-host probes on every host
		probes = nil
		for _, p := range checkProbes {
			if p.Target == "" {
				probes = append(probes, p)
			}
		}
		for _, h := range scaled("h") {
			probes = append(probes, activities.ProbeSpec{Name: activities.ProbeSecurityUpdates, Target: h}, activities.ProbeSpec{Name: activities.ProbeDisks, Target: h})
		}
	}
	return activities.CheckPlan{Probes: probes, Parallelism: 4, ProbeTimeout: time.Minute}, nil
}

// probe: one finding per probe and target, always the same (what the real world shows).
func (c *mockChecks) probe(ctx context.Context, req activities.ProbeRequest) (activities.ProbeResult, error) {
	time.Sleep(work)
	return activities.ProbeResult{Summary: req.Probe + " read",
		Findings: []activities.CheckFinding{{Probe: req.Probe, Severity: activities.SeverityInfo, Subject: req.Probe + "/" + req.Target, Message: "as always"}}}, nil
}

// hostProbes: a batch of per-host probes, each answered as probe answers it.
func (c *mockChecks) hostProbes(ctx context.Context, req activities.HostProbesRequest) ([]activities.HostProbeResult, error) {
	var out []activities.HostProbeResult
	for _, t := range req.Targets {
		r := req.ProbeRequest
		r.Target = t
		res, _ := c.probe(ctx, r)
		out = append(out, activities.HostProbeResult{Target: t, Result: res})
	}
	return out, nil
}

// Record stores the report once per run ID (a retry replaces its own row, as store.Save does).
func (c *mockChecks) Record(ctx context.Context, rep activities.CheckReport) (activities.RecordResult, error) {
	time.Sleep(work)
	c.st.Act("report/"+rep.RunID, "stored", "store check report")
	return activities.RecordResult{Findings: rep.Findings, Stored: true, Markdown: "report"}, nil
}

// mockDiagnose stands for activities.Diagnose: an api-slow triage whose collectors all answer.
type mockDiagnose struct{}

func (d *mockDiagnose) DiagnosePlan(ctx context.Context, req activities.DiagnoseRequest) (activities.DiagnosePlan, error) {
	time.Sleep(work)
	p := activities.DiagnosePlan{Facts: diagnose.Facts{Symptom: req.Symptom, Subject: req.Subject, Since: req.Since, Until: req.Until}}
	for _, k := range []string{activities.CollectComponents, activities.CollectRelated, activities.CollectCapacity, activities.CollectLogs, activities.CollectConnects} {
		p.Collectors = append(p.Collectors, activities.CollectorSpec{Kind: k})
	}
	for _, h := range scaled("compute", "controller", "compute1") {
		p.Collectors = append(p.Collectors, activities.CollectorSpec{Kind: activities.CollectProcesses, Host: h, Services: []activities.ServiceFacts{{Role: "api", Name: "nova-api"}}},
			activities.CollectorSpec{Kind: activities.CollectNode, Host: h})
	}
	p.Collectors = append(p.Collectors, activities.CollectorSpec{Kind: activities.CollectAPIs, APIs: []string{"identity", "compute"}})
	return p, nil
}

// collect: the compute API is slow, everything else is well.
func (d *mockDiagnose) collect(ctx context.Context, req activities.CollectRequest) (diagnose.Facts, error) {
	time.Sleep(work)
	var f diagnose.Facts
	switch req.Spec.Kind {
	case activities.CollectAPIs:
		f.APIs = []diagnose.APITiming{{API: "identity", URL: "http://keystone/v3", Status: 200, Took: 20 * time.Millisecond, Source: "GET"},
			{API: "compute", URL: "http://nova/v2.1", Status: 200, Took: 9 * time.Second, Source: "GET"}}
	case activities.CollectProcesses:
		f.Processes = []diagnose.Process{{Host: req.Spec.Host, Service: "nova-api", Running: true, Source: "systemctl is-active"}}
	}
	return f, nil
}
