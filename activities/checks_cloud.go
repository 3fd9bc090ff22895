package activities

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// allServers lists every server of every project (embedded flavors at 2.47+).
func allServers(ctx context.Context, cl *openstack.Clients) ([]openstack.Server, error) {
	return cl.ListServers(ctx, openstack.ServerListOpts{AllTenants: true, Limit: 1000})
}

// ErrorInstancesProbe reports every instance in a failed or stuck state (daily): ERROR (with
// its fault) and UNKNOWN; stuck in a task state (migrating, spawning, deleting...) or in
// VERIFY_RESIZE for longer than checks.stuck_after; SHUTOFF, PAUSED or SUSPENDED while its
// recorded desired state (metadata checks.desired_state_key) is active; and active in Nova while
// the hypervisor reports it not running.
func (c *Checks) ErrorInstancesProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	all, err := allServers(ctx, cl)
	if err != nil {
		return ProbeResult{}, err
	}
	stuckAfter := c.Settings.StuckAfter
	if stuckAfter <= 0 {
		stuckAfter = time.Hour
	}
	key := c.Settings.DesiredStateKey
	if key == "" {
		key = "desired_state"
	}
	now := c.now()
	var res ProbeResult
	count := map[string]int{}
	for _, s := range all {
		subj := "instance/" + s.ID
		where := fmt.Sprintf("%s (project %s, host %s)", s.Name, s.ProjectID, orDash(s.Host))
		switch {
		case s.Status == "ERROR":
			count["error"]++
			fault := s.Fault
			if fault == "" {
				// The list may leave out the fault (instances that never left cell0): ask for the one.
				if full, err := cl.GetServer(ctx, s.ID); err == nil {
					s.Fault, s.FaultCode = full.Fault, full.FaultCode
					fault = full.Fault
				}
			}
			if fault == "" {
				fault = "no fault recorded"
			}
			res.Findings = append(res.Findings, finding(SeverityCritical, req.Probe, subj, "%s is in ERROR: %s (code %d)", where, fault, s.FaultCode))
			continue
		case s.Status == "UNKNOWN":
			count["unknown"]++
			res.Findings = append(res.Findings, finding(SeverityCritical, req.Probe, subj, "%s is UNKNOWN: Nova cannot reach its compute host", where))
			continue
		}
		age := now.Sub(s.Updated).Round(time.Minute)
		stale := !s.Updated.IsZero() && age > stuckAfter
		switch {
		case s.TaskState != "" && stale:
			count["stuck"]++
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, subj+"/stuck",
				"%s is stuck in task state %s (status %s) since %s, %s ago (checks.stuck_after %s)", where, s.TaskState, s.Status, s.Updated.UTC().Format(time.RFC3339), age, stuckAfter))
		case s.Status == "VERIFY_RESIZE" && stale:
			count["stuck"]++
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, subj+"/stuck",
				"%s has waited in VERIFY_RESIZE since %s, %s ago: confirm or revert the resize", where, s.Updated.UTC().Format(time.RFC3339), age))
		}
		desired := strings.ToLower(s.Metadata[key])
		switch {
		case (s.Status == "SHUTOFF" || s.Status == "PAUSED" || s.Status == "SUSPENDED") && (desired == "active" || desired == "running"):
			count["down"]++
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, subj+"/desired",
				"%s is %s, but its recorded desired state (metadata %s) is %s", where, s.Status, key, desired))
		case s.VMState == "active" && s.TaskState == "" && s.PowerState != 1 && s.PowerState != 0:
			count["down"]++
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, subj+"/power",
				"%s is active in Nova but the hypervisor reports power state %d (%s)", where, s.PowerState, powerStateName(s.PowerState)))
		}
	}
	res.Summary = fmt.Sprintf("%d instance(s): %d in ERROR, %d UNKNOWN, %d stuck, %d down against their desired state",
		len(all), count["error"], count["unknown"], count["stuck"], count["down"])
	res.Metrics = []CheckMetric{{Name: "instances.failed", Value: float64(count["error"] + count["unknown"])},
		{Name: "instances.stuck", Value: float64(count["stuck"])}, {Name: "instances.down_against_desired", Value: float64(count["down"])}}
	return res, nil
}

