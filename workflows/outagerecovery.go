package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// outage names outage-recovery's activities (the worker registers them, workerapp.Outage).
var outage *activities.Outage

// OutageRecovery brings a whole cloud back after, say, a power loss (RUNBOOKS.md §8): the
// priority table's tiers in order; inside a tier its hosts, then its services, in parallel
// (bounded), each service started only if it is not running and then verified (process, port,
// AMQP connection, API answer). A tier that cannot be verified stalls (retry, skip, abort) before
// the next one starts. After the database: an integrity check; after Nova: the hypervisors
// agree with the database. The user instances that ran before the outage (the database's record
// before Nova's power-state sync) are started again once the compute API answers.
var OutageRecovery = Define(Def[OutageRecoveryInput, outageRecoveryPlan]{
	Name:  "outage-recovery",
	Short: "Bring the whole cloud back after an outage, tier by tier in priority order, verifying each tier (--from-tier N)",
	Steps: []string{"read-table", "snapshot"},
	Key:   func(in *OutageRecoveryInput) string { return "cloud" },
	Plan:  planOutageRecovery,
	Act:   outageRecovery,
})

// OutageRecoveryInput is the input of OutageRecovery.
type OutageRecoveryInput struct {
	Meta
	// FromTier starts at this tier (its priority); earlier tiers are taken as up and not touched.
	FromTier int `json:"from_tier,omitempty" flag:"from-tier" usage:"start at the tier of this priority (a priority of the table; default: the first)"`
	// Parallel bounds the hosts and services brought back at once within a tier.
	Parallel int `json:"parallel,omitempty" flag:"parallel" usage:"hosts and services of a tier brought back at once, for every tier (default: the tier's parallel, else policy.default_parallelism)"`
	// VerifyWait is how long a service's verifications may take to pass before its tier stalls.
	VerifyWait string `json:"verify_wait,omitempty" flag:"verify-wait" usage:"how long verifications wait for a service still coming up before the tier stalls: 10s to 30m (default 3m)"`
}

// verifyWait is the input's --verify-wait (validated), 3 minutes by default.
func (in *OutageRecoveryInput) verifyWait() time.Duration {
	if d, err := time.ParseDuration(in.VerifyWait); err == nil && in.VerifyWait != "" {
		return d
	}
	return 3 * time.Minute
}

func (in *OutageRecoveryInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if in.FromTier < 0 || in.FromTier > 1000 {
		return &FieldError{Field: "from_tier", Value: fmt.Sprint(in.FromTier), Problem: "must be a tier's priority, 1 to 1000 (0: from the first)"}
	}
	if in.VerifyWait != "" {
		d, err := time.ParseDuration(in.VerifyWait)
		if err != nil || d < 10*time.Second || d > 30*time.Minute {
			return &FieldError{Field: "verify_wait", Value: in.VerifyWait, Problem: "must be a duration from 10s to 30m, e.g. 3m"}
		}
	}
	if in.Parallel < 0 || in.Parallel > MaxParallel {
		return &FieldError{Field: "parallel", Value: fmt.Sprint(in.Parallel), Problem: fmt.Sprintf("must be 0 (the policy's default) to %d", MaxParallel)}
	}
	return nil
}

// GateApproveInstanceStart is the gate before user instances are started (outage.instances_gate).
const GateApproveInstanceStart = "approve-instance-start"

// OutageTierReport is one tier of the report.
type OutageTierReport struct {
	Priority  int      `json:"priority"`
	Name      string   `json:"name"`
	State     string   `json:"state"` // verified, empty, not-run (--from-tier), skipped
	Started   []string `json:"started,omitempty"`
	AlreadyUp []string `json:"already_up,omitempty"`
	Verified  []string `json:"verified,omitempty"`
	Seconds   float64  `json:"seconds"`
	Findings  []string `json:"findings,omitempty"`
}

