//go:build e2e

package e2e

// Diagnose end to end (issue 13): the real worker on a dev server, over SSH to the lab's hosts,
// against the lab's OpenStack. Run under the lab lock:
//
//	flock /tmp/stackrun-lab.lock go test -count=1 -tags e2e -p 1 -run TestDiagnose ./e2e/

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/diagnose"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/netns"
	"github.com/stackrun/stackrun/workflows"
)

type diagLab struct {
	t      *testing.T
	cfg    *config.Config
	srv    *devserver.Server
	lab    *Lab
	lastID string
}

// saveHistory refreshes workflows/testdata/<name> from the last run when STACKRUN_UPDATE_HISTORY
// is set (the replay test in workflows/ replays it against the current code).
func (l *diagLab) saveHistory(name string) {
	if os.Getenv("STACKRUN_UPDATE_HISTORY") == "" {
		return
	}
	root := devserver.RepoRoot(l.t)
	out, err := exec.Command(filepath.Join(root, "bin", "temporal"), "workflow", "show", "--address", l.srv.HostPort, "--workflow-id", l.lastID, "--output", "json").Output()
	require.NoError(l.t, err)
	require.NoError(l.t, os.WriteFile(filepath.Join(root, "workflows", "testdata", name), out, 0o644))
}

func newDiagLab(t *testing.T, env ...string) *diagLab {
	t.Helper()
	lab := requireLab(t)
	cfg, err := config.Load(config.LoadOptions{Path: lab.Config})
	require.NoError(t, err)
	srv := devserver.Start(t)
	startWorker(t, lab.Config, srv, env...)
	return &diagLab{t: t, cfg: cfg, srv: srv, lab: lab}
}

// diagnose runs stackrun run diagnose and returns its report (which must complete).
func (l *diagLab) diagnose(symptom, subject, since string) *workflows.Report {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rb, err := workflows.FindRunbook("diagnose")
	require.NoError(l.t, err)
	start := time.Now()
	st, err := control.Start(ctx, l.srv.Client, l.cfg.Temporal.TaskQueue, rb,
		&workflows.DiagnoseInput{Meta: workflows.Meta{RequestedBy: "e2e"}, Symptom: symptom, Subject: subject, Since: since}, nil)
	require.NoError(l.t, err)
	rep, err := control.Report(ctx, l.srv.Client, st.WorkflowID, true)
	require.NoError(l.t, err)
	l.t.Logf("diagnose --symptom %s --subject %s: %s in %s", symptom, subject, rep.Status, time.Since(start).Round(time.Millisecond))
	for i, f := range rep.Findings {
		l.t.Logf("  %2d %-8s %s: %s", i, f.Severity, f.Subject, f.Message)
	}
	require.Equal(l.t, workflows.StatusCompleted, rep.Status, rep.Summary)
	l.lastID = st.WorkflowID
	// Read-only, as the audit trail shows: only the machinery's and Diagnose's activities ran.
	for _, a := range rep.Audit {
		assert.True(l.t, strings.HasPrefix(a.Activity, "Diagnose") || a.Activity == "Notify" || a.Activity == "LoadPolicy", "activity %s ran", a.Activity)
	}
	return rep
}

// suspectsOf reads the diagnosis detail of the report.
func suspectsOf(t *testing.T, rep *workflows.Report) []diagnose.Suspect {
	b, err := json.Marshal(rep.Details["diagnosis"])
	require.NoError(t, err)
	var d diagnose.Report
	require.NoError(t, json.Unmarshal(b, &d))
	return d.Suspects
}

// index of the first finding whose subject or message contains s (-1: none).
func findingIndex(rep *workflows.Report, s string) int {
	for i, f := range rep.Findings {
		if strings.Contains(f.Subject, s) || strings.Contains(f.Message, s) {
			return i
		}
	}
	return -1
}

