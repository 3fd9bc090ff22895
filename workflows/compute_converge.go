package workflows

// Live migrations that do not converge (RUNBOOKS.md §1, facts): the guest dirties memory as fast
// as it is copied, and Nova would end the migration itself after 800 s per GiB, by its own
// timeout action. The move activity watches the migration's remaining bytes; per
// policy.live_migration_not_converging it aborts it itself, or (force-complete) the run asks at
// the signed gate force-complete:<instance>, since force-complete pauses the guest.

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
)

// GateForceComplete is the gate family of a live migration that does not converge, under policy
// force-complete: one gate per instance, force-complete:<instance id>.
const GateForceComplete = "force-complete"

// convergencePolicy is what a live move watches: policy.live_migration_stall, at most half of
// Nova's own completion timeout for the guest (so the run acts first), and the policy's action.
// Runs whose recorded policy predates the watch have a zero stall: not watched.
func (r *Run) convergencePolicy(m Move) (time.Duration, string) {
	p := r.Policy()
	if m.Kind != activities.MoveLive || p.LiveMigrationStall <= 0 {
		return 0, ""
	}
	gib := float64(m.RAMMB)/1024 + float64(m.DiskGB)
	nova := time.Duration(math.Ceil(gib*800)) * time.Second
	stall := p.LiveMigrationStall
	if nova > 0 {
		stall = min(stall, nova/2)
	}
	return stall, cmp.Or(p.LiveMigrationNotConverging, policy.NotConvergingAbort)
}

func notConverging(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.Type() == activities.ErrTypeNotConverging
}

// forceComplete handles a move whose live migration does not converge under policy
// force-complete: gate force-complete:<id> (signed; its summary says the guest will pause); on
// approval the migration is force-completed and followed to its end; on a rejection (or an
// abort of the gate) it is aborted instead and the move fails, so its step stalls (retry, or
// skip to leave the instance where it is).
func (r *Run) forceComplete(ctx, actx workflow.Context, step string, m *Move, req activities.MoveRequest, res *activities.MoveResult, cause error) error {
	var seen activities.MoveResult
	var app *temporal.ApplicationError
	if errors.As(cause, &app) && app.HasDetails() {
		_ = app.Details(&seen)
	}
	gate := GateForceComplete + ":" + m.ID
	for n := 2; r.gates[gate] != nil; n++ { // a retried step asks again under a new name
		gate = fmt.Sprintf("%s:%s#%d", GateForceComplete, m.ID, n)
	}
	r.AddFinding(activities.SeverityWarning, m.label(), "live migration %s → %s does not converge: %s", m.From, m.To, errText(cause))
	summary := fmt.Sprintf("The live migration of %s from %s to %s does not converge (%s). Approve to FORCE-COMPLETE it: Nova pauses the guest until the copy is done (downtime for the tenant). Reject to abort the migration instead: the instance stays on %s and the step stalls.",
		m.label(), m.From, m.To, cmp.Or(seen.Progress, errText(cause)), m.From)
	if err := r.GateIn(ctx, gate, GateOptions{Summary: summary}); err != nil {
		var did string
		if aerr := r.Exec(ctx, step, m.ID, compute.AbortMigration, &did, m.ID); aerr != nil {
			return fmt.Errorf("live migration of %s does not converge; force-complete not approved (%v), and the abort failed: %w", m.ID, errText(err), aerr)
		}
		return fmt.Errorf("live migration of %s does not converge; force-complete not approved (%v): %s", m.ID, errText(err), did)
	}
	var did string
	if err := r.Exec(ctx, step, m.ID, compute.ForceCompleteMigration, &did, m.ID); err != nil {
		return err
	}
	r.step(step).Detail = did
	req.ForceCompleted = true
	return r.Exec(actx, step, m.ID, compute.MoveInstance, res, req)
}
