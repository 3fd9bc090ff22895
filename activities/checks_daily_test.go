package activities_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// The daily instances probe reports every failed or stuck state, not only ERROR (issue 15).
func TestInstancesProbeFailedAndStuck(t *testing.T) {
	now := time.Date(2026, 5, 2, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339) }
	f := th.SetupHTTP()
	t.Cleanup(f.Teardown)
	srv := func(id, status, task, vm string, power int, updated string, meta string) string {
		return fmt.Sprintf(`{"id": %q, "name": "vm-%s", "status": %q, "tenant_id": "p1", "OS-EXT-SRV-ATTR:host": "compute1",
		  "OS-EXT-STS:task_state": %s, "OS-EXT-STS:vm_state": %q, "OS-EXT-STS:power_state": %d, "updated": %q, "metadata": {%s},
		  "fault": {"code": 500, "message": "boom"}, "image": "", "flavor": {"original_name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1}}`,
			id, id, status, task, vm, power, updated, meta)
	}
	f.Mux.HandleFunc("/servers/detail", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"servers": [%s]}`, strings.Join([]string{
			srv("ok", "ACTIVE", "null", "active", 1, at(3*time.Hour), ""),
			srv("err", "ERROR", "null", "error", 0, at(time.Minute), ""),
			srv("unk", "UNKNOWN", "null", "active", 0, at(time.Hour), ""),
			srv("mig", "MIGRATING", `"migrating"`, "active", 1, at(3*time.Hour), ""),
			srv("spawn", "BUILD", `"spawning"`, "building", 0, at(5*time.Minute), ""),
			srv("resize", "VERIFY_RESIZE", "null", "resized", 1, at(2*time.Hour), ""),
			srv("off", "SHUTOFF", "null", "stopped", 4, at(time.Hour), `"desired_state": "active"`),
			srv("stopped", "SHUTOFF", "null", "stopped", 4, at(time.Hour), ""),
			srv("lost", "ACTIVE", "null", "active", 4, at(time.Hour), ""),
		}, ","))
	})
	cl := fakeclient.ServiceClient(f)
	cl.Type, cl.Microversion = "compute", "2.90"
	c := &activities.Checks{
		Clients:  func(context.Context) (*openstack.Clients, error) { return &openstack.Clients{Compute: cl}, nil },
		Settings: activities.CheckSettings{StuckAfter: time.Hour, DesiredStateKey: "desired_state"},
		Now:      func() time.Time { return now },
	}
	res, err := c.ErrorInstancesProbe(context.Background(), activities.ProbeRequest{Probe: "error-instances"})
	require.NoError(t, err)
	got := map[string]string{}
	for _, f := range res.Findings {
		got[f.Subject] = f.Severity + ": " + f.Message
	}
	assert.Len(t, got, 6, "%v", got)
	assert.Contains(t, got["instance/err"], "critical: vm-err (project p1, host compute1) is in ERROR: boom")
	assert.Contains(t, got["instance/unk"], "critical: vm-unk")
	assert.Contains(t, got["instance/mig/stuck"], "warning: vm-mig (project p1, host compute1) is stuck in task state migrating (status MIGRATING) since 2026-05-02T09:00:00Z, 3h0m0s ago")
	assert.Contains(t, got["instance/resize/stuck"], "waited in VERIFY_RESIZE")
	assert.Contains(t, got["instance/off/desired"], "is SHUTOFF, but its recorded desired state (metadata desired_state) is active")
	assert.Contains(t, got["instance/lost/power"], "active in Nova but the hypervisor reports power state 4 (shutdown)")
	for _, quiet := range []string{"instance/ok", "instance/spawn/stuck", "instance/stopped/desired", "instance/stopped/power"} {
		assert.NotContains(t, got, quiet, "not a failed or stuck state")
	}
	assert.Equal(t, "9 instance(s): 1 in ERROR, 1 UNKNOWN, 2 stuck, 2 down against their desired state", res.Summary)
}

// The quarterly review reads the installed release from the package on the controller and its
// end of maintenance from the release table (issue 15), not text from the configuration.
func TestReleaseProbeReadsFacts(t *testing.T) {
	table := filepath.Join(t.TempDir(), "releases.json")
	require.NoError(t, os.WriteFile(table, []byte(`{"releases": [
	  {"name": "Zed", "nova": 26, "released": "2022-10-05", "maintained_until": "2024-04-05"},
	  {"name": "2023.1 Antelope", "nova": 27, "released": "2023-03-22", "maintained_until": "2024-09-22"},
	  {"name": "2024.1 Caracal", "nova": 29, "released": "2024-04-03", "maintained_until": "2026-09-01"}]}`), 0o600))
	version := "2:26.2.2-1~deb12u5"
	fh := &fakeHost{reply: map[string]func([]string) remote.Result{
		"package_status": func(argv []string) remote.Result {
			return remote.Result{Stdout: "Package: " + argv[len(argv)-1] + "\nStatus: install ok installed\nVersion: " + version + "\n"}
		}}}
	cat, err := remote.NewCatalogue(remote.DefaultCommands(), nil, nil)
	require.NoError(t, err)
	hosts := &activities.Hosts{Runner: fh, Catalogue: cat, Inventory: map[string]activities.InventoryHost{
		"compute1": {Address: "10.0.0.11", Roles: []string{"compute"}}, "controller": {Address: "10.0.0.10", Roles: []string{"controller"}}}}
	now := time.Date(2026, 5, 2, 12, 0, 0, 0, time.UTC)
	c := &activities.Checks{Hosts: hosts, Now: func() time.Time { return now },
		Settings: activities.CheckSettings{ReleaseTable: table, ReleasePackage: "python3-nova"}}
	probe := func() activities.CheckFinding {
		t.Helper()
		res, err := c.ReleaseProbe(context.Background(), activities.ProbeRequest{Probe: "next-release"})
		require.NoError(t, err)
		require.Len(t, res.Findings, 1)
		return res.Findings[0]
	}
	f := probe()
	assert.Equal(t, activities.SeverityCritical, f.Severity, f.Message)
	assert.Contains(t, f.Message, "installed: Zed (python3-nova 2:26.2.2-1~deb12u5 on controller); out of upstream maintenance since 2024-04-05 (757 days)")
	// Antelope is out of maintenance too: the next to plan is the oldest maintained newer one.
	assert.Contains(t, f.Message, "plan the upgrade to 2024.1 Caracal (released 2024-04-03, maintained until 2026-09-01)")
	assert.Equal(t, 1, fh.count("package_status"))

	// Another installed version, another answer: the release comes from the host.
	version = "2:29.0.1-1"
	f = probe()
	assert.Equal(t, activities.SeverityWarning, f.Severity, "Caracal ends within six months: %s", f.Message)
	assert.Contains(t, f.Message, "installed: 2024.1 Caracal")
	assert.Contains(t, f.Message, "no newer release in the table")

	// The built-in table, when none is configured, knows the lab's Zed.
	c.Settings.ReleaseTable = ""
	version = "2:26.2.2-1~deb12u5"
	assert.Contains(t, probe().Message, "installed: Zed")

	// A table that cannot be read is an error (the probe fails: a finding), not a guess.
	c.Settings.ReleaseTable = filepath.Join(t.TempDir(), "missing.json")
	_, err = c.ReleaseProbe(context.Background(), activities.ProbeRequest{Probe: "next-release"})
	assert.ErrorContains(t, err, "release table")
}
