package workflows

// The compute family: what the compute runbooks (evacuate, recover-host, post-reboot-check)
// share — the move plan and its packing onto the targets' capacity, the bounded moves, the choice
// of targets, the API/database cross-check and the check that nova-compute came back.

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// maxTargets bounds --to.
const maxTargets = 64

// Move is one line of an evacuation plan and, once done, its outcome.
type Move struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"` // status when planned
	Kind   string `json:"kind"`   // live | cold | evacuate | skip
	From   string `json:"from"`
	To     string `json:"to,omitempty"`
	// Why is the reason of a skip.
	Why     string        `json:"why,omitempty"`
	VCPUs   int           `json:"vcpus"`
	RAMMB   int           `json:"ram_mb"`
	DiskGB  int           `json:"disk_gb"`
	Timeout time.Duration `json:"timeout,omitempty"`
	// Outcome: moved | skipped | failed | left (not reached).
	Outcome   string `json:"outcome,omitempty"`
	Detail    string `json:"detail,omitempty"`
	Migration string `json:"migration,omitempty"`
}

func (m Move) label() string {
	if m.Name != "" {
		return fmt.Sprintf("%s (%s)", m.Name, m.ID)
	}
	return m.ID
}

// MoveTimeout scales a move's deadline with the guest, as Nova does for live migrations
// (800 s per GiB of memory and disk), plus five minutes for scheduling and verification.
func MoveTimeout(ramMB, diskGB int) time.Duration {
	gib := float64(ramMB)/1024 + float64(diskGB)
	return 5*time.Minute + time.Duration(math.Ceil(gib*800))*time.Second
}

// expectAfter is the status an instance must have after its move.
func expectAfter(kind, status string) []string {
	switch kind {
	case activities.MoveCold:
		return []string{"SHUTOFF"}
	case activities.MoveEvacuate:
		if status == "SHUTOFF" {
			return []string{"SHUTOFF", "ACTIVE"}
		}
		return []string{"ACTIVE"}
	}
	if status == "PAUSED" {
		return []string{"PAUSED"}
	}
	return []string{"ACTIVE"}
}

