//go:build e2e

package e2e

// End-to-end tests of the recurring checks (issue 6) on the lab: the real worker on a dev
// server, the lab's Nova, Swift devices over SSH, its Alertmanager and its MariaDB.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/checks/store"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

type checksLab struct {
	t       *testing.T
	cfg     *config.Config
	cfgPath string
	cl      *openstack.Clients
	srv     *devserver.Server
	labctl  string
	amURL   string
}

// newChecksLab writes a copy of the lab's stackrun.yaml with extra checks keys, connects to the
// lab, starts a dev server and the real worker.
func newChecksLab(t *testing.T, extra map[string]any) *checksLab {
	t.Helper()
	src := labConfig(t)
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(b, &doc))
	ch, ok := doc["checks"].(map[string]any)
	require.True(t, ok, "the lab's stackrun.yaml has no checks: section (lab/lib/alertmanager.sh): run lab/up.sh")
	for k, v := range extra {
		ch[k] = v
	}
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "stackrun.yaml")
	require.NoError(t, os.WriteFile(p, out, 0o600))
	cfg, err := config.Load(config.LoadOptions{Path: p})
	require.NoError(t, err)
	require.NoError(t, cfg.ValidateFor(config.ForWorker))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := openstack.NewClients(ctx, openstack.Options{Cloud: cfg.OpenStack.Cloud, CloudsFile: cfg.OpenStack.CloudsFile})
	require.NoError(t, err, "log in to the lab")
	l := &checksLab{t: t, cfg: cfg, cfgPath: p, cl: cl, labctl: filepath.Join(devserver.RepoRoot(t), "lab", "bin", "labctl"), amURL: cfg.Checks.Alertmanager.URL}
	require.NotEmpty(t, l.amURL, "checks.alertmanager.url in the lab's stackrun.yaml")
	l.ensureAlertmanager()
	l.srv = devserver.Start(t)
	startWorker(t, p, l.srv)
	return l
}

