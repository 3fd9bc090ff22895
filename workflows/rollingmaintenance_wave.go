package workflows

// The wave of rolling-maintenance (rollingmaintenance.go declares it and makes the plan): the
// batches, one host at a time, and each host's steps.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// wave is a rolling maintenance under way.
type wave struct {
	r       *Run
	in      *RollingMaintenanceInput
	p       *rollingPlan
	done    []string
	current string
	// hostState is what the current host is left in, should the run end here.
	hostState string
	upgrade   *upgradeRun
	// hostNamed: the lease and verify-reconnect steps are named per host like the host's other
	// steps (change rollingHostStepNames); before it one step of each served every host, the
	// last host's state overwriting the others'.
	hostNamed bool
}

// rollingHostStepNames is the workflow.GetVersion change after which a wave's hosts each have
// their own <host>/acquire-lease and <host>/verify-reconnect steps.
const rollingHostStepNames = "rolling-host-step-names"

// sharedStep is the name of a host step that runs before the change rollingHostStepNames had one
// step for every host of the wave: <host>/<s> after it, s before.
func (w *wave) sharedStep(host, s string) string {
	if w.hostNamed {
		return host + "/" + s
	}
	return s
}

func rollingMaintenance(r *Run, in *RollingMaintenanceInput, p *rollingPlan) (string, error) {
	w := &wave{r: r, in: in, p: p}
	// Once per run (each run of a chain asks again): a run keeps one naming of its host steps.
	w.hostNamed = workflow.GetVersion(r.ctx, rollingHostStepNames, workflow.DefaultVersion, 1) == 1
	// A run of a chain (continue.go) goes on with the host after the last one done.
	first := p.next
	w.done = slices.Clone(p.hostNames()[:first])
	if p.upgrade != nil {
		w.upgrade = &upgradeRun{r: r, tag: backupTag(r), dbHost: p.dbHost, parallel: 1, plans: []*upgradeServicePlan{p.upgrade}}
		r.OnExit(w.upgrade.report) // a hook that is not carried: an upgrade's wave stays one run
	}
	r.OnExitEveryRun(w.leftState)
	r.setStepState(r.step("wave"), StepRunning, w.text())
	// A host is some 160 events of the parent's history (its children have their own): between
	// two hosts the run continues as new when the next might take it past the history budget
	// (at 500 computes one run would pass Temporal's hard limit). Not within a host: it holds
	// its lease and leaves the host disabled.
	k, mark := 0, r.HistoryLength()
	for i, b := range p.batches {
		for _, h := range b.hosts {
			if k < first {
				k++
				continue
			}
			if k > first && p.upgrade == nil {
				if r.ContinueAsNew(r.HistoryLength() - mark) {
					// Each host this run did is one step in the next run's (the chain's state
					// stays small however many hosts are done).
					for _, n := range w.done[first:] {
						detail := "done"
						if s, ok := r.byName[n+"/migrate-back"]; ok && s.Detail != "" {
							detail += ": " + s.Detail
						}
						r.foldSteps(n, detail)
					}
					p.next = k
					return "", ErrContinueAsNew
				}
				mark = r.HistoryLength()
			}
			k++
			w.current = h.name()
			w.show()
			if err := w.host(h); err != nil {
				return w.summary(), err
			}
			w.done = append(w.done, h.name())
			w.current = ""
			w.show()
		}
		// The canary's gate, unless an earlier run of the chain asked it (it did batch 1's end).
		if i == 0 && len(p.batches) > 1 && first < len(b.hosts) {
			err := r.Gate(GateCanaryOK, GateOptions{Summary: fmt.Sprintf("The canary batch (%s: %s) is done: %s, its instances back. Go on with the other %d batch(es)?",
				b.domain, strings.Join(w.done, ", "), in.Action, len(p.batches)-1)})
			if err != nil {
				return w.summary(), err
			}
		}
	}
	r.setStepState(r.step("wave"), StepDone, w.text())
	return w.summary(), nil
}