// PlanMoves decides, per instance, how it leaves the host and where it goes, packing the
// instances onto the targets' free capacity (largest first, onto the target with the most free
// memory that fits all three resources). evacuate selects evacuation (the host is dead) instead of
// live and cold migration. It returns the moves in instance order, and an error naming the
// shortfall when some instance fits nowhere.
func PlanMoves(source string, instances []activities.Instance, caps []activities.HostCapacity, evacuate bool) ([]Move, error) {
	moves := make([]Move, len(instances))
	var toPlace []int
	for i, in := range instances {
		m := Move{ID: in.ID, Name: in.Name, Status: in.Status, From: source, VCPUs: in.VCPUs, RAMMB: in.RAMMB, DiskGB: in.DiskGB}
		switch {
		case in.TaskState != "":
			m.Kind, m.Why = "skip", fmt.Sprintf("busy: task %s in progress", in.TaskState)
		case evacuate && slices.Contains([]string{"ACTIVE", "SHUTOFF", "ERROR", "PAUSED", "SUSPENDED"}, in.Status):
			m.Kind = activities.MoveEvacuate
		case evacuate:
			m.Kind, m.Why = "skip", fmt.Sprintf("status %s cannot be evacuated", in.Status)
		case in.Status == "ACTIVE" || in.Status == "PAUSED":
			m.Kind = activities.MoveLive
		case in.Status == "SHUTOFF":
			m.Kind = activities.MoveCold
		case in.Status == "ERROR":
			m.Kind, m.Why = "skip", "in ERROR: needs a person (reset its state, or rebuild) before it can move"
			if in.Fault != "" {
				m.Why += "; fault: " + in.Fault
			}
		default:
			m.Kind, m.Why = "skip", fmt.Sprintf("status %s: not moved by this runbook", in.Status)
		}
		if m.Kind != "skip" {
			m.Timeout = MoveTimeout(in.RAMMB, in.DiskGB)
			toPlace = append(toPlace, i)
		}
		moves[i] = m
	}
	free := slices.Clone(caps)
	slices.SortStableFunc(toPlace, func(a, b int) int {
		return cmp.Or(cmp.Compare(instances[b].RAMMB, instances[a].RAMMB), cmp.Compare(instances[b].VCPUs, instances[a].VCPUs),
			cmp.Compare(instances[a].Name, instances[b].Name))
	})
	var misfits []string
	var needV, needR, needD int
	for _, i := range toPlace {
		in := instances[i]
		best := -1
		for t := range free {
			f := free[t]
			if f.FreeVCPUs < in.VCPUs || f.FreeRAMMB < in.RAMMB || f.FreeDiskGB < in.DiskGB {
				continue
			}
			if best < 0 || f.FreeRAMMB > free[best].FreeRAMMB {
				best = t
			}
		}
		if best < 0 {
			misfits = append(misfits, fmt.Sprintf("%s (%d vCPU, %d MB RAM, %d GB disk)", moves[i].label(), in.VCPUs, in.RAMMB, in.DiskGB))
			needV += in.VCPUs
			needR += in.RAMMB
			needD += in.DiskGB
			continue
		}
		free[best].FreeVCPUs -= in.VCPUs
		free[best].FreeRAMMB -= in.RAMMB
		free[best].FreeDiskGB -= in.DiskGB
		moves[i].To = free[best].Host
	}
	if len(misfits) > 0 {
		var room []string
		for _, c := range caps {
			room = append(room, fmt.Sprintf("%s: %d vCPU, %d MB RAM, %d GB disk free", c.Host, c.FreeVCPUs, c.FreeRAMMB, c.FreeDiskGB))
		}
		if len(room) == 0 {
			room = []string{"no target host"}
		}
		return moves, fmt.Errorf("not enough capacity on the targets: %d instance(s) fit nowhere: %s; short by %d vCPU, %d MB RAM, %d GB disk beyond what is left after packing the others (targets: %s)",
			len(misfits), strings.Join(misfits, ", "), needV, needR, needD, strings.Join(room, "; "))
	}
	return moves, nil
}

// planLines renders moves for the plan.
func planLines(moves []Move) []string {
	var out []string
	for _, m := range moves {
		switch m.Kind {
		case "skip":
			out = append(out, fmt.Sprintf("%s [%s]: SKIP — %s", m.label(), m.Status, m.Why))
		default:
			verb := map[string]string{activities.MoveLive: "live-migrate", activities.MoveCold: "cold-migrate + confirm", activities.MoveEvacuate: "evacuate"}[m.Kind]
			out = append(out, fmt.Sprintf("%s [%s]: %s %s → %s (deadline %s)", m.label(), m.Status, verb, m.From, m.To, m.Timeout))
		}
	}
	return out
}

