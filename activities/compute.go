package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/hypervisors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/migrations"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/placement/v1/resourceproviders"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// Compute drives Nova and Placement for the compute runbooks (evacuation, host failure
// recovery, post-reboot starts). Every action checks the world first, so that a retried or
// replayed activity never starts a second migration or evacuation.
type Compute struct {
	// Clients connects lazily on first use.
	Clients func(ctx context.Context) (*openstack.Clients, error)
	// PollInterval between looks at a moving instance (default 2 s).
	PollInterval time.Duration
}

// Minimum compute microversions the compute activities rely on (LAB.md): services by UUID and
// disable with reason (2.53), migrations with uuid (2.59), block_migration "auto" (2.25), no
// "force" on live migration and evacuation (2.68), host on cold migration (2.56).
const minComputeMicroversion = 68

// Move kinds.
const (
	MoveLive     = "live"
	MoveCold     = "cold"
	MoveEvacuate = "evacuate"
)

// ComputeService is one nova-compute service.
type ComputeService struct {
	Host           string    `json:"host"`
	ID             string    `json:"id"`
	Status         string    `json:"status"` // enabled | disabled
	State          string    `json:"state"`  // up | down
	DisabledReason string    `json:"disabled_reason,omitempty"`
	ForcedDown     bool      `json:"forced_down,omitempty"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Instance is one server as the compute runbooks need it.
type Instance struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	TaskState  string `json:"task_state,omitempty"`
	PowerState int    `json:"power_state"`
	Host       string `json:"host"`
	ProjectID  string `json:"project_id,omitempty"`
	VCPUs      int    `json:"vcpus"`
	RAMMB      int    `json:"ram_mb"`
	DiskGB     int    `json:"disk_gb"`
	Fault      string `json:"fault,omitempty"`
}

// HostCapacity is what Placement says a compute host has free.
type HostCapacity struct {
	Host       string `json:"host"`
	Provider   string `json:"provider"` // resource provider UUID
	FreeVCPUs  int    `json:"free_vcpus"`
	FreeRAMMB  int    `json:"free_ram_mb"`
	FreeDiskGB int    `json:"free_disk_gb"`
}

// ServiceChange asks for a nova-compute service to be enabled or disabled (with a reason), or
// for its forced_down flag to be set.
type ServiceChange struct {
	Host    string `json:"host"`
	Disable bool   `json:"disable,omitempty"`
	Enable  bool   `json:"enable,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// ForcedDown, when not nil, sets the forced_down flag instead.
	ForcedDown *bool `json:"forced_down,omitempty"`
}

// MoveRequest asks for one instance to leave Source for Target.
type MoveRequest struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Target string `json:"target,omitempty"` // "" lets the scheduler choose
	Kind   string `json:"kind"`             // live | cold | evacuate
	// BlockMigration for live migrations: auto, yes or no.
	BlockMigration string `json:"block_migration,omitempty"`
	// Timeout bounds the whole move, across attempts (scaled with the guest's size).
	Timeout time.Duration `json:"timeout"`
	// Expect lists acceptable final statuses (default ACTIVE).
	Expect []string `json:"expect,omitempty"`
}

// MoveResult says where the instance went and which migration record moved it.
type MoveResult struct {
	ID            string        `json:"id"`
	From          string        `json:"from"`
	To            string        `json:"to"`
	Status        string        `json:"status"`
	Migration     string        `json:"migration,omitempty"` // migration record UUID
	MigrationStat string        `json:"migration_status,omitempty"`
	Started       bool          `json:"started"` // this activity (some attempt of it) asked Nova to move it
	AlreadyMoved  bool          `json:"already_moved,omitempty"`
	Duration      time.Duration `json:"duration"`
}

// moveProgress is the heartbeat of MoveInstance, carried across attempts.
type moveProgress struct {
	FirstStart time.Time `json:"first_start"`
	Requested  bool      `json:"requested"`
	Migration  string    `json:"migration,omitempty"`
	Status     string    `json:"status,omitempty"`
}

