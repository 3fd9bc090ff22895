package activities

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"go.temporal.io/sdk/activity"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// SmokeRequest asks for the staged upgrade's smoke test: a token, the image list, Placement's
// resource providers and, with Boot, a server booted (networks none) and deleted; with Volume, a
// 1 GiB volume created until available and deleted.
type SmokeRequest struct {
	// Name makes the test server's and volume's name, stackrun-smoke-<name>: one per run and service.
	Name   string `json:"name"`
	Boot   bool   `json:"boot,omitempty"`
	Volume bool   `json:"volume,omitempty"`
}

// SmokeResult lists what the smoke test saw.
type SmokeResult struct {
	Checks []string      `json:"checks"`
	Server string        `json:"server,omitempty"` // the test server's ID
	Volume string        `json:"volume,omitempty"` // the test volume's ID
	Took   time.Duration `json:"took"`
}

var reSmokeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// UpgradeSmokeTest checks that the cloud works after a service was upgraded. It checks the world
// first: a test server of the same name that an earlier attempt booted is followed, not booted
// again (its create may have been carried out with the answer lost); a broken one is deleted
// before a new one boots. A retried step never leaves two, nor boots two.
func (c *Cloud) UpgradeSmokeTest(ctx context.Context, req SmokeRequest) (SmokeResult, error) {
	var out SmokeResult
	start := time.Now()
	if !reSmokeName.MatchString(req.Name) {
		return out, invalidField("name", "%q: want lower-case letters, digits and '-', at most 40", req.Name)
	}
	cl, err := c.clients(ctx)
	if err != nil {
		return out, err
	}
	projects, err := cl.ListProjects(ctx)
	if err != nil {
		return out, fmt.Errorf("smoke test: keystone: %w", err)
	}
	out.Checks = append(out.Checks, fmt.Sprintf("keystone: token issued, %d projects", len(projects)))
	imgs, err := cl.ListImages(ctx, openstack.ImageListOpts{})
	if err != nil {
		return out, fmt.Errorf("smoke test: glance: %w", err)
	}
	image := ""
	for _, i := range imgs {
		if i.Status == "active" && image == "" {
			image = i.ID
		}
	}
	out.Checks = append(out.Checks, fmt.Sprintf("glance: %d images", len(imgs)))
	rps, err := cl.ListResourceProviders(ctx)
	if err != nil {
		return out, fmt.Errorf("smoke test: placement: %w", err)
	}
	out.Checks = append(out.Checks, fmt.Sprintf("placement: %d resource providers", len(rps)))
	if req.Volume {
		if err := c.smokeVolume(ctx, cl, "stackrun-smoke-"+req.Name, &out); err != nil {
			return out, err
		}
	}
	if !req.Boot {
		out.Took = time.Since(start)
		return out, nil
	}
	if image == "" {
		return out, fmt.Errorf("smoke test: no active image to boot")
	}
	name := "stackrun-smoke-" + req.Name
	s, err := c.smokeServer(ctx, cl, name, image, &out)
	if err != nil {
		return out, err
	}
	out.Server = s.ID
	deadline := time.Now().Add(3 * time.Minute)
	for s.Status != "ACTIVE" {
		if s.Status == "ERROR" || time.Now().After(deadline) {
			_ = c.deleteAndWait(ctx, cl, s.ID)
			return out, fmt.Errorf("smoke test: server %s is %s (fault: %s) after boot", s.ID, s.Status, s.Fault)
		}
		activity.RecordHeartbeat(ctx, "booting "+s.ID)
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return out, err
		}
		if s, err = cl.GetServer(ctx, out.Server); err != nil {
			return out, fmt.Errorf("smoke test: %w", err)
		}
	}
	out.Checks = append(out.Checks, fmt.Sprintf("nova: server %s ACTIVE on %s", s.ID, s.Host))
	if err := c.deleteAndWait(ctx, cl, s.ID); err != nil {
		return out, err
	}
	out.Checks = append(out.Checks, "nova: server deleted")
	out.Took = time.Since(start)
	return out, nil
}

// smokeServer returns the test server to watch: one that an earlier attempt booted (BUILD or
// ACTIVE: its create was carried out, the answer may have been lost) is taken over rather than
// booted again; any other one of the name is deleted first. A create whose answer does not
// arrive is looked up by name before the step fails: Nova may have accepted it.
func (c *Cloud) smokeServer(ctx context.Context, cl *openstack.Clients, name, image string, out *SmokeResult) (openstack.Server, error) {
	var found openstack.Server
	lookup := func() error {
		all, err := cl.ListServers(ctx, openstack.ServerListOpts{})
		if err != nil {
			return fmt.Errorf("smoke test: nova: %w", err)
		}
		for _, s := range all {
			if s.Name != name {
				continue
			}
			if found.ID == "" && (s.Status == "BUILD" || s.Status == "ACTIVE") {
				found = s
				continue
			}
			if err := c.deleteAndWait(ctx, cl, s.ID); err != nil {
				return err
			}
			out.Checks = append(out.Checks, "nova: deleted "+s.ID+" ("+s.Status+"), left by an earlier attempt")
		}
		return nil
	}
	if err := lookup(); err != nil {
		return found, err
	}
	if found.ID != "" {
		out.Checks = append(out.Checks, "nova: server "+found.ID+" booted by an earlier attempt, taken over (not booted again)")
		return found, nil
	}
	flavor, err := cl.SmallestFlavor(ctx)
	if err != nil {
		return found, fmt.Errorf("smoke test: %w", err)
	}
	s, err := cl.CreateServerNoNetwork(ctx, name, image, flavor.ID)
	if err == nil {
		out.Checks = append(out.Checks, fmt.Sprintf("nova: server %s booting (flavor %s)", s.ID, flavor.Name))
		return s, nil
	}
	if lerr := lookup(); lerr != nil || found.ID == "" {
		return found, fmt.Errorf("smoke test: %w", err)
	}
	out.Checks = append(out.Checks, "nova: server "+found.ID+" created although the answer was lost ("+err.Error()+"), not booted again")
	return found, nil
}

// deleteAndWait deletes a test server and waits until it is gone. A delete whose answer does
// not arrive may or may not have reached Nova: it polls all the same, and sends the delete again
// (harmless) only while Nova is not deleting the server.
func (c *Cloud) deleteAndWait(ctx context.Context, cl *openstack.Clients, id string) error {
	sent := cl.DeleteServer(ctx, id)
	if gophercloud.ResponseCodeIs(sent, http.StatusNotFound) {
		return nil
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s, err := cl.GetServer(ctx, id)
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return nil
		}
		if time.Now().After(deadline) {
			if sent != nil {
				return fmt.Errorf("smoke test: %w", sent)
			}
			return fmt.Errorf("smoke test: server %s still exists 2 minutes after delete", id)
		}
		if sent != nil && err == nil && s.TaskState != "deleting" {
			if sent = cl.DeleteServer(ctx, id); gophercloud.ResponseCodeIs(sent, http.StatusNotFound) {
				return nil
			}
		}
		activity.RecordHeartbeat(ctx, "deleting "+id)
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
