package activities

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// Outage does the steps of outage-recovery (RUNBOOKS.md §8): it starts services that are not
// running (checking first), verifies each the way the priority table says (process, port, AMQP
// connection, API answer), checks the Swift devices, the database's integrity and that the
// hypervisors agree with the database, and starts again the instances that ran before. Every
// activity reads the world before it acts, so a retried or replayed one does nothing twice.
type Outage struct {
	Hosts *Hosts
	// Clients connects to the cloud lazily (it is down when the run starts).
	Clients func(ctx context.Context) (*openstack.Clients, error)
	// NovaDB is the read-only Nova (cell) database: the instances' records before the sync.
	NovaDB *sql.DB
	// Table is the resolved priority table (internal/app/workerapp).
	Table OutageTable
	// Swift are the Swift nodes and their devices (swift-devices).
	Swift SwiftCluster
	// DatabaseHost runs db_check with the client defaults file DefaultsFile over Databases.
	DatabaseHost string
	DefaultsFile string
	Databases    []string
	// Poll is how often waits look again (default 1s: the recovery waits on each of them).
	Poll time.Duration
}

func (o *Outage) poll() time.Duration {
	if o.Poll > 0 {
		return o.Poll
	}
	return time.Second
}

// OutagePlan returns the priority table this worker was configured with.
func (o *Outage) OutagePlan(ctx context.Context) (OutageTable, error) { return o.Table, nil }

// OutageServiceState reports whether one service runs (the plan's snapshot).
func (o *Outage) OutageServiceState(ctx context.Context, s OutageService) (ServiceState, error) {
	return o.Hosts.ServiceStatus(ctx, s.Request())
}

// OutageStartService starts a service that is not running and says whether it already was.
// Two commands: the status, then the start (not SetService, which asks the status again before
// and after: the verification that follows checks the process anyway, and each command is on
// the recovery's critical path, once per tier). A retry whose earlier attempt started the
// service (its answer lost when the worker died) reports that start, not "already up"
// (StartRecorded).
func (o *Outage) OutageStartService(ctx context.Context, s OutageService) (OutageStarted, error) {
	running := func(ctx context.Context) (bool, error) {
		st, err := o.Hosts.ServiceStatus(ctx, s.Request())
		return st.Running, err
	}
	start := func(ctx context.Context) error {
		res, err := o.Hosts.run(ctx, s.Host, s.Role, "service_start", map[string]string{"service": s.Service})
		if err != nil {
			return err
		}
		if !res.OK() {
			return fmt.Errorf("start %s on %s: exit %d: %s", s.Service, s.Host, res.ExitCode, strings.TrimSpace(res.Stderr+res.Stdout))
		}
		return nil
	}
	return StartRecorded(ctx, running, start)
}

// OutageStartIntent is what StartRecorded heartbeats before it starts a service: the attempt
// found it stopped and starts it at Starting. The server keeps an attempt's last heartbeat
// details for the next attempt of the same activity (and of no other run or step).
type OutageStartIntent struct {
	Starting time.Time `json:"starting"`
}

// StartRecorded is OutageStartService's decision (the crash matrix's mock takes it too): when
// running says the service runs, it was started by an earlier attempt of this very activity if
// that attempt recorded its intent (OutageStartIntent, in the heartbeat details a retry reads),
// else it was up before ("already up"). When it does not run, the intent is recorded first,
// then start acts. The intent is the attempt's first heartbeat of its own, which the SDK sends
// at once; only when the worker's keepalive heartbeated before it (a status read slower than
// keepalive.Every) may the SDK hold it back for its throttle interval, and a crash in that
// window is still reported "already up" (a wrong word in the report; nothing is done twice).
func StartRecorded(ctx context.Context, running func(context.Context) (bool, error), start func(context.Context) error) (OutageStarted, error) {
	up, err := running(ctx)
	if err != nil {
		return OutageStarted{}, err
	}
	var earlier OutageStartIntent
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &earlier)
	}
	if up {
		if !earlier.Starting.IsZero() {
			// An earlier attempt of this activity found it stopped and started it.
			heartbeat(ctx, earlier)
			return OutageStarted{At: earlier.Starting, Retried: true}, nil
		}
		return OutageStarted{AlreadyUp: true, At: time.Now()}, nil
	}
	at := time.Now()
	heartbeat(ctx, OutageStartIntent{Starting: at})
	if err := start(ctx); err != nil {
		return OutageStarted{}, err
	}
	return OutageStarted{At: at}, nil
}

