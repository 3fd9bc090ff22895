package workflows

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/diagnose"
)

// diag names the Diagnose collectors (the worker registers activities.NewDiagnose: a read-only
// view of the catalogue, GETs only).
var diag *activities.Diagnose

// Diagnose triages a symptom read-only, macro first (RUNBOOKS.md §9): the subject's own view,
// the components' state, the implicated nodes' resources, the services' log lines around the
// time and the network facts are collected in parallel; the report opens with the blast radius,
// then the suspected component and node with the evidence for it, strongest first, each piece
// naming the command or API call that produced it. It changes nothing: every activity it can
// call is one of Diagnose's, which hold only the catalogue's read-only view.
var Diagnose = Define(Def[DiagnoseInput, diagnosePlan]{
	Name:     "diagnose",
	Short:    "Triage a symptom read-only, macro first: blast radius, then suspected component and node with the evidence (--symptom, --subject, --since)",
	ReadOnly: true,
	Steps:    []string{"plan", "collect", "analyze"},
	Key:      func(in *DiagnoseInput) string { return in.Symptom + "/" + in.Subject },
	Plan:     planDiagnose,
	Act:      runDiagnose,
})

// DiagnoseInput is the input of Diagnose.
type DiagnoseInput struct {
	Meta
	// Symptom is what is wrong (diagnose.Symptoms).
	Symptom string `json:"symptom" flag:"symptom" usage:"instance-unreachable, instance-wont-boot, db-connection-errors, volume-create-timeout or api-slow (required)"`
	// Subject is what shows it: an instance ID or name, an address, an inventory host, a service,
	// a volume, an API, or all.
	Subject string `json:"subject" flag:"subject" usage:"instance ID or name, IP address, host, service, volume, API (identity, compute...) or all, as the symptom takes (required)"`
	// Since is how far back logs and affected resources are read: 30m, 2h, 1h30m, 3d (default 30m).
	Since string `json:"since,omitempty" flag:"since" usage:"how far back to read logs and count affected resources: 30m, 2h, 1h30m, 3d (default 30m, at most 7d)"`
	// Parallel bounds the collectors running at once (0: policy.default_parallelism).
	Parallel int `json:"parallel,omitempty" flag:"parallel" usage:"collectors running at once (default: policy.default_parallelism)"`
}

// Validate refuses an unknown symptom, a subject that is not a plain name, ID or address (it
// reaches commands and API filters), and a --since that is not a duration back from now.
func (in *DiagnoseInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if err := diagnose.ValidateSymptom(in.Symptom); err != nil {
		return fieldError(err)
	}
	if _, err := diagnose.ParseSubject(in.Symptom, in.Subject); err != nil {
		return fieldError(err)
	}
	if _, err := diagnose.ParseSince(in.Since); err != nil {
		return fieldError(err)
	}
	if in.Parallel < 0 || in.Parallel > 64 {
		return &FieldError{Field: "parallel", Value: fmt.Sprint(in.Parallel), Problem: "must be 0 (the policy's default) to 64"}
	}
	return nil
}

func fieldError(err error) error {
	if e, ok := err.(*diagnose.InputError); ok {
		return &FieldError{Field: e.Field, Value: e.Value, Problem: e.Problem}
	}
	return err
}

// diagnosePlan is the window, the subject as the cloud knows it, and the collectors to run.
type diagnosePlan struct {
	req  activities.DiagnoseRequest
	plan activities.DiagnosePlan
}

func planDiagnose(r *Run, in *DiagnoseInput, p *diagnosePlan) (Approval, error) {
	subj, _ := diagnose.ParseSubject(in.Symptom, in.Subject) // validated before Plan
	since, _ := diagnose.ParseSince(in.Since)
	now := r.Now()
	p.req = activities.DiagnoseRequest{Symptom: in.Symptom, Subject: subj, Since: now.Add(-since), Until: now}
	err := r.Do("plan", StepOptions{Target: in.Subject, ReadOnly: true}, func(ctx workflow.Context) error {
		return r.Exec(r.WithActivity(ctx, ActOpts{Timeout: 2 * time.Minute, Attempts: 2}), "plan", in.Subject, diag.DiagnosePlan, &p.plan, p.req)
	})
	if err != nil {
		return Approval{}, err
	}
	lines := []string{fmt.Sprintf("diagnose %s of %s (%s) over %s since %s, read-only; %d collector(s), at most %d at once",
		in.Symptom, in.Subject, subj.Kind, since, p.req.Since.UTC().Format(time.RFC3339), len(p.plan.Collectors), r.parallelism(in.Parallel))}
	if res := p.plan.Facts.Resource; res != nil {
		lines = append(lines, fmt.Sprintf("subject: %s %s (%s) is %s on host %s", res.Kind, res.Name, res.ID, res.Status, cmp.Or(res.Host, "-")))
	}
	for _, c := range p.plan.Collectors {
		lines = append(lines, "collect "+c.ID()+": "+collectorWhat(c))
	}
	for _, n := range p.plan.Facts.Notes {
		lines = append(lines, "note: "+n.Message)
	}
	lines = append(lines, "analyze: blast radius first, then the suspects by the weight of their evidence")
	r.SetPlan(lines)
	return Approval{DryRun: "dry run: collectors planned, nothing collected"}, nil
}