type outageRecoveryPlan struct {
	table activities.OutageTable
	// order is the tiers of this run, in the order they run; notRun those before --from-tier.
	order, notRun []activities.OutageTier
	// before is the instances' record read right after the database came back (the evidence
	// of what ran before the outage); nil until read.
	before []activities.OutageInstance
	// restarted are the hosts whose nova-compute this run started: their hypervisors came back
	// from the outage, so Nova's record of their guests is stale.
	restarted map[string]bool

	// Where Act got to, for the next run of the chain when it continues as new between tiers or
	// slices (outageContinueChange): Act began (began: when), the tier under way or next (an
	// index of order) and how far it got, the tiers' reports so far.
	acting  bool
	began   time.Time
	next    int
	at      outageProgress
	reports []*OutageTierReport
	// Not carried: sliced is outageContinueChange's version 1; worked is set once this run has
	// done a unit of work (a run never continues as new before its first).
	sliced, worked bool

	// The plan's snapshot while it goes on over runs of the chain (outageSnapshotSlicesChange):
	// snapshotting says the table is read and the snapshot under way; states holds a letter per
	// service read so far, in the order of the run's tiers (outageStateLetter). Both are cleared
	// once the plan is made.
	snapshotting bool
	states       string

	// compact is outageCompactChange's version 1, taken in the chain's first run and carried:
	// the state is carried compact (outageRecoveryState.Compact); fromTier is the input's.
	compact  bool
	fromTier int
}

// outageCompactChange is the workflow.GetVersion change after which the state a chain carries
// has no second copy of the tiers (the run's order is derived from the table again) and, of the
// instances' record, only those that ran before: at 2,000 hosts the carried input passed
// Temporal's 2 MB payload limit and the server terminated the chain.
const outageCompactChange = "outage-compact-carry"

// outageStateLetter is a service's state in the plan's snapshot as outageRecoveryPlan.states
// carries it: one byte a service, so that a snapshot of thousands stays small in the input.
var outageStateLetter = map[string]byte{"running": 'r', "stopped": 's', "unknown": 'u'}

// outageProgress is how far the tier under way got: when it began (zero: not yet), whether its
// step began (the instances' record read and their gate passed), the hosts, services and
// instances done (whole slices), and how much evidence those slices gave (tr.Verified).
type outageProgress struct {
	Began     time.Time `json:"began,omitzero"`
	Open      bool      `json:"open,omitempty"`
	Hosts     int       `json:"hosts,omitempty"`
	Services  int       `json:"services,omitempty"`
	Instances int       `json:"instances,omitempty"`
	Verified  int       `json:"verified,omitempty"`
}

// outageRecoveryState is outageRecoveryPlan as the next run of a chain gets it (continue.go).
// Before keeps null apart from [] (a record read and empty is not read again).
type outageRecoveryState struct {
	Table     activities.OutageTable      `json:"table"`
	Order     []activities.OutageTier     `json:"order"`
	NotRun    []activities.OutageTier     `json:"not_run,omitempty"`
	Before    []activities.OutageInstance `json:"before"`
	Restarted map[string]bool             `json:"restarted,omitempty"`
	Acting    bool                        `json:"acting"`
	Began     time.Time                   `json:"began"`
	Next      int                         `json:"next"`
	At        outageProgress              `json:"at"`
	Reports   []*OutageTierReport         `json:"reports,omitempty"`
	// Snapshotting and States: the plan's snapshot so far, while the plan continues as new.
	Snapshotting bool   `json:"snapshotting,omitempty"`
	States       string `json:"states,omitempty"`
	// Compact (outageCompactChange): Order and NotRun are not carried but derived again from
	// the table and FromTier; Before is not carried but Ran, the instances that ran before
	// (id, name, host), and Read, whether the record was read (it may be empty).
	Compact  bool        `json:"compact,omitempty"`
	FromTier int         `json:"from_tier,omitempty"`
	Ran      [][3]string `json:"ran,omitempty"`
	Read     bool        `json:"read,omitempty"`
}

func (p *outageRecoveryPlan) MarshalJSON() ([]byte, error) {
	if !p.compact {
		return json.Marshal(outageRecoveryState{Table: p.table, Order: p.order, NotRun: p.notRun, Before: p.before, Restarted: p.restarted,
			Acting: p.acting, Began: p.began, Next: p.next, At: p.at, Reports: p.reports, Snapshotting: p.snapshotting, States: p.states})
	}
	s := outageRecoveryState{Table: p.table, Restarted: p.restarted, Acting: p.acting, Began: p.began, Next: p.next, At: p.at,
		Reports: p.reports, Snapshotting: p.snapshotting, States: p.states, Compact: true, FromTier: p.fromTier, Read: p.before != nil}
	for _, i := range p.before {
		if i.RanBefore() {
			s.Ran = append(s.Ran, [3]string{i.ID, i.Name, i.Host})
		}
	}
	return json.Marshal(s)
}

