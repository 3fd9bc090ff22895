package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// moveProgress is the heartbeat of MoveInstance, carried across attempts.
type moveProgress struct {
	FirstStart time.Time `json:"first_start"`
	Requested  bool      `json:"requested"`
	Migration  string    `json:"migration,omitempty"`
	Status     string    `json:"status,omitempty"`
	// The live migration's smallest remaining bytes (memory + disk) so far, and when it was
	// reached: no new low for MoveRequest.Stall means it does not converge.
	BestRemaining int64     `json:"best_remaining,omitempty"`
	BestAt        time.Time `json:"best_at,omitempty"`
}

// MoveInstance moves one instance off its source host (live migration, cold migration with
// resize-confirm, or evacuation) and follows it until it is idle on another host in an expected
// status. It heartbeats while it waits. It starts a move only when the instance is idle on the
// source with no move under way, so a retried or replayed activity never starts a second one:
// an instance already elsewhere is reported as moved; one that is moving is followed.
func (c *Compute) MoveInstance(ctx context.Context, req MoveRequest) (MoveResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return MoveResult{}, err
	}
	switch req.Kind {
	case MoveLive, MoveCold, MoveEvacuate:
	default:
		return MoveResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("move kind %q: must be live, cold or evacuate", req.Kind), ErrTypeInvalidInput, nil)
	}
	expect := req.Expect
	if len(expect) == 0 {
		expect = []string{"ACTIVE"}
	}
	var hb moveProgress
	// resumed: an earlier attempt of this activity heartbeated (always before it asks Nova), so
	// it may have asked and lost the answer. A new activity (an operator's retry after a stall)
	// is not resumed: a failed move before it does not stop it from asking again.
	resumed := activity.HasHeartbeatDetails(ctx)
	if resumed {
		_ = activity.GetHeartbeatDetails(ctx, &hb)
	}
	now := time.Now()
	if hb.FirstStart.IsZero() {
		hb.FirstStart = now
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Minute
	}
	deadline := hb.FirstStart.Add(timeout)
	res := MoveResult{ID: req.ID, From: req.Source}
	requestedHere := false
	aborted := false
	abortWhy := ""

	for {
		in, err := getInstance(ctx, cl, req.ID)
		if err != nil {
			return res, err
		}
		res.Status = in.Status
		switch {
		case in.Status == "VERIFY_RESIZE":
			// A cold migration that finished on the target and waits for confirmation.
			if err := cl.ConfirmResize(ctx, req.ID); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
				return res, novaError("confirm resize of "+req.ID, err)
			}
		case in.Host != req.Source && !busy(in):
			res.To = in.Host
			m, err := latestMigration(ctx, cl, req.ID, hb.FirstStart)
			if err == nil && m != nil {
				res.Migration, res.MigrationStat = m.UUID, m.Status
				// A request whose answer was lost (hb.Requested is set only after Nova's answer)
				// left its migration record: the move is this step's, not someone else's.
				hb.Requested = hb.Requested || (resumed && fromSource(m, req))
			}
			res.Started = hb.Requested
			res.AlreadyMoved = !hb.Requested
			res.Duration = time.Since(hb.FirstStart)
			if !slices.Contains(expect, in.Status) {
				return res, temporal.NewApplicationError(fmt.Sprintf("%s (%s) is on %s but %s (expected %s)%s",
					in.Name, in.ID, in.Host, in.Status, strings.Join(expect, " or "), faultText(in)), "UnexpectedState")
			}
			return res, nil
		case in.Host == req.Source && !busy(in):
			if !requestedHere && resumed {
				// An earlier attempt may have sent the request and lost Nova's answer: a migration
				// record since this step began says the request arrived, and its move is over.
				m, err := latestMigration(ctx, cl, req.ID, hb.FirstStart)
				if err != nil {
					return res, err
				}
				if fromSource(m, req) {
					requestedHere, hb.Requested = true, true
				}
			}
			if requestedHere {
				// It was asked to move and is idle on the source again: the move failed.
				detail := ""
				if m, err := latestMigration(ctx, cl, req.ID, hb.FirstStart); err == nil && m != nil {
					detail = fmt.Sprintf(" (migration %s %s)", m.UUID, m.Status)
				}
				if aborted && abortWhy != "" {
					return res, temporal.NewApplicationError(fmt.Sprintf("live migration of %s aborted: %s%s", req.ID, abortWhy, detail), ErrTypeNotConverging+"Aborted")
				}
				if aborted {
					return res, temporal.NewApplicationError(fmt.Sprintf("move of %s aborted after its deadline of %s%s", req.ID, timeout, detail), "MoveTimeout")
				}
				return res, temporal.NewApplicationError(fmt.Sprintf("move of %s (%s) from %s failed: it is %s on %s again%s%s",
					in.Name, req.ID, req.Source, in.Status, in.Host, detail, faultText(in)), "MoveFailed")
			}
			if req.ForceCompleted {
				// Its migration ended before (or without) the force-complete: Nova's own timeout
				// may have aborted it. Not started again unasked.
				return res, temporal.NewApplicationError(fmt.Sprintf("%s (%s) is %s on %s again: its live migration ended before the force-complete took effect%s",
					in.Name, req.ID, in.Status, in.Host, faultText(in)), "MoveFailed")
			}
			if in.Status == "ERROR" && req.Kind != MoveEvacuate {
				return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s (%s) is in ERROR%s: not moving it", in.Name, in.ID, faultText(in)), "InstanceError", nil)
			}
			if time.Now().After(deadline) {
				return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("move of %s: deadline %s passed before it could start", req.ID, timeout), "MoveTimeout", nil)
			}
			// FirstStart reaches the next attempt even if the answer to the request is lost.
			activity.RecordHeartbeat(ctx, hb)
			if err := startMove(ctx, cl, req); err != nil {
				return res, err
			}
			requestedHere, hb.Requested = true, true
		default:
			// Busy: a move (ours from an earlier attempt, or someone's) is under way; follow it.
			if time.Now().After(deadline) && req.Kind == MoveLive && !aborted {
				aborted = cl.AbortLiveMigration(ctx, req.ID) == nil
			}
			if req.Kind == MoveLive && req.Stall > 0 && !req.ForceCompleted && !aborted && hb.Requested {
				why, err := watchConvergence(ctx, cl, req, &hb, &res)
				if err != nil {
					return res, err
				}
				if why != "" {
					aborted = cl.AbortLiveMigration(ctx, req.ID) == nil
					abortWhy = why
				}
			}
			if hb.Requested {
				requestedHere = true
			}
		}
		if m, err := latestMigration(ctx, cl, req.ID, hb.FirstStart); err == nil && m != nil {
			hb.Migration, hb.Status = m.UUID, m.Status
		}
		activity.RecordHeartbeat(ctx, hb)
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(c.poll()):
		}
	}
}