// OutageVerifyService checks every verification of a service once; a verification that fails
// is an error (retried by the workflow's options, then the tier stalls).
func (o *Outage) OutageVerifyService(ctx context.Context, req OutageVerifyRequest) (OutageVerified, error) {
	var out OutageVerified
	for _, v := range req.Verify {
		ev, err := o.verify(ctx, req, v)
		if err != nil {
			return out, fmt.Errorf("%s on %s: %s: %w", req.Service, req.Host, v, err)
		}
		out.Evidence = append(out.Evidence, ev)
	}
	return out, nil
}

func (o *Outage) verify(ctx context.Context, req OutageVerifyRequest, v string) (string, error) {
	switch {
	case v == "process":
		st, err := o.Hosts.ServiceStatus(ctx, req.Request())
		if err != nil {
			return "", err
		}
		if !st.Running {
			return "", fmt.Errorf("not running: %s", st.Output)
		}
		return fmt.Sprintf("%s on %s: process runs (service_status)", req.Service, req.Host), nil
	case strings.HasPrefix(v, "port:"):
		inv, ok := o.Hosts.Inventory[req.Host]
		if !ok {
			return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("host %q is not in the inventory", req.Host), ErrTypeNotFound, nil)
		}
		addr := net.JoinHostPort(inv.Address, strings.TrimPrefix(v, "port:"))
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return "", fmt.Errorf("port does not accept connections: %w", err)
		}
		_ = c.Close()
		return fmt.Sprintf("%s on %s: %s accepts TCP connections", req.Service, req.Host, addr), nil
	case v == "amqp":
		res, err := o.Hosts.CheckAMQP(ctx, AMQPRequest{ServiceRequest: req.Request(), Log: req.Log, Since: req.Since})
		if err != nil {
			return "", err
		}
		if !res.Connected {
			return "", fmt.Errorf("no AMQP connection since %s", req.Since.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("%s on %s: AMQP connected (%s)", req.Service, req.Host, res.Line), nil
	case strings.HasPrefix(v, "api:"):
		api := strings.TrimPrefix(v, "api:")
		if o.Clients == nil {
			return "", temporal.NewNonRetryableApplicationError("OpenStack is "+errNotConfigured.Error(), ErrTypeRefused, nil)
		}
		cl, err := o.Clients(ctx)
		if err != nil {
			return "", fmt.Errorf("cannot authenticate: %w", err)
		}
		t, err := cl.TimeAPI(ctx, api)
		if err != nil {
			return "", err
		}
		if t.Status < 200 || t.Status > 299 {
			return "", fmt.Errorf("%s API answered HTTP %d (%s)", api, t.Status, t.URL)
		}
		return fmt.Sprintf("%s API answers: HTTP %d in %s (%s)", api, t.Status, t.Took.Round(time.Millisecond), t.URL), nil
	}
	return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown verification %q", v), ErrTypeInvalidInput, nil)
}

// OutageHostUp verifies a host: reachable (it answers over SSH), swift-devices (each Swift device
// of the node is mounted, mounting by label the ones that are not, and readable).
func (o *Outage) OutageHostUp(ctx context.Context, req OutageHostRequest) (OutageHostResult, error) {
	var out OutageHostResult
	for _, v := range req.Verify {
		switch v {
		case "reachable":
			res, err := o.Hosts.run(ctx, req.Host, "", "uptime", nil)
			if err != nil {
				return out, err
			}
			if !res.OK() {
				return out, fmt.Errorf("uptime on %s: exit %d", req.Host, res.ExitCode)
			}
			out.Evidence = append(out.Evidence, fmt.Sprintf("%s answers over SSH (uptime %ss)", req.Host, strings.Fields(res.Stdout + " ?")[0]))
		case "swift-devices":
			if err := o.swiftDevices(ctx, req.Host, &out); err != nil {
				return out, err
			}
		default:
			return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown host verification %q", v), ErrTypeInvalidInput, nil)
		}
	}
	return out, nil
}

