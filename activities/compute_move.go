package activities

import (
	"cmp"
	"context"
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
	if activity.HasHeartbeatDetails(ctx) {
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
			res.Started = hb.Requested
			res.AlreadyMoved = !hb.Requested
			if m, err := latestMigration(ctx, cl, req.ID, hb.FirstStart); err == nil && m != nil {
				res.Migration, res.MigrationStat = m.UUID, m.Status
			}
			res.Duration = time.Since(hb.FirstStart)
			if !slices.Contains(expect, in.Status) {
				return res, temporal.NewApplicationError(fmt.Sprintf("%s (%s) is on %s but %s (expected %s)%s",
					in.Name, in.ID, in.Host, in.Status, strings.Join(expect, " or "), faultText(in)), "UnexpectedState")
			}
			return res, nil
		case in.Host == req.Source && !busy(in):
			if requestedHere {
				// It was asked to move and is idle on the source again: the move failed.
				detail := ""
				if m, err := latestMigration(ctx, cl, req.ID, hb.FirstStart); err == nil && m != nil {
					detail = fmt.Sprintf(" (migration %s %s)", m.UUID, m.Status)
				}
				if aborted {
					return res, temporal.NewApplicationError(fmt.Sprintf("move of %s aborted after its deadline of %s%s", req.ID, timeout, detail), "MoveTimeout")
				}
				return res, temporal.NewApplicationError(fmt.Sprintf("move of %s (%s) from %s failed: it is %s on %s again%s%s",
					in.Name, req.ID, req.Source, in.Status, in.Host, detail, faultText(in)), "MoveFailed")
			}
			if in.Status == "ERROR" && req.Kind != MoveEvacuate {
				return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s (%s) is in ERROR%s: not moving it", in.Name, in.ID, faultText(in)), "InstanceError", nil)
			}
			if time.Now().After(deadline) {
				return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("move of %s: deadline %s passed before it could start", req.ID, timeout), "MoveTimeout", nil)
			}
			if err := startMove(ctx, cl, req); err != nil {
				return res, err
			}
			requestedHere, hb.Requested = true, true
		default:
			// Busy: a move (ours from an earlier attempt, or someone's) is under way; follow it.
			if time.Now().After(deadline) && req.Kind == MoveLive && !aborted {
				aborted = cl.AbortLiveMigration(ctx, req.ID) == nil
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
