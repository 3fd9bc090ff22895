package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// QueryLease answers the lease workflow's state.
const QueryLease = activities.QueryLeaseState

// leaseCheckInterval is how often the lease workflow, while runs wait, looks for holders that
// ended without releasing their slot.
const leaseCheckInterval = 5 * time.Minute

// HostLease is the one cloud-wide lease workflow (ID activities.LeaseWorkflowID): it limits how
// many hosts are out of service at once, and it is a lock per host: a host held by one run is
// not granted to another (evacuate, recover-host, restart-service and swift-disk on one host
// never run at once). Runbooks send "acquire" and "release" through the Lease activities; a grant
// is the signal "lease-granted" to the requesting run.
//
// Anyone who can send signals could send those three. So nothing is taken on their word: before
// it grants a slot or frees one, the lease asks the run itself (the query "leases", through the
// Wants activity) whether it wants that key; and a run checks every grant it receives against
// the lease's own state (the Holds activity). A forged signal changes nothing but the lease's list
// of refusals.
func HostLease(ctx workflow.Context, st activities.LeaseState) error {
	if err := workflow.SetQueryHandler(ctx, QueryLease, func() (activities.LeaseState, error) { return st, nil }); err != nil {
		return err
	}
	verified := workflow.GetVersion(ctx, "lease-verified", workflow.DefaultVersion, 1) == 1
	acquire := workflow.GetSignalChannel(ctx, "acquire")
	release := workflow.GetSignalChannel(ctx, "release")
	actx := workflow.WithActivityOptions(ctx, ActOpts{Timeout: time.Minute, Attempts: 3}.options())
	grant := func(h activities.LeaseHolder) {
		err := workflow.SignalExternalWorkflow(ctx, h.WorkflowID, h.RunID, SignalLeaseGranted, h).Get(ctx, nil)
		if err != nil {
			// The run is gone: free its slot.
			workflow.GetLogger(ctx).Warn("lease grant not delivered; freeing slot", "workflow_id", h.WorkflowID, "error", err)
			st.Holders = slices.DeleteFunc(st.Holders, func(x activities.LeaseHolder) bool { return x == h })
		}
	}
	// wants asks the run whether it holds or waits for the key; in doubt (the run did not
	// answer) the lease keeps what it has.
	wants := func(h activities.LeaseHolder, doubt bool) bool {
		var ok bool
		if err := workflow.ExecuteActivity(actx, lease.Wants, h).Get(ctx, &ok); err != nil {
			workflow.GetLogger(ctx).Warn("lease: the run did not say what it holds", "workflow_id", h.WorkflowID, "error", err)
			return doubt
		}
		return ok
	}
	refuse := func(format string, args ...any) {
		msg := workflow.Now(ctx).UTC().Format(time.RFC3339) + " " + fmt.Sprintf(format, args...)
		workflow.GetLogger(ctx).Warn("lease: refused", "what", msg)
		st.Refused = append(st.Refused, msg)
		if len(st.Refused) > 20 {
			st.Refused = st.Refused[len(st.Refused)-20:]
		}
	}
	heldByOther := func(h activities.LeaseHolder) bool {
		return slices.ContainsFunc(st.Holders, func(x activities.LeaseHolder) bool { return x.Host == h.Host && x != h })
	}
	promote := func() {
		if !verified {
			for len(st.Waiting) > 0 && len(st.Holders) < max(1, st.Max) {
				h := st.Waiting[0]
				st.Waiting = st.Waiting[1:]
				st.Holders = append(st.Holders, h)
				grant(h)
			}
			return
		}
		for i := 0; i < len(st.Waiting) && len(st.Holders) < max(1, st.Max); {
			h := st.Waiting[i]
			if heldByOther(h) {
				i++ // a lock per host: it waits for the run that holds its host
				continue
			}
			st.Waiting = slices.Delete(st.Waiting, i, i+1)
			if !wants(h, true) {
				refuse("acquire of %s for %s: the run does not want it (a forged acquire, or the run moved on)", h.Host, h.WorkflowID)
				continue
			}
			st.Holders = append(st.Holders, h)
			grant(h)
		}
	}
	holder := func(r activities.LeaseRequest) activities.LeaseHolder {
		h := activities.LeaseHolder{WorkflowID: r.WorkflowID, Host: r.Host}
		if verified {
			h.RunID = r.RunID
		}
		return h
	}
	for {
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(acquire, func(c workflow.ReceiveChannel, _ bool) {
			var r activities.LeaseRequest
			c.Receive(ctx, &r)
			if r.Max > 0 {
				st.Max = r.Max
			}
			h := holder(r)
			switch {
			case slices.Contains(st.Holders, h):
				grant(h) // a repeated request gets the same grant
			case slices.Contains(st.Waiting, h):
			default:
				st.Waiting = append(st.Waiting, h)
			}
			promote()
		})
		sel.AddReceive(release, func(c workflow.ReceiveChannel, _ bool) {
			var r activities.LeaseRequest
			c.Receive(ctx, &r)
			h := holder(r)
			if verified && (slices.Contains(st.Holders, h) || slices.Contains(st.Waiting, h)) && wants(h, true) {
				refuse("release of %s for %s: the run still holds it (a forged release)", h.Host, h.WorkflowID)
				return
			}
			st.Holders = slices.DeleteFunc(st.Holders, func(x activities.LeaseHolder) bool { return x == h })
			st.Waiting = slices.DeleteFunc(st.Waiting, func(x activities.LeaseHolder) bool { return x == h })
			promote()
		})
		if len(st.Waiting) > 0 {
			sel.AddFuture(workflow.NewTimer(ctx, leaseCheckInterval), func(workflow.Future) {
				ids := make([]string, len(st.Holders))
				for i, h := range st.Holders {
					ids[i] = h.WorkflowID
				}
				var alive []string
				if err := workflow.ExecuteActivity(actx, lease.StillRunning, ids).Get(ctx, &alive); err != nil {
					return
				}
				st.Holders = slices.DeleteFunc(st.Holders, func(x activities.LeaseHolder) bool { return !slices.Contains(alive, x.WorkflowID) })
				promote()
			})
		}
		sel.Select(ctx)
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() && acquire.Len() == 0 && release.Len() == 0 {
			return workflow.NewContinueAsNewError(ctx, HostLease, st)
		}
	}
}