// InstanceRecovery is what RecoverInstance did to one instance after a host reboot.
type InstanceRecovery struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Before string `json:"before"`
	Action string `json:"action"` // none | start | reboot | hard-reboot
	After  string `json:"after"`
}

func (c *Compute) clients(ctx context.Context) (*openstack.Clients, error) {
	if c == nil || c.Clients == nil {
		return nil, temporal.NewNonRetryableApplicationError("OpenStack is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	cl, err := c.Clients(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkMicroversion(cl.Compute.Microversion); err != nil {
		return nil, err
	}
	return cl, nil
}

func checkMicroversion(mv string) error {
	var major, minor int
	if _, err := fmt.Sscanf(mv, "%d.%d", &major, &minor); err != nil || major != 2 || minor < minComputeMicroversion {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("compute microversion %q: the compute runbooks need 2.%d or later (openstack.compute_microversion)", mv, minComputeMicroversion),
			ErrTypeRefused, nil)
	}
	return nil
}

func (c *Compute) poll() time.Duration {
	if c.PollInterval > 0 {
		return c.PollInterval
	}
	return 2 * time.Second
}

// novaError maps a gophercloud error: 404 is NotFound, 400 and 403 cannot be fixed by retrying,
// 409 (instance busy) and 5xx are retried.
func novaError(what string, err error) error {
	if err == nil {
		return nil
	}
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		msg := fmt.Sprintf("%s: HTTP %d: %s", what, code.Actual, strings.TrimSpace(string(code.Body)))
		switch code.Actual {
		case http.StatusNotFound:
			return temporal.NewNonRetryableApplicationError(msg, ErrTypeNotFound, nil)
		case http.StatusBadRequest, http.StatusForbidden:
			return temporal.NewNonRetryableApplicationError(msg, "NovaRefused", nil)
		}
		return temporal.NewApplicationError(msg, "NovaError")
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ComputeServices lists every nova-compute service, sorted by host.
func (c *Compute) ComputeServices(ctx context.Context) ([]ComputeService, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return nil, err
	}
	return computeServices(ctx, cl)
}

func computeServices(ctx context.Context, cl *openstack.Clients) ([]ComputeService, error) {
	list, err := cl.ComputeServices(ctx, "nova-compute")
	if err != nil {
		return nil, novaError("list compute services", err)
	}
	out := make([]ComputeService, 0, len(list))
	for _, s := range list {
		out = append(out, ComputeService{Host: s.Host, ID: s.ID, Status: s.Status, State: s.State,
			DisabledReason: s.DisabledReason, ForcedDown: s.ForcedDown, UpdatedAt: s.UpdatedAt})
	}
	return out, nil
}

func findService(list []ComputeService, host string) (ComputeService, error) {
	for _, s := range list {
		if s.Host == host {
			return s, nil
		}
	}
	hosts := make([]string, len(list))
	for i, s := range list {
		hosts[i] = s.Host
	}
	return ComputeService{}, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("no nova-compute service on host %q (compute hosts: %s)", host, strings.Join(hosts, ", ")), ErrTypeNotFound, nil)
}

// InstancesOnHost lists the instances of every project on host, from the Nova API.
func (c *Compute) InstancesOnHost(ctx context.Context, host string) ([]Instance, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return nil, err
	}
	pages, err := servers.List(cl.Compute, servers.ListOpts{AllTenants: true, Host: host}).AllPages(ctx)
	if err != nil {
		return nil, novaError("list servers on "+host, err)
	}
	list, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, novaError("list servers on "+host, err)
	}
	out := []Instance{}
	for _, s := range list {
		if s.Host == host {
			out = append(out, instanceFrom(s))
		}
	}
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

// GetInstance returns one instance.
func (c *Compute) GetInstance(ctx context.Context, id string) (Instance, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return Instance{}, err
	}
	return getInstance(ctx, cl, id)
}