// powerStateName names Nova's power states.
func powerStateName(p int) string {
	switch p {
	case 1:
		return "running"
	case 3:
		return "paused"
	case 4:
		return "shutdown"
	case 6:
		return "crashed"
	case 7:
		return "suspended"
	}
	return "no state"
}

// ComputeServicesProbe reports compute services that are down, and services disabled without a
// reason (daily).
func (c *Checks) ComputeServicesProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	all, err := cl.ListServices(ctx, openstack.ServiceListOpts{})
	if err != nil {
		return ProbeResult{}, err
	}
	var res ProbeResult
	down := 0
	for _, s := range all {
		subj := "service/" + s.Host + "/" + s.Binary
		if s.State == openstack.ServiceStateDown {
			down++
			sev, why := SeverityCritical, ""
			if s.ForcedDown {
				why = " (forced down)"
			}
			if s.Status == openstack.ServiceStatusDisabled {
				sev = SeverityWarning
				why += fmt.Sprintf(", disabled: %q", s.DisabledReason)
			}
			res.Findings = append(res.Findings, finding(sev, req.Probe, subj, "%s on %s is down%s", s.Binary, s.Host, why))
		}
		if s.Status == openstack.ServiceStatusDisabled && strings.TrimSpace(s.DisabledReason) == "" {
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, subj+"/disabled",
				"%s on %s is disabled without a reason: say why (openstack compute service set --disable-reason) or enable it", s.Binary, s.Host))
		}
	}
	res.Summary = fmt.Sprintf("%d service(s), %d down", len(all), down)
	return res, nil
}

// QuotasProbe reports projects near their Nova quotas (and Cinder's, when present) (weekly).
func (c *Checks) QuotasProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	ps, err := cl.ListProjects(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	limit := float64(c.Settings.QuotaPercent)
	var res ProbeResult
	for _, p := range ps {
		q, err := cl.ComputeQuotas(ctx, p.ID)
		if err != nil {
			return ProbeResult{}, fmt.Errorf("nova quotas of %s: %w", p.Name, err)
		}
		for _, d := range []struct {
			name string
			q    openstack.Quota
		}{{"instances", q.Instances}, {"cores", q.Cores}, {"ram", q.RAM}, {"server_groups", q.ServerGroups}, {"key_pairs", q.KeyPairs}} {
			if d.q.Limit <= 0 {
				continue // unlimited (-1) or nothing allowed
			}
			pct := float64(d.q.InUse+d.q.Reserved) / float64(d.q.Limit) * 100
			if pct >= limit {
				sev := SeverityWarning
				if pct >= 100 {
					sev = SeverityCritical
				}
				res.Findings = append(res.Findings, finding(sev, req.Probe, "project/"+p.Name+"/nova/"+d.name,
					"project %s uses %d of %d %s (%.0f%%)", p.Name, d.q.InUse+d.q.Reserved, d.q.Limit, d.name, pct))
			}
		}
		if cl.BlockStorage != nil {
			if err := cinderQuotas(ctx, cl, p.ID, p.Name, limit, req.Probe, &res); err != nil {
				return ProbeResult{}, err
			}
		}
	}
	res.Summary = fmt.Sprintf("%d project(s) checked against %d%% (Nova", len(ps), c.Settings.QuotaPercent)
	if cl.BlockStorage != nil {
		res.Summary += " and Cinder)"
	} else {
		res.Summary += "; no Cinder in the catalog)"
	}
	return res, nil
}

func cinderQuotas(ctx context.Context, cl *openstack.Clients, id, name string, limit float64, probe string, res *ProbeResult) error {
	qs, err := cl.BlockStorageQuotas(ctx, id)
	if err != nil {
		return fmt.Errorf("cinder quotas of %s: %w", name, err)
	}
	for k, q := range qs {
		lim, inUse := float64(q.Limit), float64(q.InUse) // Cinder counts no reservations here
		if lim <= 0 {
			continue
		}
		if pct := inUse / lim * 100; pct >= limit {
			res.Findings = append(res.Findings, finding(SeverityWarning, probe, "project/"+name+"/cinder/"+k,
				"project %s uses %.0f of %.0f %s (%.0f%%)", name, inUse, lim, k, pct))
		}
	}
	return nil
}