func (p *outageRecoveryPlan) UnmarshalJSON(b []byte) error {
	var s outageRecoveryState
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	p.table, p.order, p.notRun, p.before, p.restarted = s.Table, s.Order, s.NotRun, s.Before, s.Restarted
	p.acting, p.began, p.next, p.at, p.reports = s.Acting, s.Began, s.Next, s.At, s.Reports
	p.snapshotting, p.states = s.Snapshotting, s.States
	if s.Compact {
		// What the first run derived from the table (outageOrder is deterministic); of the
		// record, only the instances that ran before are used once it is read.
		p.compact, p.fromTier = true, s.FromTier
		p.notRun, p.order = outageOrder(p.table.Tiers, s.FromTier)
		if s.Read {
			p.before = make([]activities.OutageInstance, 0, len(s.Ran))
			for _, x := range s.Ran {
				p.before = append(p.before, activities.OutageInstance{ID: x[0], Name: x[1], Host: x[2], VMState: "active", PowerState: activities.PowerRunning})
			}
		}
	}
	if p.restarted == nil {
		p.restarted = map[string]bool{}
	}
	return nil
}

// outageContinueChange is the workflow.GetVersion change after which Act works through a tier's
// hosts, services and instances in slices of outageSlice and continues as new (continue.go)
// before a tier or a slice that could take the run's history past the history budget. A stalled
// tier's retry goes on from the slice that stalled (before it: the whole tier again).
const outageContinueChange = "outage-continue-as-new"

// outageSlice is the most hosts, services or instances of a tier done between two points where
// the run may continue as new: a slice of services is 256 activities, some 1,500 events at most.
// A variable for the workflows' tests only (export_test.go), never set otherwise.
var outageSlice = 128

// outageEventsPerActivity bounds the events one activity adds (scheduled, started, completed,
// and a workflow task of three for its result when it is the only one); outageUnitEvents is a
// unit's own (its step's state, a tier's checks).
const (
	outageEventsPerActivity = 6
	outageUnitEvents        = 40
)

// pause reports whether the run continues as new before a unit of about acts activities (false
// before the run's first unit, and for runs begun before outageContinueChange).
func (p *outageRecoveryPlan) pause(r *Run, acts int) bool {
	if !p.sliced || !p.worked {
		return false
	}
	return r.ContinueAsNew(acts*outageEventsPerActivity + outageUnitEvents)
}

// slice is how many of the n left go in the next slice (all of them before outageContinueChange).
func (p *outageRecoveryPlan) slice(n int) int {
	if !p.sliced {
		return n
	}
	return min(n, outageSlice)
}

// firstActs is the activities of a tier's first slice (pause's estimate before it begins).
func (p *outageRecoveryPlan) firstActs(t activities.OutageTier) int {
	switch {
	case t.Empty():
		return 0
	case t.Instances:
		ran := 0
		for _, i := range p.before {
			if i.RanBefore() {
				ran++
			}
		}
		return 1 + p.slice(ran)
	case len(t.HostVerify) > 0 && len(t.Hosts) > 0:
		return p.slice(len(t.Hosts))
	}
	return 2*p.slice(len(t.Services)) + len(t.Checks)
}

func tierStep(t activities.OutageTier) string { return fmt.Sprintf("tier-%d", t.Priority) }

