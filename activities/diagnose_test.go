package activities

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/diagnose"
	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/netns"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
	"github.com/stackrun/stackrun/internal/testenv/svcctl"
)

type diagRig struct {
	d    *Diagnose
	rec  *recorder
	dir  string
	now  time.Time
	full *Hosts // the hosts a normal runbook gets (full catalogue)
}

// newDiagRig is one "network node" (role controller, running mariadb and nova-conductor under
// the svcctl stand-in) behind a real sshd, with a full catalogue given to NewDiagnose.
func newDiagRig(t *testing.T) *diagRig {
	t.Helper()
	srv := sshd.Start(t)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "state"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "svcctl"), []byte(svcctl.Script), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "state", "nova-conductor.running"), nil, 0o644))
	pool, err := remote.NewPool(remote.Options{User: srv.User, KeyFile: srv.UserKeyFile, KnownHostsFile: srv.KnownHostsFile})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	cat, err := remote.NewCatalogue(nil, map[string][]string{
		"service_status": {filepath.Join(dir, "svcctl"), "status", "{service}"},
		"service_stop":   {filepath.Join(dir, "svcctl"), "stop", "{service}"},
	}, nil)
	require.NoError(t, err)
	rec := &recorder{Runner: pool}
	logs := filepath.Join(dir, "state")
	full := &Hosts{
		Inventory: map[string]InventoryHost{"netnode": {Address: srv.IP, Port: srv.Port, Roles: []string{"controller"}, Labels: map[string]string{"rack": "r0"}}},
		Services: map[string][]ServiceFacts{"controller": {
			{Name: "mariadb", Log: filepath.Join(logs, "mariadb.log")},
			{Name: "nova-conductor", Log: filepath.Join(logs, "nova-conductor.log"), AMQP: true},
		}},
		Runner: rec, Catalogue: cat,
	}
	now := time.Now().UTC().Truncate(time.Second)
	d := NewDiagnose(full, nil)
	d.Now = func() time.Time { return now }
	return &diagRig{d: d, rec: rec, dir: dir, now: now, full: full}
}

// The read-only guarantee: a Diagnose built from hosts with the full catalogue cannot build one
// mutating command, and refuses before anything reaches the host.
func TestDiagnoseCannotReachAMutatingCommand(t *testing.T) {
	rig := newDiagRig(t)
	require.True(t, rig.d.readOnly())
	require.False(t, rig.full.Catalogue.IsReadOnlyView(), "the runbooks' own Hosts keep the full catalogue")
	ctx := context.Background()
	for _, name := range append(remote.MutatingNames(), "no_such_command") {
		_, err := rig.d.hosts.run(ctx, "netnode", "controller", name, map[string]string{"service": "mariadb", "path": "/tmp/x"})
		require.Error(t, err, name)
		var app *temporal.ApplicationError
		require.True(t, errors.As(err, &app), name)
		assert.Equal(t, ErrTypeInvalidInput, app.Type(), "%s: refused for good, not retried", name)
	}
	assert.Empty(t, rig.rec.names, "nothing reached the host")
	// The full catalogue of the same hosts does stop the service: the refusal is the view's.
	_, err := rig.full.run(ctx, "netnode", "controller", "service_stop", map[string]string{"service": "nova-conductor"})
	require.NoError(t, err)
	assert.NoFileExists(t, filepath.Join(rig.dir, "state", "nova-conductor.running"))
}

