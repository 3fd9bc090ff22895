package workflows

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// SwiftRing adds, removes or reweights devices in the account, container and object rings
// (or, with --distribute, only checks and repairs the distribution) (RUNBOOKS.md §5): one ring
// change at a time cloud-wide (the swift-ring lock); on the ring-builder host the builders are
// backed up, changed, rebalanced (exit 1 is a warning) and validated, never inside
// min_part_hours (refused, or a durable wait with --wait-min-part-hours); large weight changes go
// in steps with replication settling between them; the ring files are copied to every storage
// and proxy node over SFTP, in parallel, and every node's checksums are verified.
var SwiftRing = Define(Def[SwiftRingInput, swiftRingPlan]{
	Name:     "swift-ring",
	Short:    "Change the Swift rings (add/remove/reweight, in steps), rebalance, distribute, verify checksums",
	Steps:    []string{"describe"},
	Key:      swiftRingKey,
	Target:   func(in *SwiftRingInput) string { return "rings: " + in.changeWords("; ") },
	Plan:     planSwiftRing,
	Act:      swiftRing,
	Formerly: []string{"SwiftRingChange"},
})

// SwiftRingLock is the lock that keeps ring changes one at a time, cloud-wide.
const SwiftRingLock = "swift-ring"

// GateApproveRingChange is the gate before the builders are changed.
const GateApproveRingChange = "approve-ring-change"

// SwiftRingInput is the input of SwiftRing (RUNBOOKS.md §5).
type SwiftRingInput struct {
	Meta
	Add       []string `json:"add,omitempty" flag:"add" usage:"add to the rings: <node> (all its configured devices) or <node>/<device>, optionally =<weight> (comma list)"`
	Remove    []string `json:"remove,omitempty" flag:"remove" usage:"remove from the rings: <node> or <node>/<device> (comma list)"`
	SetWeight []string `json:"set_weight,omitempty" flag:"set-weight" usage:"change weights: <node>[/<device>]=<weight> (comma list)"`
	// Distribute changes nothing: it checks every node's rings and copies them where they differ.
	Distribute bool `json:"distribute,omitempty" flag:"distribute" usage:"change nothing: verify every node's ring files and redistribute where they differ"`
	Steps      int  `json:"steps,omitempty" flag:"steps" usage:"reach the new weights in this many rebalances, waiting for replication between them (default 1)"`
	// Wait waits (durably) for min_part_hours instead of refusing.
	Wait          bool          `json:"wait,omitempty" flag:"wait-min-part-hours" usage:"wait (durably) for min_part_hours to pass instead of refusing; never forced"`
	SettleTimeout time.Duration `json:"settle_timeout,omitempty" flag:"settle-timeout" usage:"longest wait for replication to settle between steps (default 24h)"`
	PollInterval  time.Duration `json:"poll_interval,omitempty" flag:"poll-interval" usage:"how often replication progress is read between steps (default 30s)"`
	Parallelism   int           `json:"parallelism,omitempty" flag:"parallelism" usage:"nodes receiving rings at once (default swift.parallelism)"`
	// ParentApproved is the run (a swift-disk run) whose approval covers this change; such a
	// child opens no gate of its own, but only when that run is its real parent (Temporal's
	// record, trust.go): set by anyone else, it is refused and the gate opens. Not a CLI flag.
	ParentApproved string `json:"parent_approved,omitempty" flag:"-"`
}

var weightRE = regexp.MustCompile(`^[0-9]{1,9}(\.[0-9]{1,6})?$`)

// ringSpec is one parsed element of --add, --remove or --set-weight.
type ringSpec struct {
	Node, Device string // Device "" = every device of the node
	Weight       float64
	HasWeight    bool
}