// ImagesProbe reports image usage: images in Glance, their size, and images no instance uses
// (weekly).
func (c *Checks) ImagesProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	if cl.Image == nil {
		return ProbeResult{}, fmt.Errorf("image service: %w", openstack.ErrServiceUnavailable)
	}
	imgs, err := cl.ListImages(ctx, openstack.ImageListOpts{Limit: 1000})
	if err != nil {
		return ProbeResult{}, err
	}
	srvs, err := allServers(ctx, cl)
	if err != nil {
		return ProbeResult{}, err
	}
	inUse := map[string]int{}
	for _, s := range srvs {
		if s.ImageID != "" {
			inUse[s.ImageID]++
		}
	}
	var size int64
	var unused []string
	var res ProbeResult
	for _, im := range imgs {
		size += im.SizeBytes
		if inUse[im.ID] == 0 {
			unused = append(unused, im.Name)
		}
		if im.Status != openstack.ImageStatusActive {
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "image/"+im.ID, "image %s is %s", im.Name, im.Status))
		}
	}
	sort.Strings(unused)
	res.Metrics = append(res.Metrics, CheckMetric{Name: "images.count", Value: float64(len(imgs))}, CheckMetric{Name: "images.bytes", Value: float64(size), Unit: "B"})
	msg := fmt.Sprintf("%d image(s), %.1f MiB in Glance; %d used by instances", len(imgs), float64(size)/(1<<20), len(imgs)-len(unused))
	if len(unused) > 0 {
		msg += fmt.Sprintf("; not used by any instance: %s", limitList(unused, 10))
	}
	res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "images", "%s", msg))
	res.Summary = msg
	return res, nil
}

// LargeInstancesProbe lists instances whose flavor is at least the thresholds (weekly).
func (c *Checks) LargeInstancesProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	srvs, err := allServers(ctx, cl)
	if err != nil {
		return ProbeResult{}, err
	}
	var res ProbeResult
	for _, s := range srvs {
		if s.FlavorVCPUs >= c.Settings.LargeVCPUs || s.FlavorRAMMB >= c.Settings.LargeRAMMB {
			res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "instance/"+s.ID,
				"%s (project %s, host %s): flavor %s with %d vCPU, %d MiB RAM", s.Name, s.ProjectID, orDash(s.Host), s.FlavorName, s.FlavorVCPUs, s.FlavorRAMMB))
		}
	}
	res.Summary = fmt.Sprintf("%d of %d instance(s) at or above %d vCPU or %d MiB", len(res.Findings), len(srvs), c.Settings.LargeVCPUs, c.Settings.LargeRAMMB)
	return res, nil
}

// NetworkProbe reports subnets and external networks (floating IP pools) with few free
// addresses, from Neutron's network IP availability (weekly).
func (c *Checks) NetworkProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	if cl.Network == nil {
		return ProbeResult{}, fmt.Errorf("network service: %w", openstack.ErrServiceUnavailable)
	}
	nets, err := cl.ListNetworkIPAvailabilities(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	var res ProbeResult
	subnets := 0
	for _, n := range nets {
		for _, s := range n.Subnets {
			subnets++
			var total, used float64
			fmt.Sscan(s.TotalIPs, &total)
			fmt.Sscan(s.UsedIPs, &used)
			if total <= 0 {
				continue
			}
			free := (total - used) / total * 100
			res.Metrics = append(res.Metrics, CheckMetric{Name: "network.subnet.used_ips", Subject: n.NetworkName + "/" + s.SubnetName, Value: used})
			if free < float64(c.Settings.IPFreePercent) {
				sev := SeverityWarning
				if total-used < 1 {
					sev = SeverityCritical
				}
				res.Findings = append(res.Findings, finding(sev, req.Probe, "subnet/"+s.SubnetID,
					"subnet %s (%s) of network %s: %.0f of %.0f addresses used, %.1f%% free", s.SubnetName, s.CIDR, n.NetworkName, used, total, free))
			}
		}
	}
	res.Summary = fmt.Sprintf("%d network(s), %d subnet(s); floating IP pools are the external networks' subnets", len(nets), subnets)
	return res, nil
}
