package activities

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// Runner runs catalogue commands on hosts; *remote.Pool is the real one.
type Runner interface {
	Run(ctx context.Context, h remote.Host, cmd remote.Command) (remote.Result, error)
}

// InventoryHost is one host of the worker's inventory.
type InventoryHost struct {
	Address string
	Port    int
	Roles   []string
	Labels  map[string]string
}

// Hosts runs the host-side checks and actions of the runbooks over SSH. Every command comes from
// the catalogue with validated arguments.
type Hosts struct {
	Inventory map[string]InventoryHost
	// Services lists each role's services.
	Services  map[string][]ServiceFacts
	Runner    Runner
	Catalogue *remote.Catalogue
	// LogLines is how many lines of a log the AMQP check reads (default 5000).
	LogLines int
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Ping pings a management address (tests); nil means the system's ping.
	Ping Pinger
}

func (h *Hosts) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// lookup returns the inventory entry or a non-retryable NotFound error.
func (h *Hosts) lookup(name string) (InventoryHost, remote.Host, error) {
	inv, ok := h.Inventory[name]
	if !ok {
		known := make([]string, 0, len(h.Inventory))
		for k := range h.Inventory {
			known = append(known, k)
		}
		slices.Sort(known)
		return inv, remote.Host{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("host %q is not in the inventory (known: %s)", name, strings.Join(known, ", ")), ErrTypeNotFound, nil)
	}
	return inv, remote.Host{Name: name, Address: inv.Address, Port: inv.Port}, nil
}

// run builds a catalogue command and runs it, mapping errors to Temporal's retry semantics.
func (h *Hosts) run(ctx context.Context, host, role, name string, args map[string]string, list ...string) (remote.Result, error) {
	_, rh, err := h.lookup(host)
	if err != nil {
		return remote.Result{}, err
	}
	if args == nil {
		args = map[string]string{}
	}
	args["host"] = host
	cmd, err := h.Catalogue.Build(name, role, args, list...)
	if err != nil {
		return remote.Result{}, RemoteError(err)
	}
	res, err := h.Runner.Run(ctx, rh, cmd)
	if err != nil {
		return res, RemoteError(fmt.Errorf("%s on %s: %w", name, host, err))
	}
	// Every command's output is read by some parser (a ring's device table, a mount table, df,
	// a log tail); output cut at the SSH layer's limit would be read as if whole, so it is an
	// error for all of them, here where they all pass (non-retryable: raise the limit).
	if err := res.Whole(); err != nil {
		return res, RemoteError(fmt.Errorf("%s on %s: exit %d: %w", name, host, res.ExitCode, err))
	}
	return res, nil
}

// RemoteError maps an internal/infra/remote error to a Temporal application error: host-key and
// argument problems are non-retryable with stable types; connection trouble is retried.
func RemoteError(err error) error {
	if err == nil {
		return nil
	}
	switch remote.ErrorType(err) {
	case remote.TypeHostKeyUnknown, remote.TypeHostKeyMismatch:
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeHostKey, err)
	case remote.TypeInvalidArgument:
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, err)
	}
	if !remote.Retryable(err) {
		return temporal.NewNonRetryableApplicationError(err.Error(), remote.ErrorType(err), err)
	}
	return temporal.NewApplicationError(err.Error(), remote.ErrorType(err), err)
}

// DescribeHost returns what the inventory knows about a host and the services of its roles.
func (h *Hosts) DescribeHost(ctx context.Context, name string) (HostFacts, error) {
	inv, _, err := h.lookup(name)
	if err != nil {
		return HostFacts{}, err
	}
	f := HostFacts{Name: name, Address: inv.Address, Roles: slices.Clone(inv.Roles), Labels: inv.Labels}
	for _, role := range inv.Roles {
		for _, s := range h.Services[role] {
			s.Role = role
			f.Services = append(f.Services, s)
		}
	}
	return f, nil
}

// ServiceStatus asks the host whether a service runs (service_status: exit 0 = running).
func (h *Hosts) ServiceStatus(ctx context.Context, req ServiceRequest) (ServiceState, error) {
	res, err := h.run(ctx, req.Host, req.Role, "service_status", map[string]string{"service": req.Service})
	if err != nil {
		return ServiceState{}, err
	}
	out := strings.TrimSpace(res.Stdout + " " + res.Stderr)
	return ServiceState{Running: res.OK(), Output: out}, nil
}

// SetService starts or stops a service. It checks first, so a retried or replayed call does not
// act twice: starting a running service or stopping a stopped one does nothing.
func (h *Hosts) SetService(ctx context.Context, req ServiceAction) error {
	var want bool
	switch req.Action {
	case "start":
		want = true
	case "stop":
	default:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("action %q: must be start or stop", req.Action), ErrTypeInvalidInput, nil)
	}
	st, err := h.ServiceStatus(ctx, req.ServiceRequest)
	if err != nil {
		return err
	}
	if st.Running == want {
		return nil
	}
	res, err := h.run(ctx, req.Host, req.Role, "service_"+req.Action, map[string]string{"service": req.Service})
	if err != nil {
		return err
	}
	if !res.OK() {
		return fmt.Errorf("%s %s on %s: exit %d: %s", req.Action, req.Service, req.Host, res.ExitCode, strings.TrimSpace(res.Stderr+res.Stdout))
	}
	st, err = h.ServiceStatus(ctx, req.ServiceRequest)
	if err != nil {
		return err
	}
	if st.Running != want {
		return fmt.Errorf("%s %s on %s: command succeeded but the service is %s", req.Action, req.Service, req.Host, map[bool]string{true: "running", false: "not running"}[st.Running])
	}
	return nil
}