func parseRingSpec(field, v string, weight string) (ringSpec, error) {
	var sp ringSpec
	target, w, hasW := strings.Cut(v, "=")
	switch weight {
	case "required":
		if !hasW {
			return sp, &FieldError{Field: field, Value: v, Problem: "want <node>[/<device>]=<weight>"}
		}
	case "none":
		if hasW {
			return sp, &FieldError{Field: field, Value: v, Problem: "takes no weight: want <node> or <node>/<device>"}
		}
	}
	if hasW {
		if !weightRE.MatchString(w) {
			return sp, &FieldError{Field: field, Value: v, Problem: "weight must be a non-negative number like 100 or 12.5"}
		}
		sp.Weight, _ = strconv.ParseFloat(w, 64)
		sp.HasWeight = true
	}
	node, dev, hasDev := strings.Cut(target, "/")
	if err := ValidateHostName(field, node); err != nil {
		return sp, &FieldError{Field: field, Value: v, Problem: "want <node>[/<device>]: " + err.(*FieldError).Problem}
	}
	if hasDev {
		if err := ValidateSwiftDevice(field, dev); err != nil {
			return sp, &FieldError{Field: field, Value: v, Problem: err.(*FieldError).Problem}
		}
	}
	sp.Node, sp.Device = node, dev
	return sp, nil
}

func (in *SwiftRingInput) specs() (add, remove, set []ringSpec, err error) {
	for _, l := range []struct {
		field, weight string
		in            []string
		out           *[]ringSpec
	}{{"add", "optional", in.Add, &add}, {"remove", "none", in.Remove, &remove}, {"set-weight", "required", in.SetWeight, &set}} {
		for _, v := range l.in {
			sp, err := parseRingSpec(l.field, v, l.weight)
			if err != nil {
				return nil, nil, nil, err
			}
			*l.out = append(*l.out, sp)
		}
	}
	return add, remove, set, nil
}

// changeWords describes the change, e.g. "remove storage3; add storage4/sdb=100".
func (in *SwiftRingInput) changeWords(sep string) string {
	var parts []string
	for _, l := range []struct {
		verb string
		v    []string
	}{{"add", in.Add}, {"remove", in.Remove}, {"set-weight", in.SetWeight}} {
		if len(l.v) > 0 {
			parts = append(parts, l.verb+" "+strings.Join(l.v, ","))
		}
	}
	if in.Distribute {
		parts = append(parts, "distribute")
	}
	return strings.Join(parts, sep)
}

// swiftRingKey names the run after its change; the workflow ID stays within 200 characters.
func swiftRingKey(in *SwiftRingInput) string {
	key := strings.ReplaceAll(in.changeWords("/"), " ", "=")
	return key[:min(len(key), 200-len("swift-ring/"))]
}

func (in *SwiftRingInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	changes := len(in.Add) + len(in.Remove) + len(in.SetWeight)
	if changes == 0 && !in.Distribute {
		return &FieldError{Field: "add/remove/set-weight", Problem: "name a change (--add, --remove, --set-weight) or --distribute"}
	}
	if changes > 0 && in.Distribute {
		return &FieldError{Field: "distribute", Problem: "--distribute changes nothing: do not combine it with --add, --remove or --set-weight"}
	}
	if in.Steps < 0 || in.Steps > 100 {
		return &FieldError{Field: "steps", Value: strconv.Itoa(in.Steps), Problem: "must be 1-100"}
	}
	if in.Parallelism < 0 || in.Parallelism > 1000 {
		return &FieldError{Field: "parallelism", Value: strconv.Itoa(in.Parallelism), Problem: "must be 1-1000"}
	}
	if err := validateWait("settle-timeout", in.SettleTimeout, "poll-interval", in.PollInterval); err != nil {
		return err
	}
	add, remove, set, err := in.specs()
	if err != nil {
		return err
	}
	seen := map[string]string{}
	for _, l := range []struct {
		verb string
		s    []ringSpec
	}{{"add", add}, {"remove", remove}, {"set-weight", set}} {
		for _, sp := range l.s {
			k := sp.Node + "/" + sp.Device
			if prev, ok := seen[k]; ok {
				return &FieldError{Field: l.verb, Value: k, Problem: "named twice (also in " + prev + ")"}
			}
			seen[k] = l.verb
		}
	}
	return nil
}

// ringTarget is one device the change acts on, with its weight before and after.
type ringTarget struct {
	Node, Device, IP string
	Region, Zone     int
	Remove           bool
	To               float64
	// From is the device's weight per ring kind before the change (-1 = not in that ring).
	From map[string]float64
}