// text lists the hosts done, in progress and untouched.
func (w *wave) text() string {
	var untouched []string
	for _, h := range w.p.hostNames() {
		if !slices.Contains(w.done, h) && h != w.current {
			untouched = append(untouched, h)
		}
	}
	return fmt.Sprintf("done: [%s]; in progress: [%s]; untouched: [%s]", strings.Join(w.done, ", "), w.current, strings.Join(untouched, ", "))
}

func (w *wave) show() {
	w.r.step("wave").Detail = w.text()
	w.r.SetDetail("wave", w.text())
}

func (w *wave) leftState() {
	w.show()
	if len(w.done) == len(w.p.hostNames()) {
		w.r.SetLeftState("")
		return
	}
	s := "the wave stopped: " + w.text()
	if w.hostState != "" {
		s += "; " + w.hostState
	}
	if w.current != "" {
		s += fmt.Sprintf("; see the steps %s/... for where %s and its instances are", w.current, w.current)
	}
	w.r.SetLeftState(s)
}

func (w *wave) summary() string {
	return fmt.Sprintf("rolling %s: %d of %d host(s) done (%s)", w.in.Action, len(w.done), len(w.p.hostNames()), w.text())
}

// stalled is a host step's error with the wave's state, so that the stall says where the wave is.
// An abort, a cancellation and a refusal keep their own error (a refusal ends the run).
func (w *wave) stalled(err error) error {
	if err == nil || IsAbort(err) || temporal.IsCanceledError(err) {
		return err
	}
	return fmt.Errorf("%s; the wave waits here: %s", errText(err), w.text())
}

// host is one host's turn: evacuate (child), lease, disable, check empty, action, check, enable,
// capacity again, migrate back, release.
func (w *wave) host(h *rollingHost) error {
	r, name := w.r, h.name()
	st := func(s string) string { return name + "/" + s }
	r.AddSteps(st("instances"), st("evacuate"))
	if w.hostNamed {
		r.AddSteps(st("acquire-lease"))
	}
	r.AddSteps(st("disable"), st("verify-empty"))
	reason := rollingReasonPrefix(w.in.Action) + w.in.Reason
	var before []activities.Instance
	err := r.Do(st("instances"), StepOptions{Target: name, ReadOnly: true}, func(ctx workflow.Context) error {
		return w.stalled(r.Exec(ctx, st("instances"), name, compute.InstancesOnHost, &before, name))
	})
	if err != nil {
		return err
	}
	r.step(st("instances")).Detail = fmt.Sprintf("%d instance(s) to bring back after the %s", len(before), w.in.Action)
	ev := EvacuateInput{Meta: Meta{RequestedBy: r.meta.RequestedBy, Reason: reason}, Host: name, Targets: h.targets, Parallel: w.in.Parallel}
	var evRep Report
	if err := w.child(st("evacuate"), Evacuate, &ev, &evRep, nil); err != nil {
		return err
	}
	if err := r.acquireHostLeaseAs(w.sharedStep(name, "acquire-lease"), name); err != nil {
		return err
	}
	err = r.Do(st("disable"), StepOptions{Target: name, NoSkip: true}, func(ctx workflow.Context) error {
		var s activities.ComputeService
		return w.stalled(r.Exec(ctx, st("disable"), name, compute.SetComputeService, &s, activities.ServiceChange{Host: name, Disable: true, Reason: reason}))
	})
	if err != nil {
		return err
	}
	w.hostState = fmt.Sprintf("nova-compute on %s is DISABLED (reason %q): `openstack compute service set --enable %s nova-compute` when done", name, reason, name)
	// Between the child's enable and this disable the scheduler could have placed something here.
	err = r.Do(st("verify-empty"), StepOptions{Target: name}, func(ctx workflow.Context) error {
		var now []activities.Instance
		if err := r.Exec(ctx, st("verify-empty"), name, compute.InstancesOnHost, &now, name); err != nil {
			return w.stalled(err)
		}
		if len(now) > 0 {
			ids := make([]string, len(now))
			for i, x := range now {
				ids[i] = fmt.Sprintf("%s (%s, %s)", x.Name, x.ID, x.Status)
			}
			return w.stalled(fmt.Errorf("%s still has %d instance(s) after its evacuation: %s; move them (or resolve skip to %s it with them on it)", name, len(now), strings.Join(ids, ", "), w.in.Action))
		}
		r.step(st("verify-empty")).Detail = "empty"
		return nil
	})
	if err != nil {
		return err
	}
	if err := w.action(h); err != nil {
		return err
	}
	r.AddSteps(st("enable"), st("capacity-back"), st("migrate-back"))
	err = r.Do(st("enable"), StepOptions{Target: name, NoSkip: true}, func(ctx workflow.Context) error {
		var s activities.ComputeService
		return w.stalled(r.Exec(ctx, st("enable"), name, compute.SetComputeService, &s, activities.ServiceChange{Host: name, Enable: true}))
	})
	if err != nil {
		return err
	}
	w.hostState = ""
	if err := w.migrateBack(h, before); err != nil {
		return err
	}
	r.ReleaseHostLease(name)
	return nil
}