func (l *checksLab) ensureAlertmanager() {
	if exec.Command(l.labctl, "status", "controller", "alertmanager").Run() != nil {
		out, err := exec.Command(l.labctl, "start", "controller", "alertmanager").CombinedOutput()
		require.NoError(l.t, err, "start alertmanager: %s", out)
	}
	require.Eventually(l.t, func() bool {
		resp, err := http.Get(l.amURL + "/api/v2/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 200*time.Millisecond, "Alertmanager answers at %s", l.amURL)
}

// run starts a check now (stackrun run check --cadence C) and returns its report.
func (l *checksLab) run(cadence string) *workflows.Report {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rb, err := workflows.FindRunbook("check")
	require.NoError(l.t, err)
	st, err := control.Start(ctx, l.srv.Client, l.cfg.Temporal.TaskQueue, rb, &workflows.CheckInput{Meta: workflows.Meta{RequestedBy: "e2e"}, Cadence: cadence}, nil)
	require.NoError(l.t, err)
	var rep workflows.Report
	require.NoError(l.t, l.srv.Client.GetWorkflow(ctx, st.WorkflowID, st.RunID).Get(ctx, &rep), "the %s check ends", cadence)
	require.Equal(l.t, workflows.StatusCompleted, rep.Status, rep.Summary)
	l.t.Logf("%s: %s", cadence, rep.Summary)
	return &rep
}

// findings of a check report (the check_findings detail: probe, subject, new).
func findingsOf(t *testing.T, rep *workflows.Report) []activities.CheckFinding {
	b, err := json.Marshal(rep.Details["check_findings"])
	require.NoError(t, err)
	var fs []activities.CheckFinding
	require.NoError(t, json.Unmarshal(b, &fs))
	return fs
}

func probesOf(t *testing.T, rep *workflows.Report) []activities.ProbeRun {
	b, err := json.Marshal(rep.Details["probes"])
	require.NoError(t, err)
	var ps []activities.ProbeRun
	require.NoError(t, json.Unmarshal(b, &ps))
	return ps
}

func filterFindings(fs []activities.CheckFinding, probe, subjectPrefix string) []activities.CheckFinding {
	var out []activities.CheckFinding
	for _, f := range fs {
		if (probe == "" || f.Probe == probe) && strings.HasPrefix(f.Subject, subjectPrefix) {
			out = append(out, f)
		}
	}
	return out
}

func (l *checksLab) postAlerts(alerts []map[string]any) {
	l.t.Helper()
	b, _ := json.Marshal(alerts)
	resp, err := http.Post(l.amURL+"/api/v2/alerts", "application/json", bytes.NewReader(b))
	require.NoError(l.t, err)
	resp.Body.Close()
	require.Equal(l.t, 200, resp.StatusCode)
}

func TestChecksOnLab(t *testing.T) {
	tickets := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now().UTC()
		fmt.Fprintf(w, `[{"id":"T-1","title":"old one","severity":"low","status":"open","created":%q},
			{"id":"T-2","title":"compute1 slow","severity":"high","status":"open","created":%q},
			{"id":"T-3","title":"done","status":"closed","created":%q}]`,
			now.Add(-48*time.Hour).Format(time.RFC3339), now.Add(-2*time.Second).Format(time.RFC3339), now.Format(time.RFC3339))
	}))
	defer tickets.Close()
	l := newChecksLab(t, map[string]any{"tickets_url": tickets.URL, "next_release": "2023.1 Antelope"})

	t.Run("daily: an ERROR instance and a service disabled without reason", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// A flavor no host can take: the scheduler puts the server in ERROR with a real fault.
		name := fmt.Sprintf("chk-e2e-huge-%d", time.Now().Unix())
		fl, err := flavors.Create(ctx, l.cl.Compute, flavors.CreateOpts{Name: name, VCPUs: 100000, RAM: 1024, Disk: gophercloud.IntToPointer(1)}).Extract()
		require.NoError(t, err)
		t.Cleanup(func() { _ = flavors.Delete(context.Background(), l.cl.Compute, fl.ID).ExtractErr() })
		pages, err := images.List(l.cl.Image, images.ListOpts{Status: images.ImageStatusActive}).AllPages(ctx)
		require.NoError(t, err)
		imgs, _ := images.ExtractImages(pages)
		require.NotEmpty(t, imgs)
		srv, err := servers.Create(ctx, l.cl.Compute, servers.CreateOpts{Name: name, ImageRef: imgs[0].ID, FlavorRef: fl.ID, Networks: "none"}, nil).Extract()
		require.NoError(t, err)
		t.Cleanup(func() { chkDeleteServer(l.cl, srv.ID) })
		require.Eventually(t, func() bool {
			s, err := servers.Get(ctx, l.cl.Compute, srv.ID).Extract()
			return err == nil && s.Status == "ERROR"
		}, 2*time.Minute, time.Second, "server %s goes to ERROR (no valid host)", srv.ID)

		// compute3's nova-compute disabled without a reason (re-enabled at clean-up).
		sp, err := services.List(l.cl.Compute, services.ListOpts{Host: "compute3", Binary: "nova-compute"}).AllPages(ctx)
		require.NoError(t, err)
		svcs, _ := services.ExtractServices(sp)
		require.Len(t, svcs, 1)
		// The lab's nova-api now and then leaves a request hanging (an RPC timeout inside it):
		// the update is idempotent, so it is tried again with a fresh deadline.
		for try := 0; ; try++ {
			uctx, ucancel := context.WithTimeout(ctx, 90*time.Second)
			_, err = services.Update(uctx, l.cl.Compute, svcs[0].ID, services.UpdateOpts{Status: services.ServiceDisabled}).Extract()
			ucancel()
			if err == nil || try == 2 {
				break
			}
			t.Logf("disable compute3 (try %d): %v", try+1, err)
		}
		require.NoError(t, err)
		t.Cleanup(func() {
			_, err := services.Update(context.Background(), l.cl.Compute, svcs[0].ID, services.UpdateOpts{Status: services.ServiceEnabled}).Extract()
			if err != nil {
				t.Logf("re-enable compute3: %v", err)
			}
		})

		// An instance SHUTOFF against its recorded desired state (metadata desired_state=active).
		off := chkShutoff(t, l.cl, map[string]string{"desired_state": "active"})
		// One stopped on purpose (no desired state): not a finding.
		quiet := chkShutoff(t, l.cl, nil)

		rep := l.run("daily")
		fs := findingsOf(t, rep)
		errs := filterFindings(fs, activities.ProbeErrorInstances, "instance/"+srv.ID)
		require.Len(t, errs, 1, "the ERROR instance is a finding: %+v", fs)
		assert.Equal(t, "critical", errs[0].Severity)
		assert.Contains(t, errs[0].Message, "No valid host was found", "with its fault message")
		down := filterFindings(fs, activities.ProbeErrorInstances, "instance/"+off)
		require.Len(t, down, 1, "the SHUTOFF instance whose desired state is active: %+v", fs)
		assert.Equal(t, "instance/"+off+"/desired", down[0].Subject)
		assert.Contains(t, down[0].Message, "is SHUTOFF, but its recorded desired state (metadata desired_state) is active")
		assert.Empty(t, filterFindings(fs, activities.ProbeErrorInstances, "instance/"+quiet), "stopped without a desired state")
		// The counts are the cloud's: every ERROR instance and every compute service, read here.
		allSrv, err := servers.List(l.cl.Compute, servers.ListOpts{AllTenants: true}).AllPages(ctx)
		require.NoError(t, err)
		svrs, _ := servers.ExtractServers(allSrv)
		nErr := 0
		for _, s := range svrs {
			if s.Status == "ERROR" {
				nErr++
			}
		}
		allSvc, err := services.List(l.cl.Compute, services.ListOpts{}).AllPages(ctx)
		require.NoError(t, err)
		svcList, _ := services.ExtractServices(allSvc)
		nDown := 0
		for _, s := range svcList {
			if s.State == "down" {
				nDown++
			}
		}
		assert.Len(t, filterFindings(fs, activities.ProbeErrorInstances, "instance/"), nErr+1, "one finding per ERROR instance, plus the SHUTOFF one: %+v", filterFindings(fs, activities.ProbeErrorInstances, ""))
		for _, p := range probesOf(t, rep) {
			switch p.Name {
			case activities.ProbeErrorInstances:
				assert.True(t, strings.HasPrefix(p.Summary, fmt.Sprintf("%d instance(s): %d in ERROR, ", len(svrs), nErr)), p.Summary)
			case activities.ProbeComputeServices:
				assert.Equal(t, fmt.Sprintf("%d service(s), %d down", len(svcList), nDown), p.Summary)
			}
		}
		dis := filterFindings(fs, activities.ProbeComputeServices, "service/compute3/nova-compute/disabled")
		require.Len(t, dis, 1, "%+v", fs)
		assert.Contains(t, dis[0].Message, "disabled without a reason")
		// The security-updates probe ran over SSH on every lab host.
		var targets []string
		for _, p := range probesOf(t, rep) {
			if p.Name == activities.ProbeSecurityUpdates {
				targets = append(targets, p.Target)
				assert.True(t, p.OK, "%s: %s", p.Target, p.Error)
				assert.Regexp(t, `^\d+ pending security update\(s\) \(debian\)`, p.Summary)
			}
		}
		var inv []string
		for h := range l.cfg.Inventory {
			inv = append(inv, h)
		}
		assert.ElementsMatch(t, inv, targets, "one security-updates probe per inventory host")
		md, _ := rep.Details["markdown"].(string)
		assert.Contains(t, md, "# daily check")
	})

	t.Run("hourly: 40 alerts of one rack and 1 of another are 2 findings; new tickets", func(t *testing.T) {
		id := fmt.Sprint(time.Now().UnixNano())
		var alerts []map[string]any
		for i := range 40 {
			host := []string{"compute1", "storage1"}[i%2]
			alerts = append(alerts, map[string]any{"labels": map[string]string{
				"alertname": fmt.Sprintf("E2EAlert%d", i), "host": host, "severity": "warning", "e2e": id}})
		}
		alerts = append(alerts, map[string]any{"labels": map[string]string{"alertname": "E2EDiskFull", "host": "compute2", "severity": "critical", "e2e": id}})
		l.postAlerts(alerts)
		t.Cleanup(func() {
			for _, a := range alerts {
				a["endsAt"] = time.Now().UTC().Format(time.RFC3339)
			}
			l.postAlerts(alerts)
		})
		rep := l.run("hourly")
		fs := findingsOf(t, rep)
		al := filterFindings(fs, activities.ProbeAlerts, "")
		require.Len(t, al, 2, "%+v", al)
		r1 := filterFindings(al, "", "rack/r1")
		require.Len(t, r1, 1)
		assert.Contains(t, r1[0].Message, "40 firing alerts in rack r1")
		assert.Contains(t, r1[0].Message, "compute1, storage1")
		r2 := filterFindings(al, "", "rack/r2")
		require.Len(t, r2, 1)
		assert.Equal(t, "critical", r2[0].Severity)
		tk := filterFindings(fs, activities.ProbeTickets, "")
		require.Len(t, tk, 1, "only the ticket created since the last run (or the last hour) is new: %+v", tk)
		assert.Contains(t, tk[0].Message, "T-2")
	})

	t.Run("weekly: nearly full Swift device, alerting test passes, then fails with Alertmanager stopped", func(t *testing.T) {
		env := labEnv(t)
		mp := filepath.Join(env["STACKRUN_LAB_DIR"], "hosts", "storage3", "srv", "node", "sdg")
		fill := filepath.Join(mp, "chk-e2e-fill")
		out, err := exec.Command("df", "-P", "-B1", mp).Output()
		require.NoError(t, err)
		fields := strings.Fields(strings.Split(strings.TrimSpace(string(out)), "\n")[1])
		var size, used int64
		fmt.Sscan(fields[1], &size)
		fmt.Sscan(fields[2], &used)
		want := int64(float64(size)*0.93) - used
		require.Greater(t, want, int64(0))
		require.NoError(t, exec.Command("fallocate", "-l", fmt.Sprint(want), fill).Run(), "fill %s", mp)
		t.Cleanup(func() { _ = os.Remove(fill) })

		rep := l.run("weekly")
		fs := findingsOf(t, rep)
		sw := filterFindings(fs, "swift-devices", "swift/storage3/sdg")
		require.Len(t, sw, 1, "the nearly full device is in the weekly report: %+v", filterFindings(fs, "swift-devices", ""))
		assert.Contains(t, sw[0].Message, "Swift device sdg on storage3 is 9")
		assert.Empty(t, filterFindings(fs, activities.ProbeAlertingTest, ""), "alerting works with Alertmanager up")
		for _, p := range probesOf(t, rep) {
			if p.Name == activities.ProbeAlertingTest {
				assert.Contains(t, p.Summary, "delivered to the receiver")
			}
		}
		for _, probe := range []string{activities.ProbeQuotas, activities.ProbeImages, activities.ProbeLargeInstances, activities.ProbeNetwork} {
			found := false
			for _, p := range probesOf(t, rep) {
				if p.Name == probe {
					found = true
					assert.True(t, p.OK, "%s: %s", probe, p.Error)
				}
			}
			assert.True(t, found, probe)
		}
		// Their content is the cloud's: image and instance counts read here.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ip, err := images.List(l.cl.Image, images.ListOpts{}).AllPages(ctx)
		require.NoError(t, err)
		imgs, _ := images.ExtractImages(ip)
		sp, err := servers.List(l.cl.Compute, servers.ListOpts{AllTenants: true}).AllPages(ctx)
		require.NoError(t, err)
		svrs, _ := servers.ExtractServers(sp)
		large := 0
		for _, s := range svrs {
			if v, _ := s.Flavor["vcpus"].(float64); int(v) >= l.cfg.Checks.Thresholds.LargeInstanceVCPUs {
				large++
			} else if r, _ := s.Flavor["ram"].(float64); int(r) >= l.cfg.Checks.Thresholds.LargeInstanceRAMMB {
				large++
			}
		}
		for _, p := range probesOf(t, rep) {
			switch p.Name {
			case activities.ProbeImages:
				assert.True(t, strings.HasPrefix(p.Summary, fmt.Sprintf("%d image(s), ", len(imgs))), p.Summary)
			case activities.ProbeLargeInstances:
				assert.True(t, strings.HasPrefix(p.Summary, fmt.Sprintf("%d of %d instance(s)", large, len(svrs))), p.Summary)
			}
		}
		assert.Len(t, filterFindings(fs, activities.ProbeLargeInstances, "instance/"), large)
		assert.Len(t, filterFindings(fs, activities.ProbeImages, "images"), 1)

		out2, err := exec.Command(l.labctl, "stop", "controller", "alertmanager").CombinedOutput()
		require.NoError(t, err, "%s", out2)
		t.Cleanup(l.ensureAlertmanager)
		rep = l.run("weekly")
		at := filterFindings(findingsOf(t, rep), activities.ProbeAlertingTest, "")
		require.Len(t, at, 1)
		assert.Equal(t, "critical", at[0].Severity)
		assert.Contains(t, at[0].Message, "Alertmanager at http://127.0.0.10:9093 is unreachable")
		// The hourly check says so clearly too.
		rep = l.run("hourly")
		al := filterFindings(findingsOf(t, rep), activities.ProbeAlerts, "probe/alerts")
		require.Len(t, al, 1)
		assert.Equal(t, "critical", al[0].Severity)
		assert.Contains(t, al[0].Message, "is unreachable")
	})

	t.Run("monthly: two runs show a trend, stored in MariaDB", func(t *testing.T) {
		// Tenant usage counts launched instances only: on a fresh lab nothing has run this month
		// yet, so run one (m1.tiny) for the two checks to measure.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		pages, err := images.List(l.cl.Image, images.ListOpts{Status: images.ImageStatusActive}).AllPages(ctx)
		require.NoError(t, err)
		imgs, _ := images.ExtractImages(pages)
		require.NotEmpty(t, imgs)
		fp, err := flavors.ListDetail(l.cl.Compute, flavors.ListOpts{}).AllPages(ctx)
		require.NoError(t, err)
		fls, _ := flavors.ExtractFlavors(fp)
		var tiny string
		for _, f := range fls {
			if f.Name == "m1.tiny" {
				tiny = f.ID
			}
		}
		require.NotEmpty(t, tiny, "the lab's m1.tiny flavor")
		srv, err := servers.Create(ctx, l.cl.Compute, servers.CreateOpts{Name: fmt.Sprintf("chk-e2e-usage-%d", time.Now().Unix()),
			ImageRef: imgs[0].ID, FlavorRef: tiny, Networks: "none"}, nil).Extract()
		require.NoError(t, err)
		t.Cleanup(func() { chkDeleteServer(l.cl, srv.ID) })
		require.Eventually(t, func() bool {
			s, err := servers.Get(ctx, l.cl.Compute, srv.ID).Extract()
			return err == nil && s.Status == "ACTIVE"
		}, 2*time.Minute, time.Second, "server %s ACTIVE", srv.ID)
		time.Sleep(2 * time.Second)

		first := l.run("monthly")
		time.Sleep(2 * time.Second)
		second := l.run("monthly")
		trends := filterFindings(findingsOf(t, second), "trend", "monthly.usage.vcpu_hours/")
		require.NotEmpty(t, trends, "usage per project with a trend: %+v", findingsOf(t, second))
		for _, tr := range trends {
			assert.Contains(t, tr.Message, " vs ", tr.Subject)
		}
		st, err := store.Open(l.cfg.Checks.ReportsDSN)
		require.NoError(t, err)
		defer st.Close()
		runs, err := st.Runs(context.Background(), "monthly", 2)
		require.NoError(t, err)
		require.Len(t, runs, 2)
		assert.Equal(t, second.RunID, runs[0].RunID)
		assert.Equal(t, first.RunID, runs[1].RunID)
		assert.Contains(t, runs[0].Markdown, "new since the previous run")
		assert.Contains(t, second.Summary, "new since")
		usage := filterFindings(findingsOf(t, second), activities.ProbeUsage, "project/")
		assert.NotEmpty(t, usage)
	})

	t.Run("quarterly and half-yearly", func(t *testing.T) {
		rep := l.run("quarterly")
		fs := findingsOf(t, rep)
		var subjects []string
		for _, f := range filterFindings(fs, activities.ProbeProjection, "capacity/") {
			subjects = append(subjects, f.Subject)
		}
		assert.Len(t, subjects, 3, "one projection per resource class: %v", subjects)
		for _, rc := range []string{"VCPU", "MEMORY_MB", "DISK_GB"} {
			assert.Contains(t, strings.Join(subjects, " "), rc)
		}
		// The review reads the installed release from the controller's python3-nova (Zed, 26.x
		// on the lab) and its end of maintenance from the built-in release table.
		rel := filterFindings(fs, activities.ProbeRelease, "")
		require.Len(t, rel, 1)
		assert.Regexp(t, `installed: Zed \(python3-nova 2:26\.[0-9.]+-[^ ]+ on [a-z0-9]+\); out of upstream maintenance since 2024-04-05`, rel[0].Message)
		assert.Equal(t, "critical", rel[0].Severity)
		assert.Contains(t, rel[0].Message, "plan the upgrade to 2023.1 Antelope", "checks.next_release, a newer release of the table")
		rep = l.run("half-yearly")
		// The half-yearly check starts the staged upgrade in plan mode: it waits at its first gate.
		msg := findingsOf(t, rep)[0].Message
		assert.Contains(t, msg, "staged-upgrade/cloud")
		assert.Contains(t, msg, "waits at gate release-notes-read")
	})
}