func getInstance(ctx context.Context, cl *openstack.Clients, id string) (Instance, error) {
	s, err := servers.Get(ctx, cl.Compute, id).Extract()
	if err != nil {
		return Instance{}, novaError("get server "+id, err)
	}
	return instanceFrom(*s), nil
}

func instanceFrom(s servers.Server) Instance {
	in := Instance{ID: s.ID, Name: s.Name, Status: s.Status, TaskState: s.TaskState, PowerState: int(s.PowerState),
		Host: s.Host, ProjectID: s.TenantID, Fault: s.Fault.Message}
	if f := s.Flavor; f != nil {
		num := func(k string) int {
			if v, ok := f[k].(float64); ok {
				return int(v)
			}
			return 0
		}
		in.VCPUs, in.RAMMB, in.DiskGB = num("vcpus"), num("ram"), num("disk")
	}
	return in
}

// Capacity returns the free vCPU, RAM and disk of each host from Placement (inventory minus
// reserved, times the allocation ratio, minus usage). The resource provider of a host is its
// hypervisor, whose ID is the provider's UUID from compute microversion 2.53 on.
func (c *Compute) Capacity(ctx context.Context, hosts []string) ([]HostCapacity, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return nil, err
	}
	if cl.Placement == nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("placement: %v", cl.ServiceError(openstack.ServicePlacement)), ErrTypeRefused, nil)
	}
	// From microversion 2.88 the hypervisor detail carries each host's uptime, which nova-api
	// asks every compute for over RPC, one after the other (60 s each when a compute does not
	// answer): ask at 2.87, where the list is a database read, for the host -> provider mapping.
	hc := *cl.Compute
	hc.Microversion = "2.87"
	pages, err := hypervisors.List(&hc, hypervisors.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, novaError("list hypervisors", err)
	}
	hvs, err := hypervisors.ExtractHypervisors(pages)
	if err != nil {
		return nil, novaError("list hypervisors", err)
	}
	out := make([]HostCapacity, 0, len(hosts))
	for _, h := range hosts {
		var rp string
		for _, hv := range hvs {
			if hv.Service.Host == h {
				rp = hv.ID
			}
		}
		if rp == "" {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("host %s has no hypervisor in Nova", h), ErrTypeNotFound, nil)
		}
		inv, err := resourceproviders.GetInventories(ctx, cl.Placement, rp).Extract()
		if err != nil {
			return nil, novaError("placement inventories of "+h, err)
		}
		use, err := resourceproviders.GetUsages(ctx, cl.Placement, rp).Extract()
		if err != nil {
			return nil, novaError("placement usages of "+h, err)
		}
		free := func(class string) int {
			i, ok := inv.Inventories[class]
			if !ok {
				return 0
			}
			ratio := float64(i.AllocationRatio)
			if ratio <= 0 {
				ratio = 1
			}
			return int(math.Floor(float64(i.Total-i.Reserved)*ratio)) - use.Usages[class]
		}
		out = append(out, HostCapacity{Host: h, Provider: rp, FreeVCPUs: free("VCPU"), FreeRAMMB: free("MEMORY_MB"), FreeDiskGB: free("DISK_GB")})
	}
	return out, nil
}