// child runs a runbook (evacuate, post-reboot-check) on the host as a child run, under this run's
// requester. The child's own gates apply (a person approves its plan); a child that ends other
// than Completed stalls the step with its summary, and retry starts a new child.
func (w *wave) child(step string, rb Runbook, in Input, rep *Report, check func(*Report) error) error {
	r := w.r
	attempt := 0
	return r.Do(step, StepOptions{Target: rb.Target(in), NoSkip: true}, func(ctx workflow.Context) error {
		attempt++
		id := r.childRunID(step, attempt)
		cctx := r.childRunContext(ctx, id, rb, in)
		r.step(step).Detail = fmt.Sprintf("child run %s (its gates are decided there: stackrun show %s)", id, id)
		*rep = Report{}
		if err := workflow.ExecuteChildWorkflow(cctx, rb.Type, in).Get(ctx, rep); err != nil {
			return w.stalled(fmt.Errorf("%s %s: %w", rb.Name, id, err))
		}
		if rep.Status != StatusCompleted {
			left := ""
			if rep.LeftState != "" {
				left = "; it left: " + rep.LeftState
			}
			return w.stalled(fmt.Errorf("%s %s ended %s: %s%s; resolve retry to start it again", rb.Name, id, rep.Status, rep.Summary, left))
		}
		r.step(step).Detail = fmt.Sprintf("%s (run %s)", rep.Summary, id)
		if check != nil {
			if err := check(rep); err != nil {
				return w.stalled(fmt.Errorf("%s %s: %w; resolve retry to run it again", rb.Name, id, err))
			}
		}
		return nil
	})
}