// BootTime is the host's boot time from /proc/uptime.
func (h *Hosts) BootTime(ctx context.Context, host string) (time.Time, error) {
	res, err := h.run(ctx, host, "", "uptime", nil)
	if err != nil {
		return time.Time{}, err
	}
	if !res.OK() {
		return time.Time{}, fmt.Errorf("uptime on %s: exit %d: %s", host, res.ExitCode, res.Stderr)
	}
	fields := strings.Fields(res.Stdout)
	if len(fields) == 0 {
		return time.Time{}, fmt.Errorf("uptime on %s: empty answer", host)
	}
	secs, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("uptime on %s: %q: %w", host, fields[0], err)
	}
	return h.now().Add(-time.Duration(secs * float64(time.Second))).Truncate(time.Second), nil
}

var (
	amqpLineRE = regexp.MustCompile(`(?i)\b(re)?connected to AMQP server\b`)
	// oslo.log's default prefix: "2026-11-22 15:01:02.345 12345 INFO ..." (host local time).
	logTimeRE = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(\.\d+)?`)
)

// CheckAMQP reads the tail of a service's log and reports the newest AMQP connection line logged
// at or after Since. Log times are read as UTC, as the services here log.
func (h *Hosts) CheckAMQP(ctx context.Context, req AMQPRequest) (AMQPResult, error) {
	if req.Log == "" {
		return AMQPResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("service %s of role %s has no log configured (roles.%s.services[].log)", req.Service, req.Role, req.Role), ErrTypeInvalidInput, nil)
	}
	lines := h.LogLines
	if lines <= 0 {
		lines = 5000
	}
	res, err := h.run(ctx, req.Host, req.Role, "log_tail", map[string]string{"log": req.Log, "lines": strconv.Itoa(lines), "service": req.Service})
	if errors.Is(err, remote.ErrTruncated) {
		// The SSH layer keeps the first bytes of the tail, so the newest lines are the ones cut:
		// the log cannot answer. The sockets can.
		return h.amqpSockets(ctx, req)
	}
	if err != nil {
		return AMQPResult{}, err
	}
	if !res.OK() {
		return AMQPResult{}, fmt.Errorf("read %s on %s: exit %d: %s", req.Log, req.Host, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	if found := FindAMQPConnection(res.Stdout, req.Since); found.Connected {
		return found, nil
	}
	// oslo.messaging logs its first connection only at DEBUG level, so a quiet log proves
	// nothing: ask the host whether the service's process holds an AMQP connection now.
	return h.amqpSockets(ctx, req)
}

// amqpSockets reports an established TCP connection from the service's main process to an AMQP
// port (5672, or 5671 with TLS): the process is connected to the message queue right now.
func (h *Hosts) amqpSockets(ctx context.Context, req AMQPRequest) (AMQPResult, error) {
	res, err := h.run(ctx, req.Host, req.Role, "service_pid", map[string]string{"service": req.Service})
	if err != nil {
		return AMQPResult{}, err
	}
	pid := strings.TrimSpace(res.Stdout)
	if !res.OK() || pid == "" || pid == "0" {
		return AMQPResult{}, nil // not running: no connection
	}
	// A service that forks workers (cinder-volume, the API servers) talks to the queue from its
	// children: their sockets count too.
	kids, err := h.run(ctx, req.Host, req.Role, "process_children", map[string]string{"pid": pid})
	if err != nil {
		return AMQPResult{}, err
	}
	children := strings.Fields(kids.Stdout)
	res, err = h.run(ctx, req.Host, req.Role, "tcp_established", nil)
	if err != nil {
		return AMQPResult{}, err
	}
	if !res.OK() {
		return AMQPResult{}, fmt.Errorf("list connections on %s: exit %d: %s", req.Host, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	return FindAMQPSocket(res.Stdout, pid, h.now(), children...), nil
}

var ssPIDRE = regexp.MustCompile(`pid=(\d+),`)

// FindAMQPSocket finds, in `ss -H -t -n -p state established` output, a connection of process
// pid (or of one of its children) to an AMQP port.
func FindAMQPSocket(ss, pid string, now time.Time, children ...string) AMQPResult {
	pids := append([]string{pid}, children...)
	for _, line := range strings.Split(ss, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// The peer is address:port; a field without a colon is not an address (a fuzzed "5671").
		peer := f[3]
		colon := strings.LastIndexByte(peer, ':')
		if colon < 0 {
			continue
		}
		port := peer[colon+1:]
		if port != "5672" && port != "5671" {
			continue
		}
		for _, m := range ssPIDRE.FindAllStringSubmatch(line, -1) {
			if slices.Contains(pids, m[1]) {
				who := "pid " + pid
				if m[1] != pid {
					who += " (its child " + m[1] + ")"
				}
				return AMQPResult{Connected: true, At: now, Evidence: EvidenceSocket,
					Line: fmt.Sprintf("%s has an established AMQP connection %s -> %s (seen by ss)", who, f[2], peer)}
			}
		}
	}
	return AMQPResult{}
}

// FindAMQPConnection returns the newest AMQP connection line at or after since.
func FindAMQPConnection(log string, since time.Time) AMQPResult {
	var out AMQPResult
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !amqpLineRE.MatchString(line) {
			continue
		}
		m := logTimeRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ts := strings.Replace(m[1], "T", " ", 1) + m[2]
		at, err := time.Parse("2006-01-02 15:04:05.999999999", ts)
		if err != nil || at.Before(since.Truncate(time.Second)) {
			continue
		}
		if len(line) > 300 {
			line = line[:300]
		}
		out = AMQPResult{Connected: true, At: at, Line: line, Evidence: EvidenceLog}
	}
	return out
}

// errNotConfigured is returned by activities whose dependency the worker was not given.
var errNotConfigured = errors.New("not configured on this worker")
