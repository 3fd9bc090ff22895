package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// Def declares one runbook. It is the only place a runbook is described: the registry
// (Runbooks), the worker's registrations (Register), the CLI subcommand and its --help, the chat
// command table and docs/runbooks.md all derive from it. See docs/adding-a-runbook.md.
//
// In is the runbook's input (a struct embedding Meta, with a Validate method on its pointer);
// P is its plan: what Plan computes and Act carries out.
type Def[In, P any] struct {
	// Name is the CLI word (stackrun run <Name>) and the prefix of the run's workflow ID. The
	// workflow type is TypeName(Name), the input type TypeName(Name)+"Input", the file
	// FileName(Name): recover-host → RecoverHost, RecoverHostInput, recoverhost.go.
	Name string
	// Short is the one-line help of the CLI subcommand and the chat command.
	Short string
	// Steps are declared up front, so that the status query shows the whole runbook at once.
	// StepsFor, when set, replaces them for steps that depend on the input.
	Steps    []string
	StepsFor func(in *In) []string
	// Key is the workflow-ID rule: a run's ID is Name + "/" + Key(in), derived from the target,
	// so that two runs cannot work on the same thing at once.
	Key func(in *In) string
	// Target is what RunbookTarget shows (default: Key).
	Target func(in *In) string
	// Defaults fills a fresh input before flags are parsed (optional; zero values otherwise).
	Defaults func(in *In)
	// Plan reads the world (read-only steps), fills p, records the plan lines with r.SetPlan and
	// says what a person must approve. It is also the runbook's preconditions: when the plan may
	// be stale (a gate or a stalled step waited longer than policy.plan_max_age), the machinery
	// runs it again before the first side effect, shows what drifted, and asks again (stale.go).
	// Plan must not change anything in the world.
	Plan func(r *Run, in *In, p *P) (Approval, error)
	// Act carries out the plan (after the approval, not in a dry run) and returns the report's
	// summary. Anything it must undo or report on its way out is registered with r.OnExit.
	Act func(r *Run, in *In, p *P) (string, error)
	// Formerly lists workflow types the runbook had before, registered too, so that runs started
	// under an old name still find their code.
	Formerly []string
	// ReadOnly says the runbook changes nothing in the world (its Act only reads): a run may
	// then start without a signature, as a Temporal Schedule starts it (trust.go).
	ReadOnly bool
}

// Approval is what a plan asks a person to approve before Act.
type Approval struct {
	// Gate is the gate before Act ("": none).
	Gate string
	// Summary is the gate's summary (notifications, status, web UI).
	Summary string
	// Skipped marks the gate as not needed (shown skipped with this detail), e.g. a child run
	// approved by its parent.
	Skipped string
	// DryRun is the report's summary when the run stops after its plan (default: "dry run: plan
	// computed, nothing changed").
	DryRun string
}

// Input is what every runbook input implements: validation before anything runs (errors name
// the field) and the meta fields the machinery reads (promoted from the embedded Meta).
type Input interface {
	Validate() error
	GetMeta() *Meta
}

// GetMeta gives access to requester, reason and dry-run; every input embeds Meta.
func (m *Meta) GetMeta() *Meta { return m }

// Runbook is one declared runbook as the registry, the worker, the CLI and the chat gateway see
// it, whatever its input type.
type Runbook struct {
	// Name is the CLI word; Type the workflow type (TypeName(Name)); Short the one-line help.
	Name, Type, Short string
	// Workflow is the workflow function, registered under Type (and Formerly) by Register. Start
	// runs by Type (client.ExecuteWorkflow(ctx, opts, rb.Type, in)): the function's Go name is
	// not the workflow type.
	Workflow any
	// NewInput returns a fresh input with its defaults, to fill from flags.
	NewInput func() Input
	// Steps are the declared steps of a run with the default input (docs).
	Steps []string
	// Formerly lists the workflow types the runbook had before.
	Formerly []string
	// ReadOnly: the runbook changes nothing (Def.ReadOnly); it may start unsigned.
	ReadOnly bool

	key, target func(Input) string
}

// WorkflowID is the ID of the run on in's target: Name + "/" + Key(in).
func (rb Runbook) WorkflowID(in Input) string { return rb.Name + "/" + rb.key(in) }

// Target is what RunbookTarget shows for in.
func (rb Runbook) Target(in Input) string { return rb.target(in) }