// SetComputeService enables or disables a host's nova-compute (with the reason), or sets its
// forced_down flag. It reads the service first and does nothing when it is already so.
func (c *Compute) SetComputeService(ctx context.Context, ch ServiceChange) (ComputeService, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ComputeService{}, err
	}
	list, err := computeServices(ctx, cl)
	if err != nil {
		return ComputeService{}, err
	}
	s, err := findService(list, ch.Host)
	if err != nil {
		return ComputeService{}, err
	}
	body := map[string]any{}
	switch {
	case ch.ForcedDown != nil:
		if s.ForcedDown == *ch.ForcedDown {
			return s, nil
		}
		body["forced_down"] = *ch.ForcedDown
	case ch.Disable:
		if s.Status == openstack.ServiceStatusDisabled && s.DisabledReason == ch.Reason {
			return s, nil
		}
		body["status"] = openstack.ServiceStatusDisabled
		if ch.Reason != "" {
			body["disabled_reason"] = ch.Reason
		}
	case ch.Enable:
		if s.Status == openstack.ServiceStatusEnabled {
			return s, nil
		}
		body["status"] = openstack.ServiceStatusEnabled
	default:
		return s, temporal.NewNonRetryableApplicationError("service change: nothing to change", ErrTypeInvalidInput, nil)
	}
	var res struct {
		Service struct {
			Status         string `json:"status"`
			State          string `json:"state"`
			DisabledReason string `json:"disabled_reason"`
			ForcedDown     bool   `json:"forced_down"`
		} `json:"service"`
	}
	_, err = cl.Compute.Put(ctx, cl.Compute.ServiceURL("os-services", s.ID), body, &res, &gophercloud.RequestOpts{OkCodes: []int{200}})
	if err != nil {
		return s, novaError("update service of "+ch.Host, err)
	}
	s.Status, s.State, s.DisabledReason, s.ForcedDown = res.Service.Status, res.Service.State, res.Service.DisabledReason, res.Service.ForcedDown
	return s, nil
}