func planOutageRecovery(r *Run, in *OutageRecoveryInput, p *outageRecoveryPlan) (Approval, error) {
	// A run of the chain that continued as new in the snapshot has the table and the order.
	if !p.snapshotting {
		// The chain's first run: later runs have it in the carried state.
		p.compact = workflow.GetVersion(r.ctx, outageCompactChange, workflow.DefaultVersion, 1) == 1
		p.fromTier = in.FromTier
		err := r.Do("read-table", StepOptions{ReadOnly: true}, func(ctx workflow.Context) error {
			return r.Exec(ctx, "read-table", "cloud", outage.OutagePlan, &p.table)
		})
		if err != nil {
			return Approval{}, err
		}
		var prios []string
		for _, t := range p.table.Tiers {
			prios = append(prios, fmt.Sprint(t.Priority))
		}
		if in.FromTier > 0 && !slices.ContainsFunc(p.table.Tiers, func(t activities.OutageTier) bool { return t.Priority == in.FromTier }) {
			return Approval{}, Summarize("invalid input", &FieldError{Field: "from_tier", Value: fmt.Sprint(in.FromTier),
				Problem: "not a tier of the table (tiers: " + strings.Join(prios, ", ") + ")"})
		}
		p.notRun, p.order = outageOrder(p.table.Tiers, in.FromTier)
		p.restarted = map[string]bool{}
	}

	// What runs now (a snapshot for the plan; Act checks every service again before it starts it).
	var all []activities.OutageService
	for _, t := range p.order {
		all = append(all, t.Services...)
	}
	running := make([]string, len(all))
	// A read the worker's crash (or a lost answer) cut is read again: runs begun before
	// outageSnapshotRetriesChange read each state once, and a cut read left it "unknown".
	snapshot := ActOpts{Timeout: 30 * time.Second, Attempts: 1}
	if workflow.GetVersion(r.ctx, outageSnapshotRetriesChange, workflow.DefaultVersion, 1) == 1 {
		snapshot = ActOpts{Timeout: 30 * time.Second, Attempts: 3, Initial: time.Second}
	}
	sliced := workflow.GetVersion(r.ctx, outageSnapshotSlicesChange, workflow.DefaultVersion, 1) == 1
	err := r.Do("snapshot", StepOptions{ReadOnly: true, Finding: activities.SeverityInfo}, func(ctx workflow.Context) error {
		ctx = r.WithActivity(ctx, snapshot)
		read := func(ctx workflow.Context, s activities.OutageService) string {
			var st activities.ServiceState
			if err := r.Exec(ctx, "snapshot", s.Host, outage.OutageServiceState, &st, s); err != nil {
				return "unknown"
			}
			return map[bool]string{true: "running", false: "stopped"}[st.Running]
		}
		if !sliced {
			return r.Each(ctx, len(all), r.parallelism(in.Parallel)*2, func(ctx workflow.Context, i int) error {
				running[i] = read(ctx, all[i])
				return nil
			})
		}
		return outageSnapshot(r, p, ctx, all, r.parallelism(in.Parallel)*2, read)
	})
	if errors.Is(err, ErrContinueAsNew) {
		return Approval{}, err
	}
	if sliced {
		letters := map[byte]string{}
		for w, l := range outageStateLetter {
			letters[l] = w
		}
		for i := range all {
			running[i] = "unknown" // not read: the step ended early (cancelled)
			if i < len(p.states) {
				running[i] = letters[p.states[i]]
			}
		}
		p.snapshotting, p.states = false, ""
	}
	lines, facts := []string{}, []Fact{}
	k := 0
	for _, t := range p.order {
		r.AddSteps(tierStep(t))
		for _, c := range t.Checks {
			r.AddSteps(c)
		}
		var parts []string
		if len(t.Hosts) > 0 && len(t.HostVerify) > 0 {
			parts = append(parts, fmt.Sprintf("hosts %s (%s)", strings.Join(t.Hosts, ", "), strings.Join(t.HostVerify, ", ")))
		}
		for _, s := range t.Services {
			parts = append(parts, fmt.Sprintf("%s on %s [%s] (%s)", s.Service, s.Host, running[k], strings.Join(s.Verify, ", ")))
			k++
		}
		if t.Instances {
			parts = append(parts, "instances that ran before the outage, policy "+p.table.Instances+gateNote(p.table.Gate)+afterNote(t, p.order))
		}
		if len(t.Checks) > 0 {
			parts = append(parts, "then "+strings.Join(t.Checks, ", "))
		}
		if n := tierParallel(t, in, 0); n > 0 && !t.Empty() {
			parts = append(parts, fmt.Sprintf("%d at once (the tier's parallel)", n))
		}
		if t.Empty() {
			parts = []string{"EMPTY: nothing of it in this cloud" + missingNote(t)}
		}
		lines = append(lines, fmt.Sprintf("tier %d %s: %s", t.Priority, t.Name, strings.Join(parts, "; ")))
		facts = append(facts, Fact{Name: tierStep(t), Value: fmt.Sprintf("%d host(s), %d service(s), checks %v", len(t.Hosts), len(t.Services), t.Checks)})
	}
	if p.table.Gate {
		r.AddSteps(GateApproveInstanceStart)
	}
	for _, t := range p.notRun {
		lines = append(lines, fmt.Sprintf("tier %d %s: not run (--from-tier %d)", t.Priority, t.Name, in.FromTier))
	}
	r.SetPlan(lines)
	r.SetFacts(facts...)
	return Approval{}, nil
}

// outageSnapshotRetriesChange is the workflow.GetVersion change that gave the plan's snapshot
// reads (OutageServiceState) three attempts, like the check probes, instead of one.
const outageSnapshotRetriesChange = "outage-snapshot-retries"

