//go:build e2e

package e2e

// The recurring checks' findings and summaries hold what the lab's state says (issue 15): the
// test sets up known subjects (alerts on a host, a stuck and a paused instance, a service disabled
// with a reason, a queued image, a nearly full Swift device, a disabled user) and reads the cloud
// itself (Nova, Placement, Glance, Keystone, Neutron, Alertmanager, the mounts) to know the counts. Other tests may leave things on the shared lab: counts are read right after each
// run (the lab lock keeps everything else still) and this test's own subjects are named.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/usage"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/networkipavailabilities"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/workflows"
)

func TestChecksContentOnLab(t *testing.T) {
	l := newChecksLab(t, nil)
	tag := fmt.Sprintf("chk-content-%d", time.Now().Unix())
	// Two running instances: one made stuck, one paused against its desired state; both count in
	// the usage of their project.
	stuck := chkActive(t, l, tag+"-stuck", nil)
	paused := chkActive(t, l, tag+"-paused", map[string]string{"desired_state": "Running"})

	t.Run("hourly", func(t *testing.T) {
		// Three known alerts on compute2 (rack r2 on the lab), one critical.
		var alerts []map[string]any
		for i, sev := range []string{"warning", "critical", "warning"} {
			alerts = append(alerts, map[string]any{"labels": map[string]string{
				"alertname": fmt.Sprintf("E2EContent%d", i), "host": "compute2", "severity": sev, "e2e": tag}})
		}
		l.postAlerts(alerts)
		t.Cleanup(func() {
			for _, a := range alerts {
				a["endsAt"] = time.Now().UTC().Format(time.RFC3339)
			}
			l.postAlerts(alerts)
		})
		rep := l.run("hourly")
		fs := findingsOf(t, rep)
		r2 := filterFindings(fs, activities.ProbeAlerts, "rack/r2")
		require.Len(t, r2, 1, "%+v", filterFindings(fs, activities.ProbeAlerts, ""))
		assert.Equal(t, "critical", r2[0].Severity)
		var k int
		_, err := fmt.Sscanf(r2[0].Message, "%d firing alerts in rack r2", &k)
		require.NoError(t, err, r2[0].Message)
		assert.GreaterOrEqual(t, k, 3, r2[0].Message)
		assert.Contains(t, r2[0].Message, "compute2")
		// The summary counts what Alertmanager fires now (without the alerting test's own alert).
		resp, err := http.Get(l.amURL + "/api/v2/alerts?active=true&silenced=false&inhibited=false")
		require.NoError(t, err)
		var firing []struct {
			Labels map[string]string `json:"labels"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&firing))
		resp.Body.Close()
		n := 0
		for _, a := range firing {
			if a.Labels["alertname"] != activities.AlertingTestName {
				n++
			}
		}
		assert.Equal(t, fmt.Sprintf("%d firing alert(s) in %d failure domain(s)", n, len(filterFindings(fs, activities.ProbeAlerts, ""))),
			probeSummaries(t, rep)[activities.ProbeAlerts])
	})

	t.Run("daily", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		// Stuck: task state migrating since two hours (checks.stuck_after is 1h by default), set in
		// Nova's database as a hung migration leaves it.
		db := novaRW(t, l)
		r, err := db.ExecContext(ctx, "UPDATE instances SET task_state='migrating', updated_at=UTC_TIMESTAMP() - INTERVAL 2 HOUR WHERE uuid=?", stuck)
		require.NoError(t, err)
		rows, _ := r.RowsAffected()
		require.EqualValues(t, 1, rows, "instance %s in the cell database", stuck)
		t.Cleanup(func() {
			if _, err := db.Exec("UPDATE instances SET task_state=NULL, updated_at=UTC_TIMESTAMP() WHERE uuid=?", stuck); err != nil {
				t.Logf("un-stick %s: %v", stuck, err)
			}
		})
		require.NoError(t, servers.Pause(ctx, l.cl.Compute, paused).ExtractErr())
		chkWait(t, l, paused, "PAUSED")
		// compute2 disabled WITH a reason: not a finding (unless it is down).
		reason := "e2e " + tag
		chkSetService(t, l, "compute2", services.UpdateOpts{Status: services.ServiceDisabled, DisabledReason: reason})
		t.Cleanup(func() { chkSetService(t, l, "compute2", services.UpdateOpts{Status: services.ServiceEnabled}) })

		rep := l.run("daily")
		fs := findingsOf(t, rep)
		sum := probeSummaries(t, rep)

		st := filterFindings(fs, activities.ProbeErrorInstances, "instance/"+stuck)
		require.Len(t, st, 1, "the stuck instance: %+v", filterFindings(fs, activities.ProbeErrorInstances, ""))
		assert.Equal(t, "instance/"+stuck+"/stuck", st[0].Subject)
		assert.Contains(t, st[0].Message, tag+"-stuck (project ")
		assert.Contains(t, st[0].Message, "is stuck in task state migrating (status MIGRATING)")
		assert.Contains(t, st[0].Message, "(checks.stuck_after 1h0m0s)")
		pa := filterFindings(fs, activities.ProbeErrorInstances, "instance/"+paused)
		require.Len(t, pa, 1, "the paused instance: %+v", filterFindings(fs, activities.ProbeErrorInstances, ""))
		assert.Equal(t, "instance/"+paused+"/desired", pa[0].Subject)
		assert.Contains(t, pa[0].Message, tag+"-paused (project ")
		assert.Contains(t, pa[0].Message, "is PAUSED, but its recorded desired state (metadata desired_state) is running")

		// Counts read from Nova now: every finding subject of the probe, and its summary.
		svrs := chkServers(t, l)
		var want []string
		n := map[string]int{}
		for _, s := range svrs {
			id := "instance/" + s.ID
			switch s.Status {
			case "ERROR", "UNKNOWN":
				n[s.Status]++
				want = append(want, id)
				continue
			}
			// As the probe ages them (to the minute); checks.stuck_after is the default hour.
			stale := !s.Updated.IsZero() && time.Since(s.Updated).Round(time.Minute) > time.Hour
			if (s.TaskState != "" || s.Status == "VERIFY_RESIZE") && stale {
				n["stuck"]++
				want = append(want, id+"/stuck")
			}
			d := strings.ToLower(s.Metadata["desired_state"])
			switch {
			case (s.Status == "SHUTOFF" || s.Status == "PAUSED" || s.Status == "SUSPENDED") && (d == "active" || d == "running"):
				n["down"]++
				want = append(want, id+"/desired")
			case s.VmState == "active" && s.TaskState == "" && s.PowerState != 1 && s.PowerState != 0:
				n["down"]++
				want = append(want, id+"/power")
			}
		}
		assert.ElementsMatch(t, want, subjectsOf(filterFindings(fs, activities.ProbeErrorInstances, "")))
		assert.Equal(t, fmt.Sprintf("%d instance(s): %d in ERROR, %d UNKNOWN, %d stuck, %d down against their desired state",
			len(svrs), n["ERROR"], n["UNKNOWN"], n["stuck"], n["down"]), sum[activities.ProbeErrorInstances])
		assert.GreaterOrEqual(t, n["stuck"], 1)
		assert.GreaterOrEqual(t, n["down"], 1)

		// Services: one finding per down service, one per service disabled without a reason.
		sp, err := services.List(l.cl.Compute, services.ListOpts{}).AllPages(ctx)
		require.NoError(t, err)
		svcs, _ := services.ExtractServices(sp)
		want, down, seen := nil, 0, false
		for _, s := range svcs {
			subj := "service/" + s.Host + "/" + s.Binary
			if s.State == "down" {
				down++
				want = append(want, subj)
			}
			if s.Status == "disabled" && strings.TrimSpace(s.DisabledReason) == "" {
				want = append(want, subj+"/disabled")
			}
			if s.Host == "compute2" && s.Binary == "nova-compute" {
				seen = true
				assert.Equal(t, reason, s.DisabledReason)
			}
		}
		require.True(t, seen, "compute2's nova-compute")
		assert.ElementsMatch(t, want, subjectsOf(filterFindings(fs, activities.ProbeComputeServices, "")))
		assert.Empty(t, filterFindings(fs, activities.ProbeComputeServices, "service/compute2/nova-compute/disabled"), "disabled with a reason")
		assert.Equal(t, fmt.Sprintf("%d service(s), %d down", len(svcs), down), sum[activities.ProbeComputeServices])

		chkCapacity(t, l, fs, sum[activities.ProbeCapacity])

		// Security updates: the finding of a host says the count its summary says.
		for _, p := range probesOf(t, rep) {
			if p.Name != activities.ProbeSecurityUpdates {
				continue
			}
			var k int
			_, err := fmt.Sscanf(p.Summary, "%d pending", &k)
			require.NoError(t, err, p.Summary)
			hf := filterFindings(fs, activities.ProbeSecurityUpdates, "host/"+p.Target)
			if k == 0 {
				assert.Empty(t, hf, p.Target)
			} else if assert.Len(t, hf, 1, p.Target) {
				assert.Contains(t, hf[0].Message, fmt.Sprintf("%s has %d pending security update(s): ", p.Target, k))
			}
		}
	})

	t.Run("weekly", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// A known image: registered, no data (queued).
		im, err := images.Create(ctx, l.cl.Image, images.CreateOpts{Name: tag + "-img", ContainerFormat: "bare", DiskFormat: "raw"}).Extract()
		require.NoError(t, err)
		t.Cleanup(func() { _ = images.Delete(context.Background(), l.cl.Image, im.ID).ExtractErr() })
		// A known nearly full Swift device: storage2's first device at 91 %.
		node := l.cfg.Swift.Nodes["storage2"]
		var devs []string
		for d := range node.Devices {
			devs = append(devs, d)
		}
		sort.Strings(devs)
		require.NotEmpty(t, devs, "storage2's Swift devices")
		full := devs[0]
		fillTo(t, filepath.Join(node.DevicesDir, full), 0.91)

		rep := l.run("weekly")
		fs := findingsOf(t, rep)
		sum := probeSummaries(t, rep)

		img := filterFindings(fs, activities.ProbeImages, "image/")
		assert.Equal(t, []string{"image/" + im.ID}, subjectsOf(filterFindings(img, "", "image/"+im.ID)))
		for _, f := range filterFindings(img, "", "image/"+im.ID) {
			assert.Equal(t, fmt.Sprintf("image %s is queued", tag+"-img"), f.Message)
		}
		// The images summary, from Glance and Nova read now.
		ip, err := images.List(l.cl.Image, images.ListOpts{}).AllPages(ctx)
		require.NoError(t, err)
		imgs, _ := images.ExtractImages(ip)
		used := map[string]bool{}
		for _, s := range chkServers(t, l) {
			if id, _ := s.Image["id"].(string); id != "" {
				used[id] = true
			}
		}
		var size int64
		var unused, notActive []string
		for _, i := range imgs {
			size += i.SizeBytes
			if !used[i.ID] {
				unused = append(unused, i.Name)
			}
			if i.Status != images.ImageStatusActive {
				notActive = append(notActive, "image/"+i.ID)
			}
		}
		sort.Strings(unused)
		msg := fmt.Sprintf("%d image(s), %.1f MiB in Glance; %d used by instances", len(imgs), float64(size)/(1<<20), len(imgs)-len(unused))
		if len(unused) > 0 {
			msg += "; not used by any instance: " + strings.Join(unused[:min(10, len(unused))], ", ")
			if len(unused) > 10 {
				msg += fmt.Sprintf(" and %d more", len(unused)-10)
			}
		}
		assert.Equal(t, msg, sum[activities.ProbeImages])
		assert.ElementsMatch(t, notActive, subjectsOf(img))
		assert.Contains(t, notActive, "image/"+im.ID)

		// Quotas: every Keystone project is checked.
		pp, err := projects.List(l.cl.Identity, projects.ListOpts{}).AllPages(ctx)
		require.NoError(t, err)
		prs, _ := projects.ExtractProjects(pp)
		assert.True(t, strings.HasPrefix(sum[activities.ProbeQuotas], fmt.Sprintf("%d project(s) checked against %d%%", len(prs), l.cfg.Checks.Thresholds.QuotaPercent)), sum[activities.ProbeQuotas])

		// Network: networks and subnets from Neutron's IP availability, and the subnets short of
		// free addresses.
		require.NotNil(t, l.cl.Network, "the lab's network endpoint")
		np, err := networkipavailabilities.List(l.cl.Network, networkipavailabilities.ListOpts{}).AllPages(ctx)
		require.NoError(t, err)
		nets, err := networkipavailabilities.ExtractNetworkIPAvailabilities(np)
		require.NoError(t, err)
		var short []string
		nsub := 0
		for _, n := range nets {
			for _, s := range n.SubnetIPAvailabilities {
				nsub++
				var total, usedIPs float64
				fmt.Sscan(s.TotalIPs, &total)
				fmt.Sscan(s.UsedIPs, &usedIPs)
				if total > 0 && (total-usedIPs)/total*100 < float64(l.cfg.Checks.Thresholds.IPFreePercent) {
					short = append(short, "subnet/"+s.SubnetID)
				}
			}
		}
		assert.True(t, strings.HasPrefix(sum[activities.ProbeNetwork], fmt.Sprintf("%d network(s), %d subnet(s)", len(nets), nsub)), sum[activities.ProbeNetwork])
		assert.ElementsMatch(t, short, subjectsOf(filterFindings(fs, activities.ProbeNetwork, "")))

		// Swift devices: per storage node, the devices mounted under its devices directory, and
		// a finding for each at or above the threshold; the filled one among them.
		var wantDev []string
		for _, h := range []string{"storage1", "storage2", "storage3"} {
			n, ok := l.cfg.Swift.Nodes[h]
			if !ok {
				continue
			}
			mounted := mountsUnder(t, n.DevicesDir)
			var k int
			for _, p := range probesOf(t, rep) {
				if p.Name == activities.ProbeDisks && p.Target == h {
					_, err := fmt.Sscanf(p.Summary, "%d file system(s), %d Swift device(s)", new(int), &k)
					require.NoError(t, err, p.Summary)
				}
			}
			assert.Equal(t, len(mounted), k, "%s: Swift devices mounted under %s: %v", h, n.DevicesDir, mounted)
			for _, d := range mounted {
				var sf syscall.Statfs_t
				require.NoError(t, syscall.Statfs(filepath.Join(n.DevicesDir, d), &sf))
				usedB := (sf.Blocks - sf.Bfree) * uint64(sf.Frsize)
				pct := float64(usedB) / float64(usedB+sf.Bavail*uint64(sf.Frsize)) * 100
				if pct >= float64(l.cfg.Checks.Thresholds.DiskPercent) {
					wantDev = append(wantDev, "swift/"+h+"/"+d)
				}
			}
		}
		assert.Contains(t, wantDev, "swift/storage2/"+full)
		assert.ElementsMatch(t, wantDev, subjectsOf(filterFindings(fs, "swift-devices", "")))
		for _, f := range filterFindings(fs, "swift-devices", "swift/storage2/"+full) {
			assert.Contains(t, f.Message, fmt.Sprintf("Swift device %s on storage2 is 9", full))
		}
	})

	t.Run("monthly", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// A known disabled Keystone user.
		off := false
		u, err := users.Create(ctx, l.cl.Identity, users.CreateOpts{Name: tag + "-user", Enabled: &off}).Extract()
		require.NoError(t, err)
		t.Cleanup(func() { _ = users.Delete(context.Background(), l.cl.Identity, u.ID).ExtractErr() })

		rep := l.run("monthly")
		fs := findingsOf(t, rep)
		sum := probeSummaries(t, rep)

		up, err := users.List(l.cl.Identity, users.ListOpts{}).AllPages(ctx)
		require.NoError(t, err)
		all, _ := users.ExtractUsers(up)
		var disabled []string
		for _, x := range all {
			if !x.Enabled {
				disabled = append(disabled, "user/"+x.Name)
			}
		}
		acc := filterFindings(fs, activities.ProbeAccounts, "user/")
		assert.Contains(t, disabled, "user/"+tag+"-user")
		assert.Subset(t, subjectsOf(acc), disabled, "every disabled user is proposed for removal")
		for _, f := range filterFindings(acc, "", "user/"+tag+"-user") {
			assert.Equal(t, fmt.Sprintf("user %s (%s) is disabled: remove it, or say why it stays", u.Name, u.ID), f.Message)
		}
		// Operators (policy approvers and chat users): this dev server has no run of theirs.
		ops := slices.Clone(l.cfg.Policy.Approvers)
		for _, cu := range l.cfg.Chat.Users {
			if !slices.Contains(ops, cu.Operator) {
				ops = append(ops, cu.Operator)
			}
		}
		var wantOps []string
		for _, op := range ops {
			if op != "e2e" {
				wantOps = append(wantOps, "operator/"+op)
			}
		}
		assert.ElementsMatch(t, wantOps, subjectsOf(filterFindings(fs, activities.ProbeAccounts, "operator/")))
		assert.Equal(t, fmt.Sprintf("%d user(s), %d operator(s) checked", len(all), len(ops)), sum[activities.ProbeAccounts])

		chkUsage(t, l, rep, "monthly", stuck, paused)
		chkCapacity(t, l, fs, sum[activities.ProbeCapacity])
	})

	t.Run("quarterly", func(t *testing.T) {
		rep := l.run("quarterly")
		fs := findingsOf(t, rep)
		used, total := placementCapacity(t, l)
		var subj []string
		for _, rc := range []string{"VCPU", "MEMORY_MB", "DISK_GB"} {
			subj = append(subj, "capacity/"+rc)
			for _, f := range filterFindings(fs, activities.ProbeProjection, "capacity/"+rc) {
				assert.True(t, strings.HasPrefix(f.Message, fmt.Sprintf("%s: %.0f of %.0f allocated", rc, used[rc], total[rc])), f.Message)
			}
		}
		assert.ElementsMatch(t, subj, subjectsOf(filterFindings(fs, activities.ProbeProjection, "")))
		chkUsage(t, l, rep, "quarterly", stuck, paused)
	})

	t.Run("half-yearly", func(t *testing.T) {
		rep := l.run("half-yearly")
		assert.Empty(t, probesOf(t, rep), "the half-yearly check runs no probe")
		fs := findingsOf(t, rep)
		require.Len(t, fs, 1, "%+v", fs)
		assert.Equal(t, "staged-upgrade", fs[0].Probe)
		assert.Equal(t, "upgrade/staged", fs[0].Subject)
		assert.Equal(t, "info", fs[0].Severity, fs[0].Message)
		m := regexp.MustCompile(`^half-yearly staged upgrade started: (staged-upgrade/cloud) \(run ([0-9a-f-]+)\) plans --to-candidate and waits at gate release-notes-read`).FindStringSubmatch(fs[0].Message)
		require.NotNil(t, m, fs[0].Message)
		// The run it names is the upgrade, running on this Temporal.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d, err := l.srv.Client.DescribeWorkflowExecution(ctx, m[1], m[2])
		require.NoError(t, err)
		assert.Equal(t, workflows.StagedUpgrade.Type, d.WorkflowExecutionInfo.Type.Name)
		assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, d.WorkflowExecutionInfo.Status)
	})
}

// chkUsage: the usage probe has one finding per project Nova's tenant usage reports, and this
// test's project counts its (at least) two instances.
func chkUsage(t *testing.T, l *checksLab, rep *workflows.Report, cadence string, ids ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := servers.Get(ctx, l.cl.Compute, ids[0]).Extract()
	require.NoError(t, err)
	p, err := projects.Get(ctx, l.cl.Identity, s.TenantID).Extract()
	require.NoError(t, err)
	uf := filterFindings(findingsOf(t, rep), activities.ProbeUsage, "")
	mine := filterFindings(uf, "", "project/"+p.Name)
	require.Len(t, mine, 1, "%s usage of project %s: %+v", cadence, p.Name, uf)
	m := regexp.MustCompile(` over (\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2}) \((\d+) instance\(s\)\)$`).FindStringSubmatch(mine[0].Message)
	require.NotNil(t, m, mine[0].Message)
	k, _ := strconv.Atoi(m[3])
	assert.GreaterOrEqual(t, k, len(ids), mine[0].Message)
	months := 1
	if cadence == "quarterly" {
		months = 3
	}
	pe, err := time.Parse("2006-01-02", m[2])
	require.NoError(t, err)
	assert.Equal(t, pe.AddDate(0, -months, 0).Format("2006-01-02"), m[1], "the period is the last %d month(s)", months)
	assert.LessOrEqual(t, time.Since(pe), 48*time.Hour, "the period ends now")
	end := time.Now().UTC()
	start := end.AddDate(0, -months, 0)
	// Nova's usage of every project over the same period, read now.
	up, err := usage.AllTenants(l.cl.Compute, usage.AllTenantsOpts{Start: &start, End: &end}).AllPages(ctx)
	require.NoError(t, err)
	tus, err := usage.ExtractAllTenants(up)
	require.NoError(t, err)
	assert.Len(t, uf, len(tus), "one usage finding per project: %+v", uf)
	sum := probeSummaries(t, rep)[activities.ProbeUsage]
	assert.True(t, strings.HasPrefix(sum, fmt.Sprintf("%d project(s) used ", len(uf))), sum)
}

// chkCapacity: the capacity summary is Placement's allocation now, class by class, and a
// class is a finding exactly when it is 85 % allocated or more.
func chkCapacity(t *testing.T, l *checksLab, fs []activities.CheckFinding, summary string) {
	t.Helper()
	used, total := placementCapacity(t, l)
	var parts, want []string
	for _, rc := range []string{"VCPU", "MEMORY_MB", "DISK_GB"} {
		pct := 0.0
		if total[rc] > 0 {
			pct = used[rc] / total[rc] * 100
		}
		parts = append(parts, fmt.Sprintf("%s %.0f/%.0f (%.1f%%)", rc, used[rc], total[rc], pct))
		if pct >= 85 {
			want = append(want, "capacity/"+rc)
		}
	}
	assert.Equal(t, strings.Join(parts, ", "), summary)
	assert.ElementsMatch(t, want, subjectsOf(filterFindings(fs, activities.ProbeCapacity, "")))
	assert.Greater(t, used["VCPU"], 0.0, "this test's instances hold vCPUs")
}