func collectorWhat(c activities.CollectorSpec) string {
	switch c.Kind {
	case activities.CollectComponents:
		return "Nova services, Neutron agents, Cinder services"
	case activities.CollectRelated:
		return "other resources with the symptom (blast radius)"
	case activities.CollectCapacity:
		return "Placement capacity and the flavor's fit"
	case activities.CollectProcesses:
		var names []string
		for _, s := range c.Services {
			names = append(names, s.Name)
		}
		return "service status of " + strings.Join(names, ", ")
	case activities.CollectNode:
		return "load, CPUs, memory, vmstat -d, df"
	case activities.CollectLogs:
		return "log lines in the window"
	case activities.CollectNetwork:
		return "routes, ARP (duplicate addresses), neighbours, ping for " + strings.Join(c.Addresses, ", ")
	case activities.CollectConnects:
		return "TCP connect and ping to the database from the worker"
	case activities.CollectAPIs:
		return "timed GETs to " + strings.Join(c.APIs, ", ")
	}
	return c.Kind
}

// collectorActivity maps a collector kind to its activity (all of them Diagnose's).
func collectorActivity(kind string) any {
	switch kind {
	case activities.CollectComponents:
		return diag.DiagnoseComponents
	case activities.CollectRelated:
		return diag.DiagnoseRelated
	case activities.CollectCapacity:
		return diag.DiagnoseCapacity
	case activities.CollectProcesses:
		return diag.DiagnoseProcesses
	case activities.CollectNode:
		return diag.DiagnoseNode
	case activities.CollectLogs:
		return diag.DiagnoseLogs
	case activities.CollectNetwork:
		return diag.DiagnoseNetwork
	case activities.CollectConnects:
		return diag.DiagnoseConnects
	case activities.CollectAPIs:
		return diag.DiagnoseAPIs
	}
	return nil
}

// runDiagnose runs the collectors in parallel (bounded; a collector that fails is a blind spot
// in the report, never a stall), then the analysis, and reports macro first.
func runDiagnose(r *Run, in *DiagnoseInput, p *diagnosePlan) (string, error) {
	specs := p.plan.Collectors
	parts := make([]diagnose.Facts, len(specs))
	err := r.Do("collect", StepOptions{Target: in.Subject, ReadOnly: true}, func(ctx workflow.Context) error {
		return r.Each(ctx, len(specs), r.parallelism(in.Parallel), func(ctx workflow.Context, i int) error {
			spec := specs[i]
			id := spec.ID()
			failed := func(err error) {
				parts[i] = diagnose.Facts{Failures: []diagnose.Failure{{Collector: id, Error: errText(err)}}}
			}
			act := collectorActivity(spec.Kind)
			if act == nil {
				failed(fmt.Errorf("unknown collector kind %q", spec.Kind))
				return nil
			}
			// Collectors are retried twice: a diagnosis must finish soon, and what one could not
			// see is itself reported, but a worker crash alone must not make a blind spot (one
			// attempt killed, one lost to the dead worker's poll). Network probes take seconds.
			opts := ActOpts{Timeout: 2 * time.Minute, Attempts: 3}
			if spec.Kind == activities.CollectNetwork {
				opts.Timeout = 5 * time.Minute
			}
			req := activities.CollectRequest{DiagnoseRequest: p.req, Spec: spec, Resource: p.plan.Facts.Resource}
			return r.DoIn(ctx, "collect/"+id, StepOptions{Target: id, ReadOnly: true, OnFailure: failed}, func(ctx workflow.Context) error {
				return r.Exec(r.WithActivity(ctx, opts), "collect/"+id, id, act, &parts[i], req)
			})
		})
	})
	if err != nil {
		return "", err
	}
	facts := p.plan.Facts
	for _, part := range parts { // in plan order: the same facts on every replay
		facts.Merge(part)
	}
	var rep diagnose.Report
	_ = r.Do("analyze", StepOptions{Target: in.Subject, ReadOnly: true}, func(workflow.Context) error {
		rep = diagnose.Analyze(facts)
		return nil
	})
	for _, f := range rep.Findings() {
		r.AddFinding(f.Severity, f.Subject, "%s (from: %s)", f.Message, cmp.Or(f.Source, "-"))
	}
	r.SetDetail("diagnosis", rep)
	r.SetDetail("facts", facts)
	summary := "blast radius: " + rep.Blast.Scope
	if len(rep.Suspects) > 0 {
		s := rep.Suspects[0]
		summary += "; suspect: " + s.Component
		if s.Node != "" {
			summary += " on " + s.Node
		}
		summary += fmt.Sprintf(" (score %d, %d piece(s) of evidence)", s.Score, len(s.Evidence))
		if len(rep.Suspects) > 1 {
			summary += fmt.Sprintf(", %d more suspect(s)", len(rep.Suspects)-1)
		}
	} else {
		summary += "; nothing points anywhere"
	}
	if n := len(facts.Failures); n > 0 {
		summary += fmt.Sprintf("; %d blind spot(s)", n)
	}
	return summary, nil
}