// chkShutoff boots an m1.tiny instance with metadata, waits for it ACTIVE, stops it and waits for
// SHUTOFF; it is deleted when the test ends.
func chkShutoff(t *testing.T, cl *openstack.Clients, meta map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pages, err := images.List(cl.Image, images.ListOpts{Status: images.ImageStatusActive}).AllPages(ctx)
	require.NoError(t, err)
	imgs, _ := images.ExtractImages(pages)
	require.NotEmpty(t, imgs)
	fp, err := flavors.ListDetail(cl.Compute, flavors.ListOpts{}).AllPages(ctx)
	require.NoError(t, err)
	fls, _ := flavors.ExtractFlavors(fp)
	var tiny string
	for _, f := range fls {
		if f.Name == "m1.tiny" {
			tiny = f.ID
		}
	}
	require.NotEmpty(t, tiny, "the lab's m1.tiny flavor")
	srv, err := servers.Create(ctx, cl.Compute, servers.CreateOpts{Name: fmt.Sprintf("chk-e2e-off-%d", time.Now().UnixNano()),
		ImageRef: imgs[0].ID, FlavorRef: tiny, Networks: "none", Metadata: meta}, nil).Extract()
	require.NoError(t, err)
	t.Cleanup(func() { chkDeleteServer(cl, srv.ID) })
	wait := func(status string) {
		require.Eventually(t, func() bool {
			s, err := servers.Get(ctx, cl.Compute, srv.ID).Extract()
			return err == nil && s.Status == status && s.TaskState == ""
		}, 4*time.Minute, time.Second, "server %s %s", srv.ID, status)
	}
	wait("ACTIVE")
	require.NoError(t, servers.Stop(ctx, cl.Compute, srv.ID).ExtractErr())
	wait("SHUTOFF")
	return srv.ID
}

func chkDeleteServer(cl *openstack.Clients, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = servers.ResetState(ctx, cl.Compute, id, servers.StateActive).ExtractErr()
	_ = servers.Delete(ctx, cl.Compute, id).ExtractErr()
	for ctx.Err() == nil {
		if _, err := servers.Get(ctx, cl.Compute, id).Extract(); gophercloud.ResponseCodeIs(err, 404) {
			return
		}
		time.Sleep(time.Second)
	}
}