func TestDiagnoseDatabaseDownOnLab(t *testing.T) {
	// No MariaDB cutter (DB_FAULT_RATE) for this worker: the test stops MariaDB itself, and a
	// proxy that accepted the worker's connection turns the refusal it checks for into "invalid
	// connection".
	l := newDiagLab(t, "STACKRUN_E2E_DB_FAULT_RATE=0")
	// This checkout's labctl (lab.env may name another checkout's, which may be changing).
	labctl := filepath.Join(devserver.RepoRoot(t), "lab", "bin", "labctl")
	restore := func() {
		if exec.Command(labctl, "status", "controller", "mariadb").Run() == nil {
			return
		}
		l.lab.Run(t, labctl, "start", "controller", "mariadb")
		// The services reconnect on their next request; wait until Keystone and Nova answer.
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := servers.List(l.lab.Clients.Compute, servers.ListOpts{Limit: 1}).AllPages(ctx)
			cancel()
			if err == nil {
				return
			}
			time.Sleep(2 * time.Second)
		}
		t.Errorf("after starting mariadb again, Nova does not answer")
	}
	t.Cleanup(restore) // MariaDB runs again even when the test fails
	l.lab.Run(t, labctl, "stop", "controller", "mariadb")
	// Requests that need the database, so that the services log their errors.
	for _, u := range []string{"http://127.0.0.10:5000/v3/auth/tokens", "http://127.0.0.10:8774/v2.1/servers"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"labpass"}}}}}`))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		cancel()
	}

	rep := l.diagnose("db-connection-errors", "all", "10m")
	s := suspectsOf(t, rep)
	require.NotEmpty(t, s)
	assert.Equal(t, "mariadb", s[0].Component, "%+v", s)
	assert.Equal(t, "controller", s[0].Node)
	var ev []string
	for _, e := range s[0].Evidence {
		ev = append(ev, e.Message+" ["+e.Source+"]")
	}
	all := strings.Join(ev, "\n")
	assert.Contains(t, all, "mariadb is not running on controller", "process down")
	assert.Contains(t, all, "connection refused", "connection refused")
	assert.Contains(t, all, "logged database connection errors", "the services' log lines")
	assert.Equal(t, 0, findingIndex(rep, "blast radius: everything"), "blast radius first")
	assert.Contains(t, rep.Summary, "mariadb")
}

func TestDiagnoseNoValidHostOnLab(t *testing.T) {
	nl := newNovaLab(t)
	l := &diagLab{t: t, cfg: nl.cfg, srv: nl.srv, lab: requireLab(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A flavor no compute can hold (each fake compute has 1000 vCPUs).
	name := fmt.Sprintf("diag-huge-%d", time.Now().UnixNano()%100000)
	disk := 1
	fl, err := flavors.Create(ctx, nl.cl.Compute, flavors.CreateOpts{Name: name, VCPUs: 4096, RAM: 512, Disk: &disk}).Extract()
	require.NoError(t, err)
	t.Cleanup(func() { _ = flavors.Delete(context.Background(), nl.cl.Compute, fl.ID).ExtractErr() })
	// Boot it (no host asked: the scheduler must find none); a create the lab's nova-api leaves
	// hanging is retried, taking the server it did create.
	var id string
	for try := 0; try < 3 && id == ""; try++ {
		if found, err := servers.List(nl.cl.Compute, servers.ListOpts{Name: "^" + name + "$"}).AllPages(ctx); err == nil {
			if list, _ := servers.ExtractServers(found); len(list) == 1 {
				id = list[0].ID
				break
			}
		}
		tctx, tcancel := context.WithTimeout(ctx, 60*time.Second)
		srv, err := servers.Create(tctx, nl.cl.Compute, servers.CreateOpts{Name: name, ImageRef: nl.image, FlavorRef: fl.ID, Networks: "none"}, nil).Extract()
		tcancel()
		if err == nil {
			id = srv.ID
		} else {
			t.Logf("create %s (try %d): %v", name, try+1, err)
		}
	}
	require.NotEmpty(t, id, "boot %s", name)
	t.Cleanup(func() { nl.deleteServers([]string{id}) })
	s := nl.waitServer(id, func(s *servers.Server) bool { return s.Status == "ERROR" }, 2*time.Minute, "ERROR (no valid host)")
	require.Contains(t, strings.ToLower(s.Fault.Message), "no valid host")

	rep := l.diagnose("instance-wont-boot", id, "30m")
	sus := suspectsOf(t, rep)
	require.NotEmpty(t, sus)
	assert.Equal(t, "nova-scheduler", sus[0].Component, "%+v", sus)
	iFault := findingIndex(rep, "No valid host was found")
	iSched := findingIndex(rep, "the scheduler found no valid host")
	iCap := findingIndex(rep, "no compute has room for flavor "+name)
	assert.Positive(t, iFault, "the instance's fault")
	assert.Positive(t, iSched, "the scheduler's or conductor's log lines")
	assert.Positive(t, iCap, "the capacity picture")
	assert.Less(t, iFault, iCap)
	assert.Contains(t, rep.Findings[0].Subject, "blast-radius")
}

// The duplicate address, for real, on the lab: two namespaces on a bridge hold the same private
// address; the diagnosis of "cannot reach it" looks from the controller (the lab's network
// vantage point) and reports the duplicate and both MACs first.
func TestDiagnoseDuplicateAddressOnLab(t *testing.T) {
	l := newDiagLab(t)
	dup := netns.Duplicate(t)
	rep := l.diagnose("instance-unreachable", dup.Address, "30m")
	require.GreaterOrEqual(t, len(rep.Findings), 2)
	assert.Contains(t, rep.Findings[0].Subject, "blast-radius")
	assert.Contains(t, rep.Findings[1].Subject, "duplicate address "+dup.Address)
	for _, m := range dup.MACs {
		assert.Contains(t, rep.Findings[1].Message, m)
	}
	assert.Equal(t, activities.SeverityCritical, rep.Findings[1].Severity)
	iNode := findingIndex(rep, "load ")
	if iNode >= 0 {
		assert.Greater(t, iNode, 1, "load comes after the duplicate")
	}
	assert.Contains(t, rep.Summary, "duplicate address")
	l.saveHistory("diagnose.json")
}

func TestDiagnoseRefusesBadInputOnLab(t *testing.T) {
	l := newDiagLab(t)
	rb, err := workflows.FindRunbook("diagnose")
	require.NoError(t, err)
	for _, c := range []struct{ symptom, subject, since, field string }{
		{"instance-sad", "web-1", "", "symptom"},
		{"", "web-1", "", "symptom"},
		{"instance-unreachable", "web-1; reboot", "", "subject"},
		{"instance-unreachable", "$(reboot)", "", "subject"},
		{"instance-unreachable", "-all", "", "subject"},
		{"api-slow", "nova", "", "subject"},
		{"instance-unreachable", "10.0.0.5", "yesterday", "since"},
		{"instance-unreachable", "10.0.0.5", "-30m", "since"},
		{"instance-unreachable", "10.0.0.5", "30d", "since"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := control.Start(ctx, l.srv.Client, l.cfg.Temporal.TaskQueue, rb,
			&workflows.DiagnoseInput{Meta: workflows.Meta{RequestedBy: "e2e"}, Symptom: c.symptom, Subject: c.subject, Since: c.since}, nil)
		cancel()
		if assert.Error(t, err, "%+v", c) {
			assert.Contains(t, err.Error(), c.field, "%+v", c)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := l.srv.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: "WorkflowType = 'Diagnose'"})
	require.NoError(t, err)
	assert.Empty(t, resp.Executions, "nothing was started")
}