// AcquireHostLease takes one of the cloud-wide slots for hosts out of service, waiting (durably)
// while the cloud is at its limit. The slot is given back when the run ends (an exit hook), or
// earlier with ReleaseHostLease.
func (r *Run) AcquireHostLease(host string) error {
	return r.acquireHostLeaseAs("acquire-lease", host)
}

// acquireHostLeaseAs is AcquireHostLease as the step named step (a rolling wave's
// "<host>/acquire-lease": one step per host).
func (r *Run) acquireHostLeaseAs(step, host string) error {
	req := activities.LeaseRequest{WorkflowID: r.info.WorkflowExecution.ID, Host: host, Max: r.policy.MaxHostsOutOfService}
	return r.acquire(step, host, req, fmt.Sprintf("waiting for a slot (at most %d host(s) out of service)", req.Max),
		func() { r.ReleaseHostLease(host) })
}

// LockWorkflowID is the ID of the lease workflow that serves the named lock.
func LockWorkflowID(name string) string { return "stackrun/lock/" + name }

// lockKey is how a lock is recorded among the run's leases.
func lockKey(name string) string { return "lock:" + name }

// AcquireLock takes the cloud-wide lock name (a lease workflow of its own with one slot, e.g.
// "swift-ring": one ring change at a time), waiting durably while another run holds it. It is
// given back when the run ends (an exit hook), or earlier with ReleaseLock; the lease workflow
// also takes it back from runs that end without releasing it.
func (r *Run) AcquireLock(name string) error {
	req := activities.LeaseRequest{WorkflowID: r.info.WorkflowExecution.ID, Host: lockKey(name), Max: 1, Lease: LockWorkflowID(name)}
	return r.acquire("acquire-lock", lockKey(name), req, fmt.Sprintf("waiting for the %s lock (one run at a time)", name),
		func() { r.ReleaseLock(name) })
}

// ReleaseLock gives the lock back; like ReleaseHostLease it never stalls the run.
func (r *Run) ReleaseLock(name string) {
	req := activities.LeaseRequest{WorkflowID: r.info.WorkflowExecution.ID, Host: lockKey(name), Lease: LockWorkflowID(name)}
	r.release("release-lock", req)
}

// leaseEarlyGrantChange is the workflow.GetVersion change that refuses, before a run asks for a
// lease, the grants of it already received.
const leaseEarlyGrantChange = "lease-early-grant"