// resolveRingTargets checks the change against the Swift configuration (no connection yet).
func resolveRingTargets(in *SwiftRingInput, cl activities.SwiftCluster) ([]*ringTarget, error) {
	add, remove, set, err := in.specs()
	if err != nil {
		return nil, err
	}
	var out []*ringTarget
	expand := func(field string, sp ringSpec) ([]string, activities.SwiftNodeInfo, error) {
		n, ok := cl.Nodes[sp.Node]
		if !ok || len(n.Devices) == 0 {
			return nil, n, &FieldError{Field: field, Value: sp.Node, Problem: fmt.Sprintf("not a Swift storage node (storage nodes: %s)", strings.Join(cl.StorageNodes(), ", "))}
		}
		devs := make([]string, 0, len(n.Devices))
		//workflowcheck:ignore sorted below
		for d := range n.Devices {
			devs = append(devs, d)
		}
		slices.Sort(devs)
		if sp.Device == "" {
			return devs, n, nil
		}
		if !slices.Contains(devs, sp.Device) {
			return nil, n, &FieldError{Field: field, Value: sp.Node + "/" + sp.Device, Problem: fmt.Sprintf("%s has no Swift device %s (its devices: %s)", sp.Node, sp.Device, strings.Join(devs, ", "))}
		}
		return []string{sp.Device}, n, nil
	}
	for _, l := range []struct {
		field string
		s     []ringSpec
	}{{"add", add}, {"remove", remove}, {"set-weight", set}} {
		for _, sp := range l.s {
			devs, n, err := expand(l.field, sp)
			if err != nil {
				return nil, err
			}
			for _, d := range devs {
				t := &ringTarget{Node: sp.Node, Device: d, IP: n.RingIP, Region: n.Region, Zone: n.Zone, From: map[string]float64{}}
				switch l.field {
				case "add":
					t.To = n.Weight
					if sp.HasWeight {
						t.To = sp.Weight
					}
				case "remove":
					t.Remove = true
				case "set-weight":
					t.To = sp.Weight
				}
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// stepOps returns the ring operations of step k of steps: weights move linearly from each
// device's current weight to its target; a removal removes the device at the last step.
func stepOps(targets []*ringTarget, ports map[string]int, k, steps int) []activities.RingOp {
	var ops []activities.RingOp
	for _, t := range targets {
		for _, kind := range activities.RingKinds {
			from, ok := t.From[kind]
			if !ok {
				from = -1
			}
			op := activities.RingOp{Kind: kind, Node: t.Node, Device: t.Device, IP: t.IP, Port: ports[kind], Region: t.Region, Zone: t.Zone}
			switch {
			case t.Remove && from < 0:
				continue // not in this ring
			case t.Remove && k == steps:
				op.Action = "remove"
			case t.Remove:
				op.Action, op.Weight = "set_weight", from-from*float64(k)/float64(steps)
			case from < 0 && k == 1:
				op.Action, op.Weight = "add", t.To*float64(k)/float64(steps)
			case from < 0:
				op.Action, op.Weight = "set_weight", t.To*float64(k)/float64(steps)
			default:
				if from == t.To {
					continue
				}
				op.Action, op.Weight = "set_weight", from+(t.To-from)*float64(k)/float64(steps)
			}
			ops = append(ops, op)
		}
	}
	return ops
}

// autoSteps is how many rebalances a change needs so that none changes more than maxPct percent
// of the object ring's total weight (the devices' weight changes summed), and why; 1 when the
// change is small, the limit is 0 or the ring has no weight yet. At most 100 (--steps' limit).
func autoSteps(targets []*ringTarget, st activities.RingStatus, maxPct float64) (int, string) {
	ri, ok := st.Ring("object")
	if !ok || maxPct <= 0 {
		return 1, ""
	}
	var total, change float64
	for _, d := range ri.Devices {
		total += d.Weight
	}
	for _, t := range targets {
		from, in := t.From["object"]
		if !in {
			from = 0
		}
		to := t.To
		if t.Remove {
			to = 0
		}
		change += math.Abs(to - from)
	}
	if total <= 0 || change <= 0 {
		return 1, ""
	}
	pct := 100 * change / total
	n := min(int(math.Ceil(pct/maxPct-1e-9)), 100)
	if n <= 1 {
		return 1, ""
	}
	return n, fmt.Sprintf("the change moves %s of the object ring's weight %s (%.1f%%); swift.max_step_percent is %g: %d steps",
		activities.FormatWeight(change), activities.FormatWeight(total), pct, maxPct, n)
}

func describeOp(op activities.RingOp) string {
	switch op.Action {
	case "add":
		return fmt.Sprintf("%s: add r%dz%d-%s:%d/%s weight %s (%s)", op.Kind, max(op.Region, 1), op.Zone, op.IP, op.Port, op.Device, activities.FormatWeight(op.Weight), op.Node)
	case "remove":
		return fmt.Sprintf("%s: remove %s:%d/%s (%s)", op.Kind, op.IP, op.Port, op.Device, op.Node)
	}
	return fmt.Sprintf("%s: set_weight %s:%d/%s to %s (%s)", op.Kind, op.IP, op.Port, op.Device, activities.FormatWeight(op.Weight), op.Node)
}

// swiftRingPlan is what the ring change acts on: the cluster as configured, the devices it
// changes (with their weights before and after), in how many rebalances, and where the rings go.
type swiftRingPlan struct {
	cluster  activities.SwiftCluster
	targets  []*ringTarget
	steps    int
	nodes    []string
	parallel int
	changes  int
	// Where Act got to, for the next run when it continues as new between steps: the step to
	// do next (0: the first), whether the builders are backed up, the validations so far.
	next     int
	backedUp bool
	checks   []map[string]any
}

// swiftRingState is swiftRingPlan as the next run of a chain gets it (continue.go).
type swiftRingState struct {
	Cluster  activities.SwiftCluster `json:"cluster"`
	Targets  []*ringTarget           `json:"targets"`
	Steps    int                     `json:"steps"`
	Nodes    []string                `json:"nodes"`
	Parallel int                     `json:"parallel"`
	Changes  int                     `json:"changes"`
	Next     int                     `json:"next"`
	BackedUp bool                    `json:"backed_up"`
	Checks   []map[string]any        `json:"checks,omitempty"`
}

func (p *swiftRingPlan) MarshalJSON() ([]byte, error) {
	return json.Marshal(swiftRingState{p.cluster, p.targets, p.steps, p.nodes, p.parallel, p.changes, p.next, p.backedUp, p.checks})
}

func (p *swiftRingPlan) UnmarshalJSON(b []byte) error {
	var s swiftRingState
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*p = swiftRingPlan{s.Cluster, s.Targets, s.Steps, s.Nodes, s.Parallel, s.Changes, s.Next, s.BackedUp, s.Checks}
	return nil
}

func planSwiftRing(r *Run, in *SwiftRingInput, p *swiftRingPlan) (Approval, error) {
	p.steps = max(in.Steps, 1)
	// Checked (and a forged claim recorded) before anything is read.
	byParent := r.parentApproved(in.ParentApproved)
	err := r.Do("describe", StepOptions{Target: "swift", NoSkip: true}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, "describe", "swift", swift.SwiftTopology, &p.cluster); err != nil {
			return err
		}
		var err error
		p.targets, err = resolveRingTargets(in, p.cluster)
		if err != nil {
			return temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidInput, nil)
		}
		return nil
	})
	if err != nil {
		return Approval{}, Summarize("invalid input", err)
	}
	if !r.DryRun() {
		if err := r.AcquireLock(SwiftRingLock); err != nil {
			return Approval{}, err
		}
	}
	cl := p.cluster
	// --distribute changes nothing and needs only the ring files: no swift-ring-builder call.
	var st activities.RingStatus
	if !in.Distribute {
		err := r.Do("inspect-rings", StepOptions{Target: cl.RingBuilderHost, NoSkip: true}, func(ctx workflow.Context) error {
			return r.Exec(ctx, "inspect-rings", cl.RingBuilderHost, swift.RingStatus, &st)
		})
		if err != nil {
			return Approval{}, err
		}
	}
	for _, t := range p.targets {
		for _, ri := range st.Rings {
			if d := ri.Find(t.IP, t.Device); len(d) > 0 && d[0].Flags != "DEL" {
				t.From[ri.Kind] = d[0].Weight
			}
		}
		if !t.Remove && len(t.From) == 0 && t.Zone == 0 {
			return Approval{}, Summarize("invalid input", &FieldError{Field: "add", Value: t.Node, Problem: "swift.nodes." + t.Node + ".zone is not set: cannot place its devices"})
		}
	}
	var plan []string
	if auto, why := autoSteps(p.targets, st, cl.MaxStepPercent); auto > p.steps {
		p.steps = auto
		r.SetDetail("steps_why", why)
		plan = append(plan, why)
	}
	ringsSummary := map[string]any{}
	for _, ri := range st.Rings {
		ringsSummary[ri.Kind] = map[string]any{"partitions": ri.Partitions, "replicas": ri.Replicas, "devices": ri.DeviceCount,
			"balance": ri.Balance, "dispersion": ri.Dispersion, "min_part_hours": ri.MinPartHours, "ring_file": ri.RingFile}
	}
	if len(ringsSummary) > 0 {
		r.SetDetail("rings_before", ringsSummary)
	}

	changes := 0
	for k := 1; k <= p.steps; k++ {
		ops := stepOps(p.targets, cl.Ports, k, p.steps)
		changes += len(ops)
		for _, op := range ops {
			prefix := ""
			if p.steps > 1 {
				prefix = fmt.Sprintf("step %d/%d: ", k, p.steps)
			}
			plan = append(plan, prefix+describeOp(op))
		}
		if k < p.steps && len(ops) > 0 {
			plan = append(plan, fmt.Sprintf("step %d/%d: rebalance, distribute, wait for replication to settle and for min_part_hours", k, p.steps))
		}
	}
	nodes := cl.SortedNodes()
	remaining := st.MaxRemaining()
	if changes == 0 {
		if !in.Distribute {
			plan = append(plan, "the rings are already in the requested state: nothing to change")
		}
	} else {
		plan = append(plan, fmt.Sprintf("on %s: back up the builders, apply, rebalance, validate (min_part_hours %d, %s remaining)",
			cl.RingBuilderHost, minPartHours(st), remaining))
	}
	parallel := in.Parallelism
	if parallel <= 0 {
		parallel = max(cl.Parallelism, 1)
	}
	plan = append(plan, fmt.Sprintf("copy account/container/object.ring.gz to %d node(s) (%d at a time) and verify their checksums: %s",
		len(nodes), parallel, strings.Join(nodes, ", ")))
	r.SetPlan(plan)
	// The time min_part_hours still has to run changes as the plan waits: not a drift to approve.
	facts := make([]Fact, 0, len(plan))
	for _, l := range plan {
		if strings.HasPrefix(l, "on "+cl.RingBuilderHost+": back up the builders") {
			facts = append(facts, Fact{Name: "builders", Value: l, Minor: true})
		} else {
			facts = append(facts, Fact{Name: l})
		}
	}
	r.SetFacts(facts...)
	p.nodes, p.parallel, p.changes = nodes, parallel, changes
	if changes > 0 && remaining > 0 && !in.Wait {
		return Approval{}, Summarize("refused: inside min_part_hours", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the last rebalance is too recent: min_part_hours is %d and %s remain; run again later or with --wait-min-part-hours (never forced)", minPartHours(st), remaining),
			activities.ErrTypeRefused, nil))
	}
	switch {
	case changes == 0:
		return Approval{}, nil
	case byParent:
		return Approval{Gate: GateApproveRingChange, Skipped: "approved with run " + in.ParentApproved}, nil
	}
	return Approval{Gate: GateApproveRingChange, Summary: fmt.Sprintf("Ring change: %s (%d operation(s), %d step(s)). Reason: %s", in.changeWords("; "), changes, p.steps, in.Reason)}, nil
}