// outageSnapshotSlicesChange is the workflow.GetVersion change after which the plan's snapshot
// reads the services in slices of outageSlice (each in parallel) and the plan continues as new
// (Continued.Planning) before a slice that could take the run's history past the history budget,
// as Act does between its slices. Before it the whole snapshot was the first run's.
const outageSnapshotSlicesChange = "outage-snapshot-slices"

// outageSnapshot reads the states of all from the first not read yet (p.states), a slice at a
// time, and continues as new between two slices when the next might pass the history budget
// (never before this run's first slice, nor in the stale-plan check's replan: r.acting).
func outageSnapshot(r *Run, p *outageRecoveryPlan, ctx workflow.Context, all []activities.OutageService, par int,
	read func(workflow.Context, activities.OutageService) string) error {
	p.snapshotting = true
	for first := true; len(p.states) < len(all); first = false {
		lo, n := len(p.states), min(len(all)-len(p.states), outageSlice)
		if !first && !r.acting && r.ContinueAsNew(n*outageEventsPerActivity+outageUnitEvents) {
			return ErrContinueAsNew
		}
		got := make([]byte, n)
		err := r.Each(ctx, n, par, func(ctx workflow.Context, i int) error {
			got[i] = outageStateLetter[read(ctx, all[lo+i])]
			return nil
		})
		if err != nil {
			return err
		}
		p.states += string(got)
	}
	// The snapshot's slices are units of work: Act may continue as new before its first tier.
	p.worked = true
	return nil
}

func gateNote(gate bool) string {
	if gate {
		return ", after the signed gate " + GateApproveInstanceStart
	}
	return ""
}

func afterNote(t activities.OutageTier, order []activities.OutageTier) string {
	i := slices.IndexFunc(order, func(o activities.OutageTier) bool { return o.Priority == t.Priority })
	if i > 0 && order[i-1].Priority > t.Priority {
		return fmt.Sprintf(" (started after tier %d: they start through the compute API)", order[i-1].Priority)
	}
	return ""
}

func missingNote(t activities.OutageTier) string {
	if len(t.Missing) == 0 {
		return ""
	}
	return " (no host runs " + strings.Join(t.Missing, ", ") + ")"
}

// outageOrder splits the tiers into those before fromTier and the run's, in the order they
// run: priority order, except that the user-instance tier comes right after the tier whose
// verification is the compute API when that one comes later (instances start through Nova).
func outageOrder(tiers []activities.OutageTier, fromTier int) (notRun, order []activities.OutageTier) {
	var inst *activities.OutageTier
	for _, t := range tiers {
		if t.Instances && inst == nil {
			inst = &t
			continue
		}
		order = append(order, t)
	}
	if inst != nil {
		at := 0
		for i, t := range order {
			if t.Priority < inst.Priority {
				at = i + 1
			}
			for _, s := range t.Services {
				if slices.Contains(s.Verify, "api:compute") {
					at = max(at, i+1)
				}
			}
		}
		order = slices.Insert(order, at, *inst)
	}
	if i := slices.IndexFunc(order, func(t activities.OutageTier) bool { return t.Priority == fromTier }); i > 0 {
		return order[:i], order[i:]
	}
	return nil, order
}