func (r *Run) acquire(name, key string, req activities.LeaseRequest, waiting string, release func()) error {
	if slices.Contains(r.leased, key) {
		return nil // held already (a plan made again takes no second slot)
	}
	verified := r.Verifies()
	if verified {
		// Asked for by this run: what the lease workflow's Wants finds (QueryRunLeases).
		req.RunID = r.info.WorkflowExecution.RunID
		if r.leaseRuns == nil {
			r.leaseRuns = map[string]string{}
		}
		r.leaseRuns[key] = req.RunID
		r.wanted = append(r.wanted, key)
		defer func() { r.wanted = slices.DeleteFunc(r.wanted, func(k string) bool { return k == key }) }()
	}
	me := activities.LeaseHolder{WorkflowID: req.WorkflowID, RunID: req.RunID, Host: key}
	granted := false
	ch := workflow.GetSignalChannel(r.ctx, SignalLeaseGranted)
	if verified && workflow.GetVersion(r.ctx, leaseEarlyGrantChange, workflow.DefaultVersion, 1) == 1 {
		// A grant of this key that came before this run asked for it answers no request: forged
		// or stale. Refused without asking the lease, whose answer would depend on how far it got
		// with the request sent next.
		for {
			var g activities.LeaseHolder
			if !ch.ReceiveAsync(&g) {
				break
			}
			if g.Host == key {
				r.refused = append(r.refused, RefusedMessage{Signal: SignalLeaseGranted, Target: key, By: g.WorkflowID,
					Reason: fmt.Sprintf("the lease %s does not list this run as a holder of %s: a grant that came before the run asked for it", req.LeaseID(), key),
					At:     workflow.Now(r.ctx), Via: "lease"})
			}
		}
	}
	// A lease changes nothing in the world: waiting for it comes before the stale-plan check.
	err := r.Do(name, StepOptions{Target: key, NoSkip: true, ReadOnly: true}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, name, key, lease.RequestLease, nil, req); err != nil {
			return err
		}
		r.byName[name].Detail = waiting
		for !granted {
			var g activities.LeaseHolder
			ch.Receive(ctx, &g)
			if g.Host != key {
				continue
			}
			if !verified {
				granted = true
				break
			}
			// Anyone can send this signal: the grant counts only if the lease lists this run.
			var holds bool
			if err := r.Exec(ctx, name, key, lease.Holds, &holds, activities.LeaseCheck{Lease: req.LeaseID(), Holder: me}); err != nil {
				return err
			}
			if !holds {
				r.refused = append(r.refused, RefusedMessage{Signal: SignalLeaseGranted, Target: key, By: g.WorkflowID,
					Reason: fmt.Sprintf("the lease %s does not list this run as a holder of %s: a grant it did not give", req.LeaseID(), key),
					At:     workflow.Now(r.ctx), Via: "lease"})
				continue
			}
			granted = true
		}
		r.byName[name].Detail = "granted"
		return nil
	})
	if err == nil {
		r.leased = append(r.leased, key)
		r.OnExit(release)
		r.leaseExits++
	}
	return err
}

// ReleaseHostLease gives the slot back. It never stalls the run: a lease that cannot be released
// is taken back by the lease workflow once this run has ended.
func (r *Run) ReleaseHostLease(host string) {
	r.release("release-lease", activities.LeaseRequest{WorkflowID: r.info.WorkflowExecution.ID, Host: host})
}

func (r *Run) release(name string, req activities.LeaseRequest) {
	key := req.Host
	if !slices.Contains(r.leased, key) {
		return
	}
	if r.Verifies() {
		// No longer held before the lease asks this run (Wants): then it frees the slot. The
		// holder is the run of the chain it was granted to (continue.go).
		req.RunID = r.leaseRun(key)
		r.leased = slices.DeleteFunc(r.leased, func(h string) bool { return h == key })
	}
	ctx, _ := workflow.NewDisconnectedContext(r.ctx)
	if err := r.Exec(r.ActivityOptions(ctx, time.Minute, 0), name, key, lease.ReleaseLease, nil, req); err != nil {
		r.AddFinding(activities.SeverityWarning, key, "lease not released (%v); the lease workflow frees it when this run has ended", err)
	}
	r.leased = slices.DeleteFunc(r.leased, func(h string) bool { return h == key })
}

// registerLeaseQuery answers the lease workflow's question: which keys this run holds or waits
// for (activities.QueryRunLeases).
func (r *Run) registerLeaseQuery() error {
	return workflow.SetQueryHandler(r.ctx, activities.QueryRunLeases, func() ([]string, error) {
		return append(slices.Clone(r.leased), r.wanted...), nil
	})
}