func swiftRing(r *Run, in *SwiftRingInput, p *swiftRingPlan) (string, error) {
	cl, nodes, parallel, changes := p.cluster, p.nodes, p.parallel, p.changes

	info := workflow.GetInfo(r.ctx)
	backedUp, checks := p.backedUp, p.checks
	// A step at 500 nodes is some 5,000 history events: between steps the run continues as
	// new when the next might take it past the history budget (continue.go).
	first := max(p.next, 1)
	mark := r.HistoryLength()
	for k := first; k <= p.steps; k++ {
		if k > first {
			if r.ContinueAsNew(r.HistoryLength() - mark) {
				p.next, p.backedUp, p.checks = k, backedUp, checks
				return "", ErrContinueAsNew
			}
			mark = r.HistoryLength()
		}
		ops := stepOps(p.targets, cl.Ports, k, p.steps)
		sfx := ""
		if p.steps > 1 {
			sfx = fmt.Sprintf("/%d", k)
		}
		if len(ops) > 0 {
			if err := waitMinPartHours(r, "min-part-hours"+sfx, cl, in.Wait || k > 1, recheckInterval(in.PollInterval)); err != nil {
				return "", err
			}
			if !backedUp {
				var b activities.BackupResult
				err := r.Do("backup", StepOptions{Target: cl.RingBuilderHost, NoSkip: true}, func(ctx workflow.Context) error {
					return r.Exec(r.ActivityOptions(ctx, 2*time.Minute, 0), "backup", cl.RingBuilderHost, swift.BackupBuilders, &b,
						activities.BackupRequest{Name: "stackrun-" + info.WorkflowExecution.RunID})
				})
				if err != nil {
					return "", err
				}
				backedUp = true
				r.SetDetail("backup_dir", b.Dir)
				r.SetLeftState(fmt.Sprintf("builders backed up in %s on %s", b.Dir, cl.RingBuilderHost))
			}
			var applied activities.RingOpsResult
			err := r.Do("apply"+sfx, StepOptions{Target: cl.RingBuilderHost, NoSkip: true}, func(ctx workflow.Context) error {
				return r.Exec(r.ActivityOptions(ctx, 2*time.Minute, 0), "apply"+sfx, cl.RingBuilderHost, swift.ApplyRingOps, &applied, ops)
			})
			if err != nil {
				return "", err
			}
			r.step("apply" + sfx).Detail = fmt.Sprintf("%d applied, %d already in effect", len(applied.Applied), len(applied.Already))
			r.SetLeftState(fmt.Sprintf("builders changed on %s (backup %v); rings not yet rebalanced or distributed", cl.RingBuilderHost, r.details["backup_dir"]))
			err = r.Do("rebalance"+sfx, StepOptions{Target: cl.RingBuilderHost, NoSkip: true}, func(ctx workflow.Context) error {
				for _, kind := range activities.RingKinds {
					var rb activities.RebalanceResult
					if err := r.Exec(r.ActivityOptions(ctx, 5*time.Minute, 0), "rebalance"+sfx, cl.RingBuilderHost+"/"+kind, swift.Rebalance, &rb, kind); err != nil {
						return err
					}
					if rb.Warning != "" {
						r.AddFinding(activities.SeverityWarning, kind+".builder", "rebalance exit 1 (warning): %s", rb.Warning)
					}
				}
				return nil
			})
			if err != nil {
				return "", err
			}
			err = r.Do("validate"+sfx, StepOptions{Target: cl.RingBuilderHost}, func(ctx workflow.Context) error {
				for _, kind := range activities.RingKinds {
					var c activities.RingCheck
					if err := r.Exec(ctx, "validate"+sfx, cl.RingBuilderHost+"/"+kind, swift.ValidateRing, &c, kind); err != nil {
						return err
					}
					if !c.Valid {
						return fmt.Errorf("%s ring does not validate: %s", kind, c.Output)
					}
					checks = append(checks, map[string]any{"step": k, "ring": kind, "balance": c.Balance, "dispersion": c.Dispersion})
				}
				return nil
			})
			if err != nil {
				return "", err
			}
			r.SetDetail("balance_dispersion", checks)
		}
		files, err := distributeRings(r, sfx, cl, nodes, parallel, in.Distribute)
		if err != nil {
			return "", err
		}
		r.SetDetail("ring_files", files)
		r.SetLeftState("")
		if k < p.steps && len(ops) > 0 {
			if err := waitSettled(r, "settle"+sfx, cl, in.SettleTimeout, in.PollInterval, nil); err != nil {
				return "", err
			}
		}
	}
	if changes == 0 {
		return summarize(r.findings, fmt.Sprintf("rings verified on %d node(s)", len(nodes))), nil
	}
	return summarize(r.findings, fmt.Sprintf("%s: rebalanced, validated and distributed to %d node(s)", in.changeWords("; "), len(nodes))), nil
}