// startMove sends the move request.
func startMove(ctx context.Context, cl *openstack.Clients, req MoveRequest) error {
	var err error
	switch req.Kind {
	case MoveLive:
		err = cl.LiveMigrate(ctx, req.ID, openstack.LiveMigrateOpts{Host: req.Target, BlockMigration: req.BlockMigration})
	case MoveCold:
		err = cl.Migrate(ctx, req.ID, openstack.MigrateOpts{Host: req.Target})
	case MoveEvacuate:
		err = cl.Evacuate(ctx, req.ID, openstack.EvacuateOpts{Host: req.Target})
	}
	if err != nil {
		return novaError(fmt.Sprintf("%s move of %s to %s", req.Kind, req.ID, cmp.Or(req.Target, "(scheduler)")), err)
	}
	return nil
}

// fromSource says whether migration record m (nil: none) moves the instance off req's source: a
// record of an earlier move to the source (the evacuation before a migrate-back) is not this one.
func fromSource(m *openstack.Migration, req MoveRequest) bool {
	return m != nil && (m.SourceCompute == "" || m.SourceCompute == req.Source)
}

// latestMigration returns the newest migration record of the instance created at or after since
// (less a minute of clock skew), or nil.
func latestMigration(ctx context.Context, cl *openstack.Clients, id string, since time.Time) (*openstack.Migration, error) {
	list, err := InstanceMigrations(ctx, cl, id)
	if err != nil {
		return nil, err
	}
	var best *openstack.Migration
	for i := range list {
		m := &list[i]
		if !since.IsZero() && m.CreatedAt.Before(since.Add(-time.Minute)) {
			continue
		}
		if best == nil || m.ID > best.ID {
			best = m
		}
	}
	return best, nil
}