// action is the maintenance itself, and the check that the host is back.
func (w *wave) action(h *rollingHost) error {
	r, name := w.r, h.name()
	st := func(s string) string { return name + "/" + s }
	svc := novaComputeOf(h.facts)
	switch w.in.Action {
	case ActionUpgrade:
		for _, uh := range w.p.upgrade.hosts {
			if uh.host == name {
				return w.upgrade.upgradeHost(r.ctx, w.p.upgrade, uh, false)
			}
		}
		return fmt.Errorf("no upgrade plan for %s", name)
	case ActionRestartService:
		r.AddSteps(st("restart"))
		if w.hostNamed {
			r.AddSteps(st("verify-reconnect"))
		}
		var since time.Time
		err := r.Do(st("restart"), StepOptions{Target: name, NoSkip: true}, func(ctx workflow.Context) error {
			since = workflow.Now(ctx)
			req := activities.ServiceRequest{Host: name, Role: svc.Role, Service: svc.Name}
			for _, a := range []string{"stop", "start"} {
				if err := r.Exec(ctx, st("restart"), name, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req, Action: a}); err != nil {
					return w.stalled(err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return verifyComputeBackWith(r, w.sharedStep(name, "verify-reconnect"), name, svc, since, false)
	}
	r.AddSteps(st("reboot"), st("wait-boot"), st("wait-compute"))
	if w.hostNamed {
		r.AddSteps(st("verify-reconnect"))
	}
	r.AddSteps(st("post-reboot-check"))
	var since time.Time
	err := r.Do(st("reboot"), StepOptions{Target: name, NoSkip: true}, func(ctx workflow.Context) error {
		if since.IsZero() {
			since = workflow.Now(ctx).Truncate(time.Second)
		}
		var res activities.RebootResult
		ctx = r.WithActivity(ctx, ActOpts{Timeout: 5 * time.Minute, Heartbeat: time.Minute})
		if err := r.Exec(ctx, st("reboot"), name, hosts.RebootHost, &res, activities.RebootRequest{Host: name, After: since}); err != nil {
			return w.stalled(err)
		}
		r.step(st("reboot")).Detail = res.Detail
		return nil
	})
	if err != nil {
		return err
	}
	w.hostState += fmt.Sprintf("; %s was rebooted at %s", name, since.Format(time.RFC3339))
	var boot time.Time
	err = r.Do(st("wait-boot"), StepOptions{Target: name, ReadOnly: true}, func(ctx workflow.Context) error {
		ctx = r.WithActivity(ctx, ActOpts{Timeout: rollingBootTimeout + 5*time.Minute, Heartbeat: time.Minute})
		if err := r.Exec(ctx, st("wait-boot"), name, hosts.WaitForBoot, &boot, activities.BootWait{Host: name, After: since, Timeout: rollingBootTimeout}); err != nil {
			return w.stalled(err)
		}
		r.step(st("wait-boot")).Detail = "answers; booted at " + boot.Format(time.RFC3339)
		return nil
	})
	if err != nil {
		return err
	}
	// Only a report made after the boot counts: the last one before the reboot may look fresh
	// for service_down_time. nova-compute can take a while to start on a loaded host.
	err = r.Do(st("wait-compute"), StepOptions{Target: name, ReadOnly: true}, func(ctx workflow.Context) error {
		deadline := workflow.Now(ctx).Add(10 * time.Minute)
		for {
			var svcs []activities.ComputeService
			if err := r.Exec(ctx, st("wait-compute"), name, compute.ComputeServices, &svcs); err != nil {
				return w.stalled(err)
			}
			for _, s := range svcs {
				if s.Host == name && s.State == "up" && !s.UpdatedAt.Before(boot) {
					r.step(st("wait-compute")).Detail = "nova-compute reported at " + s.UpdatedAt.Format(time.RFC3339)
					return nil
				}
			}
			if workflow.Now(ctx).After(deadline) {
				return w.stalled(fmt.Errorf("nova-compute on %s has not reported since its boot at %s", name, boot.Format(time.RFC3339)))
			}
			if err := workflow.Sleep(ctx, 5*time.Second); err != nil {
				return err
			}
		}
	})
	if err != nil {
		return err
	}
	// wait-compute saw a report after the boot: the proof of the reconnect (verifyComputeBackWith).
	once := workflow.GetVersion(r.ctx, rollingRebootCheckOnce, workflow.DefaultVersion, 1) == 1
	if err := verifyComputeBackWith(r, w.sharedStep(name, "verify-reconnect"), name, svc, boot, once); err != nil {
		return err
	}
	pr := PostRebootCheckInput{Meta: Meta{RequestedBy: r.meta.RequestedBy, Reason: "after the rolling reboot of " + name}, Host: name, Role: "compute", Since: boot}
	var rep Report
	return w.child(st("post-reboot-check"), PostRebootCheck, &pr, &rep, func(rep *Report) error {
		var crit []string
		for _, f := range rep.Findings {
			if f.Severity == activities.SeverityCritical {
				crit = append(crit, f.Subject+": "+f.Message)
			}
		}
		if len(crit) > 0 {
			return fmt.Errorf("critical findings on %s: %s", name, strings.Join(crit, "; "))
		}
		for _, f := range rep.Findings {
			if f.Severity == activities.SeverityWarning {
				r.AddFinding(f.Severity, f.Subject, "post-reboot check: %s", f.Message)
			}
		}
		return nil
	})
}

// rollingRebootCheckOnce is the workflow.GetVersion change after which the reboot path checks
// the AMQP evidence once (the service report after the boot proves the reconnect) instead of
// waiting up to 30 s per host for a log line oslo.messaging writes only at DEBUG level.
const rollingRebootCheckOnce = "rolling-reboot-check-once"

func novaComputeOf(f activities.HostFacts) activities.ServiceFacts {
	for _, s := range f.Services {
		if s.Name == "nova-compute" {
			return s
		}
	}
	return activities.ServiceFacts{Role: "compute", Name: "nova-compute", AMQP: true}
}

// migrateBack checks the room on the host again (Placement) and moves back the instances that
// were on it before its evacuation, from wherever they are now.
func (w *wave) migrateBack(h *rollingHost, before []activities.Instance) error {
	r, name := w.r, h.name()
	st := func(s string) string { return name + "/" + s }
	var moves []Move
	err := r.Do(st("capacity-back"), StepOptions{Target: name}, func(ctx workflow.Context) error {
		var now []activities.Instance
		var gone []string
		for _, b := range before {
			var cur activities.Instance
			err := r.Exec(ctx, st("capacity-back"), b.ID, compute.GetInstance, &cur, b.ID)
			var app *temporal.ApplicationError
			switch {
			case errors.As(err, &app) && app.Type() == activities.ErrTypeNotFound:
				gone = append(gone, b.ID)
				continue
			case err != nil:
				return w.stalled(err)
			case cur.Host == name:
				continue // never left, or already back
			}
			now = append(now, cur)
		}
		var caps []activities.HostCapacity
		if err := r.Exec(ctx, st("capacity-back"), name, compute.Capacity, &caps, []string{name}); err != nil {
			return w.stalled(err)
		}
		var err error
		moves, err = PlanMoves(name, now, caps, false)
		for i := range moves {
			moves[i].From, moves[i].To = now[i].Host, name
		}
		if err != nil {
			return w.stalled(fmt.Errorf("the instances of %s do not fit on it any more: %v; resolve skip to leave them where they are", name, err))
		}
		d := fmt.Sprintf("%d instance(s) to move back, room on %s checked", len(moves), name)
		if len(gone) > 0 {
			d += fmt.Sprintf("; %d deleted meanwhile: %s", len(gone), strings.Join(gone, ", "))
		}
		r.step(st("capacity-back")).Detail = d
		return nil
	})
	if err != nil || r.StepState(st("capacity-back")) == StepSkipped {
		return err
	}
	return r.Do(st("migrate-back"), StepOptions{Target: name}, func(ctx workflow.Context) error {
		if err := r.moveAll(st("migrate-back"), moves, w.p.parallel, ""); err != nil {
			return err
		}
		n := 0
		var failed []string
		for _, m := range moves {
			switch m.Outcome {
			case "moved":
				n++
			case "failed":
				failed = append(failed, m.label()+": "+m.Detail)
			}
		}
		if len(failed) > 0 {
			r.AddFinding(activities.SeverityWarning, name, "%d instance(s) not moved back to %s: %s", len(failed), name, strings.Join(failed, "; "))
		}
		r.step(st("migrate-back")).Detail = fmt.Sprintf("%d of %d moved back to %s", n, len(moves), name)
		return nil
	})
}