func outageRecovery(r *Run, in *OutageRecoveryInput, p *outageRecoveryPlan) (summary string, err error) {
	// A run of a chain calls it again: version 1 in every run that continues as new.
	p.sliced = workflow.GetVersion(r.ctx, outageContinueChange, workflow.DefaultVersion, 1) == 1
	if !p.acting {
		p.acting, p.began = true, workflow.Now(r.Context())
		for _, t := range p.notRun {
			p.reports = append(p.reports, &OutageTierReport{Priority: t.Priority, Name: t.Name, State: "not-run"})
		}
	}
	par := r.parallelism(in.Parallel)
	defer func() {
		if errors.Is(err, ErrContinueAsNew) {
			return // the chain's last run reports every tier
		}
		out := make([]OutageTierReport, len(p.reports))
		for i, t := range p.reports {
			out[i] = *t
		}
		r.SetDetail("tiers", out)
	}()
	for ; p.next < len(p.order); p.next++ {
		t := p.order[p.next]
		if p.at.Began.IsZero() {
			// Between two tiers: the next one's first slice might pass the history budget.
			if p.pause(r, p.firstActs(t)) {
				return "", ErrContinueAsNew
			}
			p.at = outageProgress{Began: workflow.Now(r.Context())}
			p.reports = append(p.reports, &OutageTierReport{Priority: t.Priority, Name: t.Name})
		}
		tr := p.reports[len(p.reports)-1]
		var err error
		switch {
		case t.Empty():
			tr.State = "empty"
			r.AddFinding(activities.SeverityInfo, tierStep(t), "tier %d (%s) is empty: nothing of it in this cloud%s", t.Priority, t.Name, missingNote(t))
			err = r.Do(tierStep(t), StepOptions{Target: t.Name, ReadOnly: true}, func(workflow.Context) error { return nil })
		case t.Instances:
			err = outageInstances(r, p, t, tr, tierParallel(t, in, par))
		default:
			err = outageTier(r, p, t, tr, tierParallel(t, in, par), in.verifyWait())
		}
		if errors.Is(err, ErrContinueAsNew) {
			return "", err
		}
		if err == nil {
			err = outageChecks(r, p, t, tr, p.began)
		}
		tr.Seconds = workflow.Now(r.Context()).Sub(p.at.Began).Round(100 * time.Millisecond).Seconds()
		if err != nil {
			return "", err
		}
		if tr.State == "" {
			tr.State = "verified"
			if r.StepState(tierStep(t)) == StepSkipped {
				tr.State = "skipped"
			}
		}
		p.at, p.worked = outageProgress{}, true
	}
	var verified, empty, started, up, instances int
	for _, t := range p.reports {
		switch t.State {
		case "verified":
			verified++
		case "empty":
			empty++
		}
		started += len(t.Started)
		up += len(t.AlreadyUp)
	}
	if i := slices.IndexFunc(p.order, func(t activities.OutageTier) bool { return t.Instances }); i >= 0 {
		for _, t := range p.reports {
			if t.Priority == p.order[i].Priority {
				instances = len(t.Started)
			}
		}
	}
	return fmt.Sprintf("cloud recovered: %d tier(s) verified, %d empty; %d started, %d already up (%d instance(s) started); %d finding(s)",
		verified, empty, started-instances, up, instances, len(r.findings)), nil
}

// tierParallel is a tier's bound: the run's --parallel when given, else the tier's own
// (outage.tiers[].parallel), else the policy's default (par).
func tierParallel(t activities.OutageTier, in *OutageRecoveryInput, par int) int {
	if in.Parallel == 0 && t.Parallel > 0 {
		return min(t.Parallel, MaxParallel)
	}
	return par
}

// outageTier brings one tier's hosts and then its services back, in parallel within the bound,
// and verifies each. Started services stay recorded across a retried step. From
// outageContinueChange on, in slices (p.at says how far the tier got): the run may continue as
// new between two, and a retry goes on from the slice that stalled.
func outageTier(r *Run, p *outageRecoveryPlan, t activities.OutageTier, tr *OutageTierReport, par int, wait time.Duration) error {
	startedAt := map[string]time.Time{}
	at := &p.at
	return r.Do(tierStep(t), StepOptions{Target: t.Name}, func(ctx workflow.Context) error {
		if !p.sliced {
			at.Hosts, at.Services, at.Verified = 0, 0, 0 // every attempt: the whole tier again
		}
		tr.Verified = tr.Verified[:at.Verified]
		if len(tr.Verified) == 0 {
			tr.Verified = nil
		}
		if len(t.HostVerify) > 0 {
			hctx := r.WithActivity(ctx, ActOpts{Timeout: 2 * time.Minute, Attempts: 10, Initial: 2 * time.Second, MaxInterval: 10 * time.Second})
			for at.Hosts < len(t.Hosts) {
				lo, n := at.Hosts, p.slice(len(t.Hosts)-at.Hosts)
				if p.pause(r, n) {
					return ErrContinueAsNew
				}
				err := r.Each(hctx, n, par, func(ctx workflow.Context, i int) error {
					h := t.Hosts[lo+i]
					var res activities.OutageHostResult
					if err := r.Exec(ctx, tierStep(t), h, outage.OutageHostUp, &res, activities.OutageHostRequest{Host: h, Verify: t.HostVerify}); err != nil {
						return err
					}
					for _, d := range res.Mounted {
						tr.Started = append(tr.Started, h+":"+d+" (mounted)")
					}
					tr.Verified = append(tr.Verified, res.Evidence...)
					return nil
				})
				if err != nil {
					return err
				}
				at.Hosts, at.Verified, p.worked = lo+n, len(tr.Verified), true
			}
		}
		sctx := r.WithActivity(ctx, ActOpts{Timeout: 2 * time.Minute, Attempts: 3, Initial: 2 * time.Second})
		// Verifications wait for a service that is still coming up (--verify-wait): an attempt
		// every second (after half a second first), so that the next tier starts within about a
		// second of this one being up. Each tier waits for the one before it, so a coarser poll
		// adds its lag once per tier to the whole recovery.
		vctx := r.WithActivity(ctx, ActOpts{Timeout: 30 * time.Second, Attempts: 2 + int(wait/time.Second), Initial: 500 * time.Millisecond, MaxInterval: time.Second})
		for at.Services < len(t.Services) {
			lo, n := at.Services, p.slice(len(t.Services)-at.Services)
			if p.pause(r, 2*n) {
				return ErrContinueAsNew
			}
			err := r.Each(ctx, n, par, func(ctx workflow.Context, i int) error {
				s := t.Services[lo+i]
				name := s.Service + "@" + s.Host
				var st activities.OutageStarted
				if err := r.Exec(withOptionsOf(ctx, sctx), tierStep(t), name, outage.OutageStartService, &st, s); err != nil {
					return err
				}
				since, seen := startedAt[name]
				switch {
				case !seen && st.AlreadyUp:
					tr.AlreadyUp = append(tr.AlreadyUp, name)
					since = time.Time{}
				case !seen:
					tr.Started = append(tr.Started, name)
					since = st.At
					if s.Service == "nova-compute" {
						p.restarted[s.Host] = true
					}
				}
				startedAt[name] = since
				var v activities.OutageVerified
				if err := r.Exec(withOptionsOf(ctx, vctx), tierStep(t), name, outage.OutageVerifyService, &v, activities.OutageVerifyRequest{OutageService: s, Since: since}); err != nil {
					return err
				}
				tr.Verified = append(tr.Verified, v.Evidence...)
				return nil
			})
			if err != nil {
				return err
			}
			at.Services, at.Verified, p.worked = lo+n, len(tr.Verified), true
		}
		return nil
	})
}