// moveAll runs the moves with at most parallel in flight. Each move is its own step
// ("<prefix>/<instance id>"): a move out of retries stalls only its step; skip leaves that
// instance where it is. It records each move's outcome in moves.
// moveAll runs the moves with at most parallel in flight. Each move is its own step
// ("<prefix>/<instance id>"): a move out of retries stalls only its step; skip leaves that
// instance where it is. It records each move's outcome in moves.
func (r *Run) moveAll(prefix string, moves []Move, parallel int, blockMigration string) error {
	var todo []int
	for i := range moves {
		if moves[i].Kind == "skip" {
			moves[i].Outcome = "skipped"
			moves[i].Detail = moves[i].Why
			continue
		}
		todo = append(todo, i)
	}
	err := r.Each(r.ctx, len(todo), parallel, func(ctx workflow.Context, k int) error {
		m := &moves[todo[k]]
		name := prefix + "/" + m.ID
		req := activities.MoveRequest{ID: m.ID, Source: m.From, Target: m.To, Kind: m.Kind, BlockMigration: blockMigration,
			Timeout: m.Timeout, Expect: expectAfter(m.Kind, m.Status)}
		req.Stall, req.NotConverging = r.convergencePolicy(*m)
		var res activities.MoveResult
		err := r.DoIn(ctx, name, StepOptions{Target: m.label()}, func(ctx workflow.Context) error {
			actx := r.ActivityOptions(ctx, m.Timeout+5*time.Minute, 30*time.Second)
			req.ForceCompleted = false
			err := r.Exec(actx, name, m.ID, compute.MoveInstance, &res, req)
			if notConverging(err) {
				return r.forceComplete(ctx, actx, name, m, req, &res, err)
			}
			return err
		})
		s := r.step(name)
		switch {
		case err != nil:
			m.Outcome, m.Detail = "failed", errText(err)
			if IsAbort(err) {
				return err // an operator aborted: start no more moves
			}
		case s.State == StepSkipped:
			m.Outcome, m.Detail = "skipped", "skipped by operator after: "+s.Error
			s.Detail = fmt.Sprintf("%s left on %s: %s", m.label(), m.From, s.Error)
		default:
			m.Outcome, m.To, m.Migration = "moved", res.To, res.Migration
			m.Detail = fmt.Sprintf("%s → %s, %s (migration %s %s)", m.From, res.To, res.Status, res.Migration, res.MigrationStat)
			if res.AlreadyMoved {
				m.Detail += "; was already there"
			}
			s.Detail = fmt.Sprintf("%s: %s", m.label(), m.Detail)
		}
		return nil
	})
	for _, i := range todo {
		if moves[i].Outcome == "" {
			moves[i].Outcome, moves[i].Detail = "left", "not started: the run was aborted"
		}
	}
	return err
}

// refused is the error of a runbook that the world said no to (no retry, no stall).
func refused(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), activities.ErrTypeRefused, nil)
}

// hostService reads every nova-compute service (in step) and returns host's among them; a host
// without one is refused.
func hostService(r *Run, ctx workflow.Context, step, host string) (activities.ComputeService, []activities.ComputeService, error) {
	var svcs []activities.ComputeService
	if err := r.Exec(ctx, step, host, compute.ComputeServices, &svcs); err != nil {
		return activities.ComputeService{}, nil, err
	}
	i := slices.IndexFunc(svcs, func(s activities.ComputeService) bool { return s.Host == host })
	if i < 0 {
		return activities.ComputeService{}, nil, refused("host %s has no nova-compute service", host)
	}
	return svcs[i], svcs, nil
}

// hostInstances lists host's instances from the API and checks them against the Nova database
// (in step; a mismatch is a finding). It returns both lists.
func hostInstances(r *Run, ctx workflow.Context, step, host string) ([]activities.Instance, []string, error) {
	var api []activities.Instance
	if err := r.Exec(ctx, step, host, compute.InstancesOnHost, &api, host); err != nil {
		return nil, nil, err
	}
	var db []string
	if err := r.Exec(ctx, step, host, novadb.DBInstancesOnHost, &db, host); err != nil {
		return nil, nil, err
	}
	crossCheck(r, host, api, db)
	return api, db, nil
}

// planMoves is the step "capacity": the targets' free capacity from Placement, and the moves
// packed onto it (PlanMoves). The moves are returned even when some instance fits nowhere (the
// plan shows them); the error, a refusal, names the shortfall.
func planMoves(r *Run, host string, instances []activities.Instance, targets []string, evacuate bool) ([]Move, error) {
	var moves []Move
	err := r.Do("capacity", StepOptions{Target: strings.Join(targets, ","), NoSkip: true}, func(ctx workflow.Context) error {
		var caps []activities.HostCapacity
		if err := r.Exec(ctx, "capacity", strings.Join(targets, ","), compute.Capacity, &caps, targets); err != nil {
			return err
		}
		r.SetDetail("capacity", caps)
		var err error
		if moves, err = PlanMoves(host, instances, caps, evacuate); err != nil {
			return refused("%v", err)
		}
		return nil
	})
	return moves, err
}