func (o *Outage) swiftDevices(ctx context.Context, host string, out *OutageHostResult) error {
	node, ok := o.Swift.Nodes[host]
	if !ok || len(node.Devices) == 0 {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s has no Swift devices configured (swift.nodes.%s.devices)", host, host), ErrTypeInvalidInput, nil)
	}
	res, err := o.Hosts.run(ctx, host, "", "mount_list", nil)
	if err != nil {
		return err
	}
	mounts := ParseMounts(res.Stdout)
	devs := make([]string, 0, len(node.Devices))
	for d := range node.Devices {
		devs = append(devs, d)
	}
	slices.Sort(devs)
	for _, d := range devs {
		mp := path.Join(node.DevicesDir, d)
		if _, ok := mounts[mp]; !ok {
			r, err := o.Hosts.run(ctx, host, "", "mount_label", map[string]string{"label": d, "path": mp})
			if err != nil {
				return err
			}
			if !r.OK() {
				return fmt.Errorf("mount LABEL=%s %s on %s: exit %d: %s", d, mp, host, r.ExitCode, strings.TrimSpace(r.Stderr))
			}
			out.Mounted = append(out.Mounted, d)
		}
		r, err := o.Hosts.run(ctx, host, "", "list_dir", map[string]string{"path": mp})
		if err != nil {
			return err
		}
		if !r.OK() {
			return fmt.Errorf("swift device %s at %s on %s does not answer: %s", d, mp, host, strings.TrimSpace(r.Stderr))
		}
		out.Devices = append(out.Devices, d)
		out.Evidence = append(out.Evidence, fmt.Sprintf("%s:%s mounted at %s and readable", host, d, mp))
	}
	return nil
}

// OutageDBIntegrity runs mariadb-check --check over the configured schemas the server has.
// Tables that are not OK are problems (findings), not errors: the check ran.
func (o *Outage) OutageDBIntegrity(ctx context.Context) (OutageDBCheck, error) {
	if o.DatabaseHost == "" {
		return OutageDBCheck{}, temporal.NewNonRetryableApplicationError("no database host (outage.database_host or upgrade.database_host)", ErrTypeRefused, nil)
	}
	args := map[string]string{"defaults_file": o.DefaultsFile}
	res, err := o.Hosts.run(ctx, o.DatabaseHost, "", "db_list", args)
	if err != nil {
		return OutageDBCheck{}, err
	}
	if !res.OK() {
		return OutageDBCheck{}, fmt.Errorf("list databases on %s: exit %d: %s", o.DatabaseHost, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	have := strings.Fields(res.Stdout)
	out := OutageDBCheck{}
	for _, d := range o.Databases {
		if slices.Contains(have, d) {
			out.Databases = append(out.Databases, d)
		} else {
			out.Missing = append(out.Missing, d)
		}
	}
	if len(out.Databases) == 0 {
		return out, nil
	}
	// One mariadb-check per schema, a few at once: the check reads every table, the recovery waits
	// for it, and the server checks several schemas faster side by side than one after another.
	type part struct {
		cmd      string
		tables   int
		problems []string
		err      error
	}
	parts := make([]part, len(out.Databases))
	sem := make(chan struct{}, dbCheckParallel)
	var wg sync.WaitGroup
	for i, d := range out.Databases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p := &parts[i]
			if cmd, err := o.Hosts.Catalogue.Build("db_check", "", withHost(map[string]string{"defaults_file": o.DefaultsFile}, o.DatabaseHost), d); err == nil {
				p.cmd = cmd.String()
			}
			res, err := o.Hosts.run(ctx, o.DatabaseHost, "", "db_check", map[string]string{"defaults_file": o.DefaultsFile}, d)
			if err != nil {
				p.err = err
				return
			}
			p.tables, p.problems = ParseDBCheck(res.Stdout + "\n" + res.Stderr)
			if !res.OK() && len(p.problems) == 0 {
				p.err = fmt.Errorf("mariadb-check of %s on %s: exit %d: %s", d, o.DatabaseHost, res.ExitCode, strings.TrimSpace(res.Stderr))
			}
		}()
	}
	wg.Wait()
	var cmds []string
	for _, p := range parts {
		if p.err != nil {
			return out, p.err
		}
		cmds = append(cmds, p.cmd)
		out.Tables += p.tables
		out.Problems = append(out.Problems, p.problems...)
	}
	out.Command = strings.Join(cmds, "; ")
	return out, nil
}

// dbCheckParallel bounds the mariadb-check runs of OutageDBIntegrity at once.
const dbCheckParallel = 4

func withHost(args map[string]string, host string) map[string]string {
	args["host"] = host
	return args
}

