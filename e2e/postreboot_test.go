//go:build e2e

package e2e

// PostRebootCheck end to end: the real worker binary on a real Temporal dev server, over real SSH
// to the lab's hosts, against the lab's real OpenStack APIs.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

func TestPostRebootCheckOnLab(t *testing.T) {
	cfgPath := labConfig(t)
	cfg, err := config.Load(config.LoadOptions{Path: cfgPath})
	require.NoError(t, err)
	srv := devserver.Start(t)
	startWorker(t, cfgPath, srv)

	run := func(host string) *workflows.Report {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		rb, err := workflows.FindRunbook("post-reboot-check")
		require.NoError(t, err)
		in := &workflows.PostRebootCheckInput{Meta: workflows.Meta{RequestedBy: "carol"}, Host: host}
		started, err := control.Start(ctx, srv.Client, cfg.Temporal.TaskQueue, rb, in, asRequester(t, in))
		require.NoError(t, err)
		rep, err := control.Report(ctx, srv.Client, started.WorkflowID, true)
		require.NoError(t, err)
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		return rep
	}
	// Every service runs (no critical finding) and every service on the message queue holds an
	// AMQP connection (no AMQP warning). Instances other tests leave moving may warn: not counted.
	critical := func(rep *workflows.Report) []string {
		var out []string
		for _, f := range rep.Findings {
			// An AMQP socket seen only by ss is weaker evidence, an info finding: not a failure.
			if f.Severity == activities.SeverityCritical || f.Severity != activities.SeverityInfo && strings.Contains(f.Message, "AMQP") {
				out = append(out, f.Subject+": "+f.Message)
			}
		}
		return out
	}

	// The controller (also the Swift proxy): every service runs, Keystone, Glance, Nova and Swift answer.
	rep := run("controller")
	require.Empty(t, critical(rep), "controller findings: %+v", rep.Findings)
	var probes []string
	for _, a := range rep.Audit {
		if a.Activity == "Probe" {
			probes = append(probes, a.Target)
		}
	}
	require.ElementsMatch(t, []string{"projects", "images", "servers", "object-store"}, probes)

	// A compute: nova-compute runs over SSH on that host and Nova reports its service up.
	rep = run("compute1")
	require.Empty(t, critical(rep), "compute1 findings: %+v", rep.Findings)

	// A storage node: its Swift processes and rsync run.
	rep = run("storage2")
	require.Empty(t, critical(rep), "storage2 findings: %+v", rep.Findings)
	require.GreaterOrEqual(t, strings.Count(strings.Join(rep.Plan, "\n"), "is running"), 4)
}