// db-connection-errors against the real sshd: the plan, then every SSH collector; only read-only
// commands ran; the facts and the analysis name MariaDB.
func TestDiagnoseCollectorsOverSSH(t *testing.T) {
	rig := newDiagRig(t)
	ctx := context.Background()
	ts := func(d time.Duration) string { return rig.now.Add(d).Format("2006-01-02 15:04:05.000") }
	require.NoError(t, os.WriteFile(filepath.Join(rig.dir, "state", "nova-conductor.log"), []byte(strings.Join([]string{
		ts(-2*time.Hour) + " 7 ERROR oslo_db [-] DBConnectionError: before the window",
		ts(-10*time.Minute) + " 7 INFO nova.conductor [-] fine",
		ts(-5*time.Minute) + " 7 ERROR oslo_db.sqlalchemy.engines [-] Database connection was found disconnected; reconnecting: (pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server on '127.0.0.10' ([Errno 111] Connection refused)\")",
		ts(-4*time.Minute) + " 7 ERROR oslo_db.sqlalchemy.engines [-] (pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server\")",
	}, "\n")+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(rig.dir, "state", "mariadb.log"), []byte(ts(-6*time.Minute)+" 0 [Note] /usr/sbin/mariadbd (initiated by: unknown): Normal shutdown\n"), 0o644))

	req := DiagnoseRequest{Symptom: diagnose.DBConnectionErrors, Subject: diagnose.Subject{Kind: diagnose.SubjectAll, Value: "all"},
		Since: rig.now.Add(-30 * time.Minute), Until: rig.now}
	plan, err := rig.d.DiagnosePlan(ctx, req)
	require.NoError(t, err)
	var ids []string
	for _, s := range plan.Collectors {
		ids = append(ids, s.ID())
	}
	assert.Equal(t, []string{"components", "connects", "processes/netnode", "logs/netnode/mariadb", "logs/netnode/nova-conductor", "node/netnode"}, ids)

	f := plan.Facts
	for _, s := range plan.Collectors {
		creq := CollectRequest{DiagnoseRequest: req, Spec: s}
		var part diagnose.Facts
		switch s.Kind {
		case CollectNode:
			part, err = rig.d.DiagnoseNode(ctx, creq)
		case CollectProcesses:
			part, err = rig.d.DiagnoseProcesses(ctx, creq)
		case CollectLogs:
			part, err = rig.d.DiagnoseLogs(ctx, creq)
		case CollectConnects:
			part, err = rig.d.DiagnoseConnects(ctx, creq)
		case CollectComponents:
			_, err = rig.d.DiagnoseComponents(ctx, creq)
			require.Error(t, err, "no OpenStack on this worker")
			continue
		}
		require.NoError(t, err, s.ID())
		f.Merge(part)
	}
	for _, n := range rig.rec.names {
		assert.True(t, remote.IsReadOnly(n), "ran %s, which is not read-only", n)
	}
	assert.Subset(t, rig.rec.names, []string{"loadavg", "cpu_count", "meminfo", "vmstat_disk", "disk_free_all", "service_status", "log_tail"})
	assert.Empty(t, f.Failures)

	require.Len(t, f.Nodes, 1)
	n := f.Nodes[0]
	assert.Positive(t, n.CPUs)
	assert.Positive(t, n.MemTotal)
	assert.NotEmpty(t, n.Disks, "vmstat -d lists the machine's disks")
	assert.NotEmpty(t, n.FS)
	assert.Contains(t, n.Sources, "ssh netnode: vmstat -d")

	require.Len(t, f.Processes, 1, "the database's process; the services that log are read through their logs")
	assert.Equal(t, "mariadb", f.Processes[0].Service)
	assert.False(t, f.Processes[0].Running)

	require.Len(t, f.Logs, 2)
	c, ok := f.Logs[1].Count(diagnose.LogDB)
	require.True(t, ok, "%+v", f.Logs[1])
	assert.Equal(t, 2, c.Count, "the line before the window is not counted")

	rep := diagnose.Analyze(f)
	require.NotEmpty(t, rep.Suspects)
	assert.Equal(t, "mariadb", rep.Suspects[0].Component)
	assert.Equal(t, "netnode", rep.Suspects[0].Node)
	assert.Equal(t, diagnose.ScopeEverything, rep.Blast.Scope)
	t.Logf("report:\n%s", findingsText(rep))
}

// The duplicate address, for real: two namespaces hold the same address on one bridge; the
// network collector, over SSH on the host, finds the namespace that is on the segment, and its
// ARP probe reports both MACs; the analysis puts the duplicate first.
func TestDuplicateAddressInNamespaces(t *testing.T) {
	start := time.Now()
	rig := newDiagRig(t)
	dup := netns.Duplicate(t)
	t.Logf("set up %s (holders %v, MACs %v, probe %s) in %s", dup.Address, dup.Holders, dup.MACs, dup.Probe, time.Since(start).Round(time.Millisecond))

	req := CollectRequest{
		DiagnoseRequest: DiagnoseRequest{Symptom: diagnose.InstanceUnreachable, Subject: diagnose.Subject{Kind: diagnose.SubjectIP, Value: dup.Address},
			Since: rig.now.Add(-30 * time.Minute), Until: rig.now},
		Spec: CollectorSpec{Kind: CollectNetwork, Host: "netnode", Addresses: []string{dup.Address}},
	}
	probeStart := time.Now()
	f, err := rig.d.DiagnoseNetwork(context.Background(), req)
	require.NoError(t, err)
	t.Logf("network collector: %s", time.Since(probeStart).Round(time.Millisecond))
	for _, n := range rig.rec.names {
		assert.True(t, remote.IsReadOnly(n), n)
	}
	var probe *diagnose.NetProbe
	for i := range f.Network {
		if f.Network[i].Netns == dup.Probe {
			probe = &f.Network[i]
		}
	}
	require.NotNil(t, probe, "the probe namespace is a vantage point: %+v", f.Network)
	assert.True(t, probe.OnLink)
	assert.Equal(t, dup.ProbeIf, probe.Interface)
	assert.ElementsMatch(t, dup.MACs[:], probe.MACs, "both MACs answered")
	assert.GreaterOrEqual(t, probe.ARPReplies, 4, "every broadcast request gets two answers")
	assert.Subset(t, probe.Holders, dup.Holders[:])
	assert.Equal(t, 3, probe.PingSent)

	rep := diagnose.Analyze(diagnose.Facts{Symptom: req.Symptom, Subject: req.Subject, Since: req.Since, Until: req.Until, Network: f.Network})
	fs := rep.Findings()
	require.GreaterOrEqual(t, len(fs), 2)
	assert.Equal(t, "blast-radius", fs[0].Subject)
	assert.Contains(t, fs[1].Subject, "duplicate address "+dup.Address)
	for _, m := range dup.MACs {
		assert.Contains(t, fs[1].Message, m)
	}
	assert.Contains(t, fs[1].Source, "arping -b -c 3 -I "+dup.ProbeIf+" "+dup.Address)
	t.Logf("report:\n%s", findingsText(rep))
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

func findingsText(rep diagnose.Report) string {
	var b strings.Builder
	for _, f := range rep.Findings() {
		b.WriteString(f.Severity + " " + f.Subject + ": " + f.Message + "  [" + f.Source + "]\n")
	}
	return b.String()
}