// Runbooks lists every declared runbook, in name order. Define adds to it.
var Runbooks []Runbook

// Define declares a runbook and adds it to Runbooks. Call it once per runbook, in the runbook's
// file: var RecoverHost = Define(Def[RecoverHostInput, recoverHostPlan]{Name: "recover-host", ...}).
func Define[In, P any](d Def[In, P]) Runbook {
	rb := d.Build()
	if _, err := FindRunbook(rb.Name); err == nil {
		panic("workflows: runbook " + rb.Name + " defined twice")
	}
	i, _ := slices.BinarySearchFunc(Runbooks, rb.Name, func(x Runbook, n string) int { return strings.Compare(x.Name, n) })
	Runbooks = slices.Insert(Runbooks, i, rb)
	return rb
}

// Build checks the definition and turns it into a Runbook without adding it to Runbooks (tests
// define runbooks of their own with it).
func (d Def[In, P]) Build() Runbook {
	typ := TypeName(d.Name)
	if !nameRuleRE.MatchString(d.Name) {
		panic(fmt.Sprintf("workflows: runbook name %q: want lower-case words joined by '-'", d.Name))
	}
	if _, ok := any(new(In)).(Input); !ok {
		panic(fmt.Sprintf("workflows: runbook %s: *%T does not implement Input (Validate, and Meta embedded)", d.Name, *new(In)))
	}
	if d.Key == nil || d.Plan == nil || d.Act == nil || d.Short == "" {
		panic(fmt.Sprintf("workflows: runbook %s: Short, Key, Plan and Act are required", d.Name))
	}
	target := d.Target
	if target == nil {
		target = d.Key
	}
	dd := d
	steps := d.Steps
	if d.StepsFor != nil {
		in := new(In)
		if d.Defaults != nil {
			d.Defaults(in)
		}
		steps = d.StepsFor(in)
	}
	return Runbook{
		Name: d.Name, Type: typ, Short: d.Short, Steps: steps, Formerly: d.Formerly, ReadOnly: d.ReadOnly,
		Workflow: func(ctx workflow.Context, in In) (*Report, error) { return dd.run(ctx, &in) },
		NewInput: func() Input {
			in := new(In)
			if d.Defaults != nil {
				d.Defaults(in)
			}
			return any(in).(Input)
		},
		key:    func(in Input) string { return d.Key(any(in).(*In)) },
		target: func(in Input) string { return target(any(in).(*In)) },
	}
}

// run is the workflow of every runbook: Begin, validate, plan, dry run, approval (with the
// stale-plan check before Act's first side effect), act, the exit hooks, Finish, in that order.
func (d *Def[In, P]) run(ctx workflow.Context, in *In) (*Report, error) {
	steps := d.Steps
	if d.StepsFor != nil {
		steps = d.StepsFor(in)
	}
	target := d.Key
	if d.Target != nil {
		target = d.Target
	}
	input := any(in).(Input)
	r, err := begin(ctx, d.Name, target(in), *input.GetMeta(), steps...)
	if err != nil {
		return nil, err
	}
	r.readOnly = d.ReadOnly
	p := new(P)
	summary, err := d.execute(r, in, input, p)
	if errors.Is(err, ErrContinueAsNew) {
		// The next run of the chain goes on with Act: no exit hook, no report yet.
		return nil, continueAsNew(r, in, p)
	}
	r.runExitHooks()
	rep, _ := r.finish(err, summary)
	var wf *WorkflowError
	if errors.As(err, &wf) {
		return nil, wf.Err
	}
	return r.result(rep), nil
}

func (d *Def[In, P]) execute(r *Run, in *In, input Input, p *P) (string, error) {
	if r.forged {
		return "start refused", r.refusedContinuation()
	}
	if err := input.Validate(); err != nil {
		return "invalid input", err
	}
	if r.resumed != nil {
		// A run of a chain (continue.go): planned, approved and started by the first run; Act
		// goes on where the last run stopped. Unless the last run continued as new in its Plan:
		// then Plan goes on where it stopped (p says where), and the rest is as in a first run.
		if err := json.Unmarshal(r.resumed, p); err != nil {
			return "continued run", fmt.Errorf("the continued run's state: %w", err)
		}
		r.resumed = nil
		if !r.planning {
			return d.Act(r, in, p)
		}
	} else {
		// Who started it is proven before anything is read or done (trust.go).
		if err := r.verifyStart(*in); err != nil {
			return "start refused", err
		}
		r.planning, r.planBase = true, len(r.findings)
	}
	base := r.planBase
	appr, err := d.Plan(r, in, p)
	if errors.Is(err, ErrContinueAsNew) {
		return "", err
	}
	r.planning = false
	if err != nil {
		return summaryOf(err), err
	}
	if r.DryRun() {
		return appr.DryRun, nil
	}
	r.replan = func() (Approval, error) {
		r.findings = r.findings[:base] // the plan made again says again what it finds
		np := new(P)
		a, err := d.Plan(r, in, np)
		if err == nil {
			*p = *np
		}
		return a, err
	}
	if err := r.approve(appr); err != nil {
		return summaryOf(err), err
	}
	return d.Act(r, in, p)
}