// distributeRings copies the builder host's ring files to every node (bounded parallelism),
// then verifies every node's checksums, redistributing once to nodes that still differ.
func distributeRings(r *Run, sfx string, cl activities.SwiftCluster, nodes []string, parallel int, verifyOnly bool) ([]activities.RingFile, error) {
	var files []activities.RingFile
	name := "distribute" + sfx
	err := r.Do(name, StepOptions{Target: fmt.Sprintf("%d nodes", len(nodes)), NoSkip: true}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, name, cl.RingBuilderHost, swift.BuilderRingFiles, &files); err != nil {
			return err
		}
		actx := r.ActivityOptions(ctx, time.Minute, 0)
		var copied []string
		err := r.Each(actx, len(nodes), parallel, func(ctx workflow.Context, i int) error {
			node := nodes[i]
			var res activities.PushRingsResult
			if err := r.Exec(ctx, name, node, swift.PushRings, &res, activities.PushRingsRequest{Node: node, Files: files}); err != nil {
				return fmt.Errorf("copy rings to %s: %w", node, err)
			}
			if len(res.Copied) > 0 {
				copied = append(copied, node+": "+strings.Join(res.Copied, ","))
				if verifyOnly {
					r.AddFinding(activities.SeverityWarning, node, "held stale or missing ring files (%s): redistributed", strings.Join(res.Copied, ", "))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.Sort(copied)
		r.step(name).Detail = fmt.Sprintf("copied to %d node(s), %d already current", len(copied), len(nodes)-len(copied))
		r.SetDetail("distributed"+strings.ReplaceAll(sfx, "/", "_"), copied)
		return nil
	})
	if err != nil {
		return nil, err
	}
	vname := "verify" + sfx
	err = r.Do(vname, StepOptions{Target: fmt.Sprintf("%d nodes", len(nodes))}, func(ctx workflow.Context) error {
		actx := r.ActivityOptions(ctx, time.Minute, 0)
		for attempt := 0; ; attempt++ {
			var bad []string
			err := r.Each(actx, len(nodes), parallel, func(ctx workflow.Context, i int) error {
				node := nodes[i]
				var res activities.RingSumsResult
				if err := r.Exec(ctx, vname, node, swift.RingSums, &res, activities.PushRingsRequest{Node: node, Files: files}); err != nil {
					return fmt.Errorf("checksums on %s: %w", node, err)
				}
				if len(res.Mismatch) > 0 {
					bad = append(bad, node)
					r.AddFinding(activities.SeverityWarning, node, "ring checksums differ from %s: %s", cl.RingBuilderHost, strings.Join(res.Mismatch, ", "))
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(bad) == 0 {
				r.step(vname).Detail = fmt.Sprintf("all %d node(s) have the builder host's ring checksums", len(nodes))
				return nil
			}
			slices.Sort(bad)
			if attempt > 0 {
				return fmt.Errorf("ring checksums still differ after redistribution on: %s", strings.Join(bad, ", "))
			}
			err = r.Each(actx, len(bad), parallel, func(ctx workflow.Context, i int) error {
				return r.Exec(ctx, vname, bad[i], swift.PushRings, nil, activities.PushRingsRequest{Node: bad[i], Files: files})
			})
			if err != nil {
				return err
			}
		}
	})
	return files, err
}