// withOptionsOf is ctx (a coroutine's) with the activity options of opts.
func withOptionsOf(ctx, opts workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.GetActivityOptions(opts))
}

// outageChecks runs the checks a tier names once it is verified.
func outageChecks(r *Run, p *outageRecoveryPlan, t activities.OutageTier, tr *OutageTierReport, began time.Time) error {
	for _, c := range t.Checks {
		var err error
		switch c {
		case "db-integrity":
			err = r.Do(c, StepOptions{Target: "database", ReadOnly: true}, func(ctx workflow.Context) error {
				ctx = r.WithActivity(ctx, ActOpts{Timeout: 5 * time.Minute, Attempts: 5, Initial: 3 * time.Second})
				var res activities.OutageDBCheck
				if err := r.Exec(ctx, c, "database", outage.OutageDBIntegrity, &res); err != nil {
					return err
				}
				tr.Verified = append(tr.Verified, fmt.Sprintf("database integrity: %d table(s) of %s checked (%s)", res.Tables, strings.Join(res.Databases, ", "), res.Command))
				for _, pr := range res.Problems {
					r.AddFinding(activities.SeverityCritical, "database", "integrity check: %s (from: %s)", pr, res.Command)
					tr.Findings = append(tr.Findings, pr)
				}
				if len(res.Missing) > 0 {
					tr.Findings = append(tr.Findings, "not on this server: "+strings.Join(res.Missing, ", "))
				}
				// The evidence of what ran before: read now, before nova-compute can sync it.
				return r.Exec(ctx, c, "database", outage.OutageInstancesBefore, &p.before)
			})
			if err == nil {
				ran := 0
				for _, i := range p.before {
					if i.RanBefore() {
						ran++
					}
				}
				tr.Verified = append(tr.Verified, fmt.Sprintf("instances before the outage (database, before the power-state sync): %d of %d ran", ran, len(p.before)))
			}
		case "hypervisors":
			err = r.Do(c, StepOptions{Target: "nova", ReadOnly: true}, func(ctx workflow.Context) error {
				ctx = r.WithActivity(ctx, ActOpts{Timeout: 4 * time.Minute, Heartbeat: ActivityHeartbeat, Attempts: 2})
				var res activities.OutageHypervisorCheck
				if err := r.Exec(ctx, c, "nova", outage.OutageHypervisors, &res, began); err != nil {
					return err
				}
				hostsUp := make([]string, 0, len(res.Computes))
				for h, s := range res.Computes {
					hostsUp = append(hostsUp, h+" "+s)
				}
				slices.Sort(hostsUp)
				tr.Verified = append(tr.Verified, fmt.Sprintf("nova-compute: %s; %d instance(s) compared with the hypervisors' lists", strings.Join(hostsUp, ", "), res.Instances))
				for _, m := range res.Mismatches {
					r.AddFinding(activities.SeverityWarning, "hypervisors", "%s", m)
					tr.Findings = append(tr.Findings, m)
				}
				return nil
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// outageInstances starts again the instances that ran before the outage, per policy. From
// outageContinueChange on, in slices: the run may continue as new between two (the record is
// not read again, the gate not asked again: p.at.Open).
func outageInstances(r *Run, p *outageRecoveryPlan, t activities.OutageTier, tr *OutageTierReport, par int) error {
	if !p.at.Open && p.before == nil {
		err := r.Do("read-instances", StepOptions{Target: "database", ReadOnly: true}, func(ctx workflow.Context) error {
			return r.Exec(ctx, "read-instances", "database", outage.OutageInstancesBefore, &p.before)
		})
		if err != nil {
			return err
		}
		r.AddFinding(activities.SeverityWarning, tierStep(t), "the instances' record was read after the database tier (not in this run): Nova may have synced power states already, so instances that ran before may not be known")
	}
	var ran []activities.OutageInstance
	for _, i := range p.before {
		if i.RanBefore() {
			ran = append(ran, i)
		}
	}
	if len(ran) == 0 || p.table.Instances == "none" {
		for _, i := range ran {
			tr.Findings = append(tr.Findings, fmt.Sprintf("%s (%s) ran before; policy none: not started", i.ID, i.Name))
		}
		tr.State = "verified"
		return r.Do(tierStep(t), StepOptions{Target: t.Name, ReadOnly: true}, func(workflow.Context) error { return nil })
	}
	if p.table.Gate && !p.at.Open {
		names := make([]string, len(ran))
		for i, x := range ran {
			names[i] = x.Name
		}
		if err := r.Gate(GateApproveInstanceStart, GateOptions{Summary: fmt.Sprintf("Start %d instance(s) that ran before the outage: %s", len(ran), strings.Join(names, ", "))}); err != nil {
			return err
		}
	}
	p.at.Open = true
	done := map[string]bool{}
	return r.Do(tierStep(t), StepOptions{Target: t.Name}, func(ctx workflow.Context) error {
		ctx = r.WithActivity(ctx, ActOpts{Timeout: 5 * time.Minute, Heartbeat: ActivityHeartbeat, Attempts: 3, Initial: 5 * time.Second})
		if !p.sliced {
			p.at.Instances = 0 // every attempt: all of them (those done are skipped)
		}
		for p.at.Instances < len(ran) {
			lo, n := p.at.Instances, p.slice(len(ran)-p.at.Instances)
			if p.pause(r, n) {
				return ErrContinueAsNew
			}
			err := r.Each(ctx, n, par, func(ctx workflow.Context, i int) error {
				x := ran[lo+i]
				if done[x.ID] {
					return nil
				}
				var res activities.OutageInstanceResult
				// One instance that cannot start is a finding, not a stall of the whole cloud.
				req := activities.OutageInstanceRequest{ID: x.ID, Recreate: p.restarted[x.Host]}
				if err := r.Exec(ctx, tierStep(t), x.ID, outage.OutageStartInstance, &res, req); err != nil {
					if IsAbort(err) || temporal.IsCanceledError(err) {
						return err
					}
					r.AddFinding(activities.SeverityCritical, x.ID, "instance %s (%s) ran before the outage and did not start again: %s", x.Name, x.ID, errText(err))
					tr.Findings = append(tr.Findings, fmt.Sprintf("%s (%s): %s", x.Name, x.ID, errText(err)))
					done[x.ID] = true
					return nil
				}
				done[x.ID] = true
				label := fmt.Sprintf("%s (%s) %s", x.Name, x.ID, res.Action)
				if strings.HasPrefix(res.Action, "busy") {
					r.AddFinding(activities.SeverityWarning, x.ID, "instance %s (%s) ran before the outage and is %s now: left alone", x.Name, x.ID, res.Action)
					tr.Findings = append(tr.Findings, label)
					return nil
				}
				if res.Action == "already-up" {
					tr.AlreadyUp = append(tr.AlreadyUp, label)
				} else {
					tr.Started = append(tr.Started, label)
				}
				tr.Verified = append(tr.Verified, fmt.Sprintf("%s: %s, power state %d", x.Name, res.Status, res.Power))
				return nil
			})
			if err != nil {
				return err
			}
			p.at.Instances, p.worked = lo+n, true
		}
		return nil
	})
}