// InstanceMigrations lists the migration records of one instance (os-migrations).
func InstanceMigrations(ctx context.Context, cl *openstack.Clients, id string) ([]openstack.Migration, error) {
	list, err := cl.ListMigrations(ctx, openstack.MigrationListOpts{InstanceID: id})
	if err != nil {
		return nil, novaError("list migrations of "+id, err)
	}
	return list, nil
}

// watchConvergence reads the live migration's progress (memory and disk remaining) and keeps its
// smallest value in the heartbeat. When no new low (by at least 1 %) came for req.Stall, the
// migration does not converge: memory is dirtied as fast as it is copied. Per policy it then
// returns the reason to abort it ("abort"), or fails with ErrTypeNotConverging for the workflow to
// ask at a gate ("force-complete"). A migration without counters (a driver that does not report
// them) is not judged.
func watchConvergence(ctx context.Context, cl *openstack.Clients, req MoveRequest, hb *moveProgress, res *MoveResult) (string, error) {
	list, err := cl.ServerMigrations(ctx, req.ID)
	if err != nil || len(list) == 0 {
		return "", nil // finished meanwhile, or not readable now: the next look decides
	}
	m := list[0]
	if m.MemoryTotal == 0 && m.DiskTotal == 0 {
		return "", nil
	}
	now := time.Now()
	rem := m.Remaining()
	if hb.BestAt.IsZero() || rem < hb.BestRemaining-hb.BestRemaining/100 {
		hb.BestRemaining, hb.BestAt = rem, now
	}
	res.Progress = fmt.Sprintf("migration %d: %s of %s memory and %s of %s disk remaining; no progress since %s",
		m.ID, mib(m.MemoryRemaining), mib(m.MemoryTotal), mib(m.DiskRemaining), mib(m.DiskTotal), hb.BestAt.UTC().Format(time.RFC3339))
	if rem == 0 || now.Sub(hb.BestAt) < req.Stall {
		return "", nil
	}
	why := fmt.Sprintf("it does not converge: %s remaining, no new low for %s (policy.live_migration_stall %s)", mib(rem), now.Sub(hb.BestAt).Round(time.Second), req.Stall)
	if req.NotConverging == "force-complete" {
		return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("live migration of %s %s; %s", req.ID, why, res.Progress), ErrTypeNotConverging, nil, *res)
	}
	return why, nil
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

// ForceCompleteMigration force-completes the instance's live migration in progress (the guest is
// paused until the copy is done). It says what it did; no migration in progress is no error
// (it completed or was aborted meanwhile: the move's follow-up tells which).
func (c *Compute) ForceCompleteMigration(ctx context.Context, id string) (string, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return "", err
	}
	list, err := cl.ServerMigrations(ctx, id)
	if err != nil {
		return "", novaError("migrations of "+id, err)
	}
	if len(list) == 0 {
		return "no live migration in progress: nothing to force", nil
	}
	m := list[0]
	if err := cl.ForceCompleteLiveMigration(ctx, id, m.ID); err != nil {
		if gophercloud.ResponseCodeIs(err, http.StatusConflict) {
			return fmt.Sprintf("migration %d is no longer running: nothing to force", m.ID), nil
		}
		return "", novaError("force-complete of "+id, err)
	}
	return fmt.Sprintf("migration %d force-completed at %s of %s memory remaining", m.ID, mib(m.MemoryRemaining), mib(m.MemoryTotal)), nil
}

// AbortMigration aborts the instance's live migration in progress; none in progress is no error.
func (c *Compute) AbortMigration(ctx context.Context, id string) (string, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return "", err
	}
	if err := cl.AbortLiveMigration(ctx, id); err != nil {
		if errors.Is(err, openstack.ErrNoLiveMigration) {
			return "no live migration in progress: nothing to abort", nil
		}
		return "", novaError("abort the live migration of "+id, err)
	}
	return "live migration aborted", nil
}
