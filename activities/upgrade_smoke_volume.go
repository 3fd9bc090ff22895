package activities

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"go.temporal.io/sdk/activity"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// smokeVolume creates a 1 GiB volume, waits until it is available and deletes it. It checks the
// world first: a volume of the same name left by an earlier attempt (the name comes from the run)
// is deleted before a new one is made, so a retried step never leaves two.
func (c *Cloud) smokeVolume(ctx context.Context, cl *openstack.Clients, name string, out *SmokeResult) error {
	left, err := cl.ListVolumes(ctx, name, "")
	if err != nil {
		return fmt.Errorf("smoke test: cinder: %w", err)
	}
	out.Checks = append(out.Checks, "cinder: volume API answers")
	for _, v := range left {
		if v.Name != name { // Cinder's name filter is exact, but be sure
			continue
		}
		if err := deleteVolumeAndWait(ctx, cl, v.ID); err != nil {
			return err
		}
		out.Checks = append(out.Checks, fmt.Sprintf("cinder: deleted volume %s (%s), left by an earlier attempt", v.ID, v.Status))
	}
	v, err := cl.CreateVolume(ctx, name, 1)
	if err != nil {
		return fmt.Errorf("smoke test: %w", err)
	}
	out.Volume = v.ID
	deadline := time.Now().Add(3 * time.Minute)
	for v.Status != "available" {
		if v.Status == "error" || time.Now().After(deadline) {
			_ = deleteVolumeAndWait(ctx, cl, v.ID)
			return fmt.Errorf("smoke test: volume %s is %s after create (host %q)", v.ID, v.Status, v.Host)
		}
		activity.RecordHeartbeat(ctx, "creating volume "+v.ID)
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
		if v, err = cl.GetVolume(ctx, out.Volume); err != nil {
			return fmt.Errorf("smoke test: %w", err)
		}
	}
	out.Checks = append(out.Checks, fmt.Sprintf("cinder: volume %s (1 GiB) available on %s", v.ID, v.Host))
	if err := deleteVolumeAndWait(ctx, cl, v.ID); err != nil {
		return err
	}
	out.Checks = append(out.Checks, "cinder: volume deleted")
	return nil
}

func deleteVolumeAndWait(ctx context.Context, cl *openstack.Clients, id string) error {
	if err := cl.DeleteVolume(ctx, id); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return fmt.Errorf("smoke test: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		v, err := cl.GetVolume(ctx, id)
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return nil
		}
		if err == nil && v.Status == "error_deleting" {
			return fmt.Errorf("smoke test: volume %s is error_deleting", id)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("smoke test: volume %s still exists 2 minutes after delete", id)
		}
		activity.RecordHeartbeat(ctx, "deleting volume "+id)
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
}