// busy reports whether Nova is doing something with the instance.
func busy(in Instance) bool {
	if in.TaskState != "" {
		return true
	}
	switch in.Status {
	case "MIGRATING", "RESIZE", "REBUILD", "REBOOT", "HARD_REBOOT", "BUILD":
		return true
	}
	return false
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
			if _, err := cl.Compute.Post(ctx, cl.Compute.ServiceURL("servers", req.ID, "action"), map[string]any{"confirmResize": nil}, nil,
				&gophercloud.RequestOpts{OkCodes: []int{202, 204}}); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
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
				aborted = abortLiveMigration(ctx, cl, req.ID) == nil
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

func faultText(in Instance) string {
	if in.Fault == "" {
		return ""
	}
	return ": " + in.Fault
}

// startMove sends the move request. Bodies are written out because gophercloud's option structs
// cannot say block_migration "auto", a cold migration's host, or an evacuation without
// onSharedStorage.
func startMove(ctx context.Context, cl *openstack.Clients, req MoveRequest) error {
	var host any
	if req.Target != "" {
		host = req.Target
	}
	var body map[string]any
	ok := []int{202}
	switch req.Kind {
	case MoveLive:
		var bm any = "auto"
		switch req.BlockMigration {
		case "yes":
			bm = true
		case "no":
			bm = false
		}
		body = map[string]any{"os-migrateLive": map[string]any{"host": host, "block_migration": bm}}
	case MoveCold:
		m := map[string]any{}
		if req.Target != "" {
			m["host"] = req.Target
		}
		body = map[string]any{"migrate": m}
	case MoveEvacuate:
		m := map[string]any{}
		if req.Target != "" {
			m["host"] = req.Target
		}
		body = map[string]any{"evacuate": m}
		ok = []int{200}
	}
	_, err := cl.Compute.Post(ctx, cl.Compute.ServiceURL("servers", req.ID, "action"), body, nil, &gophercloud.RequestOpts{OkCodes: ok})
	if err != nil {
		return novaError(fmt.Sprintf("%s move of %s to %s", req.Kind, req.ID, cmp.Or(req.Target, "(scheduler)")), err)
	}
	return nil
}

// latestMigration returns the newest migration record of the instance created at or after since
// (less a minute of clock skew), or nil.
func latestMigration(ctx context.Context, cl *openstack.Clients, id string, since time.Time) (*migrations.Migration, error) {
	list, err := InstanceMigrations(ctx, cl, id)
	if err != nil {
		return nil, err
	}
	var best *migrations.Migration
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
func InstanceMigrations(ctx context.Context, cl *openstack.Clients, id string) ([]migrations.Migration, error) {
	pages, err := migrations.List(cl.Compute, migrations.ListOpts{InstanceID: &id}).AllPages(ctx)
	if err != nil {
		return nil, novaError("list migrations of "+id, err)
	}
	return migrations.ExtractMigrations(pages)
}

// abortLiveMigration aborts the instance's in-progress live migration (DELETE
// /servers/{id}/migrations/{mid}): Nova's own answer to a migration that never converges.
func abortLiveMigration(ctx context.Context, cl *openstack.Clients, id string) error {
	var res struct {
		Migrations []struct {
			ID int64 `json:"id"`
		} `json:"migrations"`
	}
	if _, err := cl.Compute.Get(ctx, cl.Compute.ServiceURL("servers", id, "migrations"), &res, nil); err != nil {
		return err
	}
	if len(res.Migrations) == 0 {
		return errors.New("no live migration in progress")
	}
	_, err := cl.Compute.Delete(ctx, cl.Compute.ServiceURL("servers", id, "migrations", fmt.Sprint(res.Migrations[0].ID)), &gophercloud.RequestOpts{OkCodes: []int{202}})
	return err
}

// RecoverInstance brings one instance of a rebooted compute back per policy: a SHUTOFF instance
// is started, an ACTIVE one whose guest does not run is rebooted; when that does not bring it to
// ACTIVE and running, it is hard-rebooted (the hypervisor lost its definition). It checks first:
// a running instance is left alone.
func (c *Compute) RecoverInstance(ctx context.Context, id string, wait time.Duration) (InstanceRecovery, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return InstanceRecovery{}, err
	}
	in, err := getInstance(ctx, cl, id)
	if err != nil {
		return InstanceRecovery{}, err
	}
	rec := InstanceRecovery{ID: id, Name: in.Name, Before: in.Status, Action: "none", After: in.Status}
	const running = 1
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	healthy := func(i Instance) bool { return i.Status == "ACTIVE" && i.PowerState == running && i.TaskState == "" }
	if healthy(in) || busy(in) {
		return rec, nil
	}
	act := func(action string, body map[string]any) (Instance, error) {
		rec.Action = action
		if _, err := cl.Compute.Post(ctx, cl.Compute.ServiceURL("servers", id, "action"), body, nil, &gophercloud.RequestOpts{OkCodes: []int{202}}); err != nil {
			return in, novaError(action+" "+id, err)
		}
		end := time.Now().Add(wait)
		for {
			cur, err := getInstance(ctx, cl, id)
			if err != nil {
				return cur, err
			}
			activity.RecordHeartbeat(ctx, cur.Status)
			if (healthy(cur) || cur.Status == "ERROR") || time.Now().After(end) {
				return cur, nil
			}
			select {
			case <-ctx.Done():
				return cur, ctx.Err()
			case <-time.After(c.poll()):
			}
		}
	}
	var cur Instance
	switch in.Status {
	case "SHUTOFF":
		cur, err = act("start", map[string]any{"os-start": nil})
	case "ACTIVE":
		cur, err = act("reboot", map[string]any{"reboot": map[string]any{"type": "SOFT"}})
	default:
		cur, err = in, nil
	}
	if err != nil && !isRefusal(err) {
		return rec, err
	}
	if err != nil || !healthy(cur) {
		cur, err = act("hard-reboot", map[string]any{"reboot": map[string]any{"type": "HARD"}})
		if err != nil {
			return rec, err
		}
	}
	rec.After = cur.Status
	if !healthy(cur) {
		return rec, temporal.NewApplicationError(fmt.Sprintf("%s (%s) is %s after %s%s", in.Name, id, cur.Status, rec.Action, faultText(cur)), "RecoverFailed")
	}
	return rec, nil
}

func isRefusal(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.Type() == "NovaRefused"
}

// SSHReachable asks the host a harmless question over SSH (uptime) and says whether it answered.
// An unreachable host is a result, not an error: fencing decisions need the answer.
func (h *Hosts) SSHReachable(ctx context.Context, host string) (Reachability, error) {
	if _, _, err := h.lookup(host); err != nil {
		return Reachability{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := h.run(ctx, host, "", "uptime", nil)
	if err != nil {
		var app *temporal.ApplicationError
		if errors.As(err, &app) && app.Type() == ErrTypeHostKey {
			return Reachability{}, err
		}
		return Reachability{Host: host, Reachable: false, Detail: err.Error()}, nil
	}
	return Reachability{Host: host, Reachable: true, Detail: fmt.Sprintf("answered uptime (exit %d): %s", res.ExitCode, strings.TrimSpace(res.Stdout))}, nil
}

// Reachability is the answer of SSHReachable.
type Reachability struct {
	Host      string `json:"host"`
	Reachable bool   `json:"reachable"`
	Detail    string `json:"detail"`
}

// HardRebootRequest asks for one instance to be hard-rebooted where the Nova database now places
// it (after the database-rewrite fallback), and to be verified ACTIVE and running on Host.
type HardRebootRequest struct {
	ID   string        `json:"id"`
	Host string        `json:"host"`
	Wait time.Duration `json:"wait,omitempty"` // default 3 minutes
}

// HardRebootResult is what the instance became.
type HardRebootResult struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Before string `json:"before"`
	Status string `json:"status"`
	Host   string `json:"host"`
}

// HardRebootOn hard-reboots an instance through the API (the hypervisor recreates the guest from
// the database, as the guide's manual path does after rewriting instances.host) and waits until
// it is ACTIVE, running and idle on req.Host. It refuses an instance that the API does not place
// on req.Host. A retried attempt (heartbeat says the reboot was asked) follows instead of asking
// again; an instance that is busy rebooting is followed too.
func (c *Compute) HardRebootOn(ctx context.Context, req HardRebootRequest) (HardRebootResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return HardRebootResult{}, err
	}
	in, err := getInstance(ctx, cl, req.ID)
	if err != nil {
		return HardRebootResult{}, err
	}
	res := HardRebootResult{ID: req.ID, Name: in.Name, Before: in.Status, Status: in.Status, Host: in.Host}
	if in.Host != req.Host {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s (%s) is on %q, not %s: not rebooting it", in.Name, req.ID, in.Host, req.Host), ErrTypeRefused, nil)
	}
	var asked bool
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &asked)
	}
	if !asked && !busy(in) {
		if _, err := cl.Compute.Post(ctx, cl.Compute.ServiceURL("servers", req.ID, "action"), map[string]any{"reboot": map[string]any{"type": "HARD"}}, nil,
			&gophercloud.RequestOpts{OkCodes: []int{202}}); err != nil {
			return res, novaError("hard reboot of "+req.ID, err)
		}
		asked = true
		activity.RecordHeartbeat(ctx, asked)
	}
	wait := cmp.Or(req.Wait, 3*time.Minute)
	end := time.Now().Add(wait)
	const running = 1
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(c.poll()):
		}
		cur, err := getInstance(ctx, cl, req.ID)
		if err != nil {
			return res, err
		}
		res.Status, res.Host = cur.Status, cur.Host
		activity.RecordHeartbeat(ctx, asked)
		if cur.TaskState == "" && cur.Status == "ACTIVE" && cur.PowerState == running && cur.Host == req.Host {
			return res, nil
		}
		if cur.TaskState == "" && cur.Status == "ERROR" {
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s (%s) is in ERROR on %s after the hard reboot%s", cur.Name, req.ID, cur.Host, faultText(cur)), "RebootFailed", nil)
		}
		if time.Now().After(end) {
			return res, temporal.NewApplicationError(fmt.Sprintf("%s (%s) is %s (task %q, power state %d) on %s %s after the hard reboot", cur.Name, req.ID, cur.Status, cur.TaskState, cur.PowerState, cur.Host, wait), "RebootTimeout")
		}
	}
}