// approve opens the plan's gate, or marks it skipped.
func (r *Run) approve(a Approval) error {
	r.approval = a
	r.plannedAt = r.Now()
	switch {
	case a.Gate == "":
		return nil
	case a.Skipped != "":
		r.AddSteps(a.Gate)
		r.setStepState(r.step(a.Gate), StepSkipped, a.Skipped)
		return nil
	}
	return r.Gate(a.Gate, GateOptions{Summary: a.Summary})
}

// WorkflowError makes the workflow itself fail (after its report is written), e.g. so that a
// schedule pauses on failure. Act returns it around the error the workflow fails with.
type WorkflowError struct {
	// Cause ends the run's report; Err is the workflow's error.
	Cause, Err error
}

func (e *WorkflowError) Error() string { return e.Cause.Error() }
func (e *WorkflowError) Unwrap() error { return e.Cause }

// summarized is an error that carries the report's summary of a run it ends.
type summarized struct {
	summary string
	err     error
}

func (e *summarized) Error() string { return e.err.Error() }
func (e *summarized) Unwrap() error { return e.err }

// Summarize gives the report's summary of a run that err ends (Plan returns it: "refused:
// capacity"); the report reads "<summary>: <error>".
func Summarize(summary string, err error) error {
	if err == nil {
		return nil
	}
	return &summarized{summary: summary, err: err}
}

func summaryOf(err error) string {
	var s *summarized
	if errors.As(err, &s) {
		return s.summary
	}
	return ""
}

// FindRunbook returns the runbook with the given CLI name.
func FindRunbook(name string) (Runbook, error) {
	for _, rb := range Runbooks {
		if rb.Name == name {
			return rb, nil
		}
	}
	return Runbook{}, fmt.Errorf("unknown runbook %q (known: %v)", name, RunbookNames())
}

// RunbookNames lists the CLI names of every runbook, in order.
func RunbookNames() []string {
	names := make([]string, len(Runbooks))
	for i, rb := range Runbooks {
		names[i] = rb.Name
	}
	return names
}

// Registry is what workflows register with: a worker.Worker, a test environment, a replayer.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

// Register registers every runbook under its workflow type (and its former types) and the lease
// workflow.
func Register(reg Registry) {
	for _, rb := range Runbooks {
		reg.RegisterWorkflowWithOptions(rb.Workflow, workflow.RegisterOptions{Name: rb.Type})
		for _, old := range rb.Formerly {
			reg.RegisterWorkflowWithOptions(rb.Workflow, workflow.RegisterOptions{Name: old})
		}
	}
	reg.RegisterWorkflowWithOptions(HostLease, workflow.RegisterOptions{Name: HostLeaseType})
	reg.RegisterWorkflowWithOptions(StartNonce, workflow.RegisterOptions{Name: activities.StartNonceType})
}

// HostLeaseType is the workflow type of the lease workflow.
const HostLeaseType = "HostLease"

// TypeName is the one naming rule (docs/adding-a-runbook.md): the workflow type of the runbook
// whose CLI word is name, its words capitalized and joined: recover-host → RecoverHost. Its input
// type is TypeName(name)+"Input".
func TypeName(name string) string {
	var b strings.Builder
	for _, w := range strings.Split(name, "-") {
		if w != "" {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

// FileName is the file that declares the runbook: its type in lower case, recoverhost.go.
func FileName(name string) string { return strings.ToLower(TypeName(name)) + ".go" }

// InputTypeName is the Go name of the runbook's input type.
func InputTypeName(rb Runbook) string {
	return reflect.TypeOf(rb.NewInput()).Elem().Name()
}
