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
// world first (the name comes from the run): a volume that an earlier attempt created (creating
// or available: its create may have been carried out with the answer lost) is followed, not
// created again; any other one of the name is deleted first. A create whose answer does not
// arrive is looked up by name before the step fails. A retried step never leaves two.
func (c *Cloud) smokeVolume(ctx context.Context, cl *openstack.Clients, name string, out *SmokeResult) error {
	var v openstack.Volume
	lookup := func() error {
		left, err := cl.ListVolumes(ctx, name, "")
		if err != nil {
			return fmt.Errorf("smoke test: cinder: %w", err)
		}
		for _, l := range left {
			if l.Name != name { // Cinder's name filter is exact, but be sure
				continue
			}
			if v.ID == "" && (l.Status == "creating" || l.Status == "available") {
				v = l
				continue
			}
			if err := deleteVolumeAndWait(ctx, cl, l.ID); err != nil {
				return err
			}
			out.Checks = append(out.Checks, fmt.Sprintf("cinder: deleted volume %s (%s), left by an earlier attempt", l.ID, l.Status))
		}
		return nil
	}
	if err := lookup(); err != nil {
		return err
	}
	out.Checks = append(out.Checks, "cinder: volume API answers")
	if v.ID != "" {
		out.Checks = append(out.Checks, "cinder: volume "+v.ID+" created by an earlier attempt, taken over (not created again)")
	} else {
		created, err := cl.CreateVolume(ctx, name, 1)
		if err != nil {
			if lerr := lookup(); lerr != nil || v.ID == "" {
				return fmt.Errorf("smoke test: %w", err)
			}
			out.Checks = append(out.Checks, "cinder: volume "+v.ID+" created although the answer was lost ("+err.Error()+"), not created again")
		} else {
			v = created
		}
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
		var err error
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

// deleteVolumeAndWait deletes a test volume and waits until it is gone; a delete whose answer
// does not arrive is sent again only while Cinder is not deleting the volume (as deleteAndWait).
func deleteVolumeAndWait(ctx context.Context, cl *openstack.Clients, id string) error {
	sent := cl.DeleteVolume(ctx, id)
	if gophercloud.ResponseCodeIs(sent, http.StatusNotFound) {
		return nil
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
			if sent != nil {
				return fmt.Errorf("smoke test: %w", sent)
			}
			return fmt.Errorf("smoke test: volume %s still exists 2 minutes after delete", id)
		}
		if sent != nil && err == nil && v.Status != "deleting" {
			if sent = cl.DeleteVolume(ctx, id); gophercloud.ResponseCodeIs(sent, http.StatusNotFound) {
				return nil
			}
		}
		activity.RecordHeartbeat(ctx, "deleting volume "+id)
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
}