// chooseTargets picks the hosts instances may go to: the ones named (each must be enabled and
// up), or every other enabled, up compute host. verb says what would be done there, for the
// refusal ("move", "rebuild").
func chooseTargets(svcs []activities.ComputeService, host string, named []string, verb string) ([]string, error) {
	var targets []string
	if len(named) == 0 {
		for _, s := range svcs {
			if s.Host != host && s.Status == "enabled" && s.State == "up" && !s.ForcedDown {
				targets = append(targets, s.Host)
			}
		}
	}
	for _, t := range named {
		i := slices.IndexFunc(svcs, func(s activities.ComputeService) bool { return s.Host == t })
		switch {
		case i < 0:
			return nil, refused("target %s has no nova-compute service", t)
		case svcs[i].Status != "enabled" || svcs[i].State != "up" || svcs[i].ForcedDown:
			return nil, refused("target %s is not usable: %s, %s (forced down %v)", t, svcs[i].Status, svcs[i].State, svcs[i].ForcedDown)
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return nil, refused("no other compute host is enabled and up: nowhere to %s the instances of %s", verb, host)
	}
	return targets, nil
}

// verifyComputeBack is shared with the post-reboot check: nova-compute runs, the service reports
// up in Nova, and, when since is set, its log shows an AMQP connection after since.
func verifyComputeBack(r *Run, host string, svc activities.ServiceFacts, since time.Time) error {
	return verifyComputeBackWith(r, "verify-reconnect", host, svc, since, false)
}

// verifyComputeBackWith is verifyComputeBack as the step named step (a rolling wave's
// "<host>/verify-reconnect": one step per host); with reportProves (since set) a service report
// after since is the proof of the reconnect: nova-compute has no database access, it reports
// through the conductor over the message queue. The AMQP evidence is then looked at once and
// recorded, not waited for (oslo.messaging logs its connection only at DEBUG level).
func verifyComputeBackWith(r *Run, step, host string, svc activities.ServiceFacts, since time.Time, reportProves bool) error {
	req := activities.ServiceRequest{Host: host, Role: svc.Role, Service: svc.Name}
	reportProves = reportProves && !since.IsZero()
	return r.Do(step, StepOptions{Target: host}, func(ctx workflow.Context) error {
		var st activities.ServiceState
		if err := r.Exec(ctx, step, host, hosts.ServiceStatus, &st, req); err != nil {
			return err
		}
		if !st.Running {
			return fmt.Errorf("nova-compute on %s is not running: %s", host, st.Output)
		}
		// The service reports up within its report interval; look a few times.
		var up bool
		var last activities.ComputeService
		for i := 0; i < 12 && !up; i++ {
			if i > 0 {
				_ = workflow.Sleep(ctx, 5*time.Second)
			}
			var svcs []activities.ComputeService
			if err := r.Exec(ctx, step, host, compute.ComputeServices, &svcs); err != nil {
				return err
			}
			for _, s := range svcs {
				if s.Host == host {
					last = s
					up = s.State == "up" && !s.ForcedDown && (since.IsZero() || !s.UpdatedAt.Before(since.Add(-time.Second)))
				}
			}
		}
		if !up {
			return fmt.Errorf("nova-compute on %s does not report up (state %s, forced down %v, last report %s)", host, last.State, last.ForcedDown, last.UpdatedAt.Format(time.RFC3339))
		}
		detail := "service reports up"
		if !since.IsZero() && svc.AMQP && svc.Log != "" {
			// The evidence asked for is a log line after the restart; a socket that ss shows is
			// weaker (it proves a connection now, not a reconnect) and is labelled so. No
			// connection at all stalls the step: the host is not put back in service without it.
			var res activities.AMQPResult
			areq := activities.AMQPRequest{ServiceRequest: req, Log: svc.Log, Since: since}
			tries := 6
			if reportProves {
				tries = 1
			}
			for i := 0; i < tries && !(res.Connected && !res.WeakAMQP()); i++ {
				if i > 0 {
					_ = workflow.Sleep(ctx, 5*time.Second)
				}
				var got activities.AMQPResult
				if err := r.Exec(ctx, step, host, hosts.CheckAMQP, &got, areq); err != nil {
					return err
				}
				if got.Connected || !res.Connected {
					res = got
				}
			}
			switch {
			case !res.Connected && reportProves:
				detail += fmt.Sprintf("; AMQP: proven by the service report at %s after %s (nova-compute reports over the queue); neither a connection in %s nor an AMQP socket seen", last.UpdatedAt.Format(time.RFC3339), since.Format(time.RFC3339), svc.Log)
				r.AddFinding(activities.SeverityWarning, host+"/nova-compute", "no AMQP connection logged in %s since %s and no AMQP socket seen by ss, although nova-compute reported at %s (through the queue)", svc.Log, since.Format(time.RFC3339), last.UpdatedAt.Format(time.RFC3339))
				res.Evidence = "service-report"
			case !res.Connected:
				return fmt.Errorf("nova-compute on %s did not reconnect to the message queue: no AMQP connection in %s since %s and no established AMQP socket of its process (the service reports up; is RabbitMQ reachable from %s?)", host, svc.Log, since.Format(time.RFC3339), host)
			case res.WeakAMQP():
				detail += "; AMQP: WEAKER EVIDENCE, only a socket seen by ss (" + res.Line + "), no connection logged since " + since.Format(time.RFC3339)
				r.AddFinding(activities.SeverityInfo, host+"/nova-compute", "AMQP reconnect shown only by a socket seen by ss (weaker evidence than the log: oslo.messaging logs the first connection at DEBUG): %s", res.Line)
			default:
				detail += "; AMQP connection logged at " + res.At.Format(time.RFC3339) + " (evidence: log)"
			}
			r.SetDetail("amqp_evidence", map[string]any{"host": host, "evidence": cmp.Or(res.Evidence, activities.EvidenceLog), "line": res.Line, "at": res.At})
		}
		r.step(step).Detail = detail
		return nil
	})
}

// crossCheck compares the API's and the database's instances of a host; a mismatch is a finding.
func crossCheck(r *Run, host string, api []activities.Instance, db []string) {
	inAPI := map[string]bool{}
	for _, i := range api {
		inAPI[i.ID] = true
	}
	inDB := map[string]bool{}
	for _, id := range db {
		inDB[id] = true
		if !inAPI[id] {
			r.AddFinding(activities.SeverityWarning, host+"/"+id, "instance %s is on %s in the Nova database but not in the API's list", id, host)
		}
	}
	for _, i := range api {
		if !inDB[i.ID] {
			r.AddFinding(activities.SeverityWarning, host+"/"+i.ID, "instance %s (%s) is on %s in the API but not in the Nova database", i.ID, i.Name, host)
		}
	}
	r.SetDetail("crosscheck", fmt.Sprintf("API %d instance(s), database %d", len(api), len(db)))
}

// compactMoves is what a runbook records as its "moves" detail: the moves themselves, or, for a
// large host, one line per move (the plan and the per-item steps carry the rest).
func compactMoves(moves []Move) any {
	if len(moves) < LargeRunItems {
		return moves
	}
	out := make([]string, len(moves))
	for i, m := range moves {
		out[i] = strings.TrimSpace(fmt.Sprintf("%s %s %s→%s %s", m.ID, m.Kind, m.From, m.To, m.Outcome))
	}
	return out
}