// ParseDBCheck reads mariadb-check output: "db.table   OK" lines, or a table name followed by
// "note|warning|error : text" lines. It returns the tables seen and every table not OK with its
// messages (notes alone are OK).
func ParseDBCheck(out string) (int, []string) {
	var (
		tables   int
		problems []string
		current  string
		msgs     []string
		bad      bool
	)
	flush := func() {
		if current != "" && bad {
			problems = append(problems, current+": "+strings.Join(msgs, "; "))
		}
		current, msgs, bad = "", nil, false
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if i := strings.Index(line, ":"); i > 0 && !strings.Contains(line[:i], ".") {
			kind := strings.ToLower(strings.TrimSpace(line[:i]))
			msg := strings.TrimSpace(line[i+1:])
			switch kind {
			case "note":
				msgs = append(msgs, "note: "+msg)
			case "warning", "error", "status":
				if kind == "status" && strings.EqualFold(msg, "OK") {
					continue
				}
				msgs = append(msgs, kind+": "+msg)
				bad = true
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 || !strings.Contains(f[0], ".") {
			continue
		}
		flush()
		tables++
		current = f[0]
		if len(f) > 1 && !strings.EqualFold(f[len(f)-1], "OK") {
			bad, msgs = true, append(msgs, strings.Join(f[1:], " "))
		}
	}
	flush()
	return tables, problems
}

// OutageInstancesBefore reads every instance's record from the Nova database: vm_state and
// power_state as they stood before the outage, as long as nova-compute has not synced them.
func (o *Outage) OutageInstancesBefore(ctx context.Context) ([]OutageInstance, error) {
	if o.NovaDB == nil {
		return nil, temporal.NewNonRetryableApplicationError("the Nova database (databases.nova_dsn) is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	rows, err := o.NovaDB.QueryContext(ctx, `SELECT uuid, COALESCE(display_name, ''), COALESCE(host, ''), COALESCE(vm_state, ''),
		COALESCE(power_state, 0), COALESCE(task_state, '') FROM instances WHERE deleted = 0 ORDER BY uuid`)
	if err != nil {
		return nil, fmt.Errorf("nova database: instances: %w", err)
	}
	defer rows.Close()
	out := []OutageInstance{}
	for rows.Next() {
		var i OutageInstance
		if err := rows.Scan(&i.ID, &i.Name, &i.Host, &i.VMState, &i.PowerState, &i.TaskState); err != nil {
			return nil, fmt.Errorf("nova database: %w", err)
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// OutageHypervisors checks, once Nova is back, that every nova-compute is up with a heartbeat
// newer than since (a stale "up" from before the outage does not count), and that each
// instance's host in the database is the hypervisor that lists it. Computes not up are an error
// (retried, then the tier stalls); mismatches are the result.
func (o *Outage) OutageHypervisors(ctx context.Context, since time.Time) (OutageHypervisorCheck, error) {
	if o.Clients == nil {
		return OutageHypervisorCheck{}, temporal.NewNonRetryableApplicationError("OpenStack is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	cl, err := o.Clients(ctx)
	if err != nil {
		return OutageHypervisorCheck{}, fmt.Errorf("cannot authenticate: %w", err)
	}
	out := OutageHypervisorCheck{Computes: map[string]string{}}
	for {
		svcs, err := cl.ListServices(ctx, openstack.ServiceListOpts{Binary: "nova-compute"})
		if err != nil {
			return out, err
		}
		down := 0
		for _, s := range svcs {
			switch {
			case s.State != openstack.ServiceStateUp:
				out.Computes[s.Host] = fmt.Sprintf("%s (status %s, forced down %v)", s.State, s.Status, s.ForcedDown)
				down++
			case s.UpdatedAt.Before(since.Add(-time.Second)):
				out.Computes[s.Host] = fmt.Sprintf("no heartbeat since the recovery began (last %s)", s.UpdatedAt.UTC().Format(time.RFC3339))
				down++
			default:
				out.Computes[s.Host] = "up"
			}
		}
		if len(svcs) > 0 && down == 0 {
			break
		}
		activity.RecordHeartbeat(ctx, out.Computes)
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("computes not up: %v", out.Computes)
		case <-time.After(o.poll()):
		}
	}
	hyps, err := cl.ListHypervisorServers(ctx)
	if err != nil {
		return out, err
	}
	listed := map[string]string{} // uuid -> hypervisor host
	hosts := map[string]bool{}
	for _, h := range hyps {
		hosts[h.Host] = true
		for _, id := range h.Servers {
			listed[id] = h.Host
		}
	}
	inst, err := o.OutageInstancesBefore(ctx)
	if err != nil {
		return out, err
	}
	out.Instances = len(inst)
	for _, i := range inst {
		switch hv, ok := listed[i.ID]; {
		case i.Host == "":
			// never scheduled (ERROR at boot): no hypervisor to agree with
		case !hosts[i.Host]:
			out.Mismatches = append(out.Mismatches, fmt.Sprintf("instance %s (%s): database host %s is no hypervisor", i.ID, i.Name, i.Host))
		case !ok:
			out.Mismatches = append(out.Mismatches, fmt.Sprintf("instance %s (%s): database host %s, but no hypervisor lists it", i.ID, i.Name, i.Host))
		case hv != i.Host:
			out.Mismatches = append(out.Mismatches, fmt.Sprintf("instance %s (%s): database host %s, hypervisor %s lists it", i.ID, i.Name, i.Host, hv))
		}
	}
	return out, nil
}

// OutageStartInstance brings one instance that ran before back to running: SHUTOFF is started;
// ACTIVE with a hypervisor that lost it (power state not running, or its host came back from the
// outage: Recreate) is hard-rebooted, which recreates the guest; ACTIVE and running on a host that
// stayed up is left alone. A start or reboot under way (a retried call) is waited for; any other
// task is left alone. It waits until Nova reports it ACTIVE with no task.
func (o *Outage) OutageStartInstance(ctx context.Context, req OutageInstanceRequest) (OutageInstanceResult, error) {
	id := req.ID
	if o.Clients == nil {
		return OutageInstanceResult{}, temporal.NewNonRetryableApplicationError("OpenStack is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	cl, err := o.Clients(ctx)
	if err != nil {
		return OutageInstanceResult{}, fmt.Errorf("cannot authenticate: %w", err)
	}
	s, err := cl.GetServer(ctx, id)
	if err != nil {
		return OutageInstanceResult{}, err
	}
	// FirstStart reaches a retry in the heartbeat, recorded before any request: a start or
	// reboot whose answer was lost is then found in the action log, not sent a second time.
	var hb struct {
		FirstStart time.Time `json:"first_start"`
	}
	resumed := activity.HasHeartbeatDetails(ctx) // an earlier attempt may have asked
	if resumed {
		_ = activity.GetHeartbeatDetails(ctx, &hb)
	}
	if hb.FirstStart.IsZero() {
		hb.FirstStart = time.Now()
	}
	activity.RecordHeartbeat(ctx, hb)
	res := OutageInstanceResult{ID: id, Action: "already-up"}
	var asked string
	if resumed && s.TaskState == "" && (s.Status == "ACTIVE" || s.Status == "SHUTOFF") {
		if asked, err = askedSince(ctx, cl, id, hb.FirstStart, "start", "reboot"); err != nil {
			return res, err
		}
	}
	switch {
	case asked != "":
		// This step asked already (an earlier attempt whose answer was lost): follow it.
		res.Action = map[string]string{"start": "start", "reboot": "hard-reboot"}[asked]
	case strings.HasPrefix(s.TaskState, "reboot") || s.TaskState == "powering-on":
		res.Action = "wait"
	case s.TaskState != "":
		// Someone (Nova, an operator) is acting on it: do not act on top of that.
		res.Action, res.Status, res.Power = "busy (task "+s.TaskState+")", s.Status, s.PowerState
		return res, nil
	case s.Status == "ACTIVE" && s.PowerState == PowerRunning && !req.Recreate:
	case s.Status == "SHUTOFF":
		res.Action = "start"
		if err := cl.ServerPowerAction(ctx, id, openstack.PowerStart); err != nil {
			return res, err
		}
	case s.Status == "ACTIVE":
		res.Action = "hard-reboot"
		if err := cl.RebootServer(ctx, id, openstack.RebootOpts{Hard: true}); err != nil {
			return res, err
		}
	default:
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("instance %s is %s (vm_state %s): not started", id, s.Status, s.VMState), ErrTypeRefused, nil)
	}
	for {
		if s, err = cl.GetServer(ctx, id); err != nil {
			return res, err
		}
		res.Status, res.Power = s.Status, s.PowerState
		if s.Status == "ACTIVE" && s.TaskState == "" {
			return res, nil
		}
		if s.Status == "ERROR" {
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("instance %s went to ERROR: %s", id, s.Fault), ErrTypeRefused, nil)
		}
		activity.RecordHeartbeat(ctx, hb)
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("instance %s is %s (task %s), not ACTIVE yet", id, s.Status, s.TaskState)
		case <-time.After(o.poll()):
		}
	}
}

// askedSince returns the first of actions that the server's action log shows started at or after
// since (less a minute of clock skew between the worker and Nova), or "".
func askedSince(ctx context.Context, cl *openstack.Clients, id string, since time.Time, actions ...string) (string, error) {
	log, err := cl.InstanceActions(ctx, id)
	if err != nil {
		return "", err
	}
	for _, a := range log {
		if slices.Contains(actions, a.Action) && !a.StartTime.Before(since.Add(-time.Minute)) {
			return a.Action, nil
		}
	}
	return "", nil
}
