// Command worker is the crash matrix's worker (tests/crash): Stackrun's workflows with mocked
// activities, in a process of its own so that the harness's crash is a real SIGKILL. The mocked
// activities keep the "world" and count their side effects in a store on disk that outlives the
// process, and check it before they act, as the real activities check the real world.
//
// Environment: CRASH_HOSTPORT, CRASH_TASK_QUEUE, CRASH_LEASE_QUEUE, CRASH_STORE (a directory),
// CRASH_CONFIG (JSON: policy and key policy), CRASH_HOSTS (the compute hosts, the first emptied),
// CRASH_INSTANCE_STATUS (the instances' status until started, default ACTIVE), CRASH_DEAD (set:
// the first host died, for recover-host), CRASH_AT ("Activity#n", the n-th first attempt of
// that activity in this process) and CRASH_WHEN (start: before the activity acts; end: after it
// acted, before its result is reported).
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/infra/keepalive"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/workflows"
)

// Config is what the harness gives every worker.
type Config struct {
	Policy policy.Policy `json:"policy"`
	Keys   trust.Policy  `json:"keys"`
}

func main() {
	b, err := os.ReadFile(os.Getenv("CRASH_CONFIG"))
	if err != nil {
		log.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		log.Fatal(err)
	}
	// CRASH_HISTORY_BUDGET: policy.history_budget (1: a run in steps continues as new between
	// every two steps, so that the matrix crashes it around its continue-as-new).
	if n, err := strconv.Atoi(os.Getenv("CRASH_HISTORY_BUDGET")); err == nil {
		cfg.Policy.HistoryBudget = n
	}
	st := &Store{Dir: os.Getenv("CRASH_STORE")}
	// CRASH_SCALE=N: the largest plans (history_test.go): N instances, N computes upgraded, N
	// hosts probed and diagnosed, N Swift nodes; and activities answer at once.
	if n, _ := strconv.Atoi(os.Getenv("CRASH_SCALE")); n > 0 {
		scale, work = n, 0
		instances = nil
		for i := range n {
			instances = append(instances, fmt.Sprintf("vm-%d", i+1))
		}
	}
	c, err := client.Dial(client.Options{HostPort: os.Getenv("CRASH_HOSTPORT"),
		Logger: tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	crash := &crasher{store: st, at: os.Getenv("CRASH_AT"), when: os.Getenv("CRASH_WHEN"), seen: map[string]int{}}
	w := worker.New(c, os.Getenv("CRASH_TASK_QUEUE"), worker.Options{
		// The real worker's keepalive (what makes a crash cost seconds), then the crash point.
		Interceptors: []interceptor.WorkerInterceptor{keepalive.Interceptor(0), crash},
	})
	workflows.Register(w)
	w.RegisterActivity(&activities.Machine{Policy: cfg.Policy, Keys: func() (trust.Policy, error) { return cfg.Keys, nil }})
	registerLease(w, &activities.Lease{Client: c, TaskQueue: os.Getenv("CRASH_LEASE_QUEUE")}, os.Getenv("CRASH_TASK_QUEUE"))
	hostList := strings.Split(os.Getenv("CRASH_HOSTS"), ",")
	// CRASH_WAVE_INSTANCES=k with CRASH_SCALE=N (rolling-maintenance's largest wave,
	// history_test.go): N compute hosts (the first of CRASH_HOSTS, then HOST-t1..HOST-t<N-1}),
	// k instances at home on each (vm-<i>-<j>) instead of CRASH_SCALE's instances on the first.
	if k, _ := strconv.Atoi(os.Getenv("CRASH_WAVE_INSTANCES")); k > 0 && scale > 0 {
		hostList = waveWorld(hostList[0], scale, k)
	}
	registerMocks(w, st)
	registerCompute(w, st, hostList, os.Getenv("CRASH_INSTANCE_STATUS"), os.Getenv("CRASH_DEAD") != "")
	registerChecks(w, st)
	registerSwift(w, st, hostList[0])
	registerInspector(w, st, hostList[0])
	registerUpgrade(w, st, hostList[0])
	registerOutage(w, st, hostList[0])
	if err := w.Run(worker.InterruptCh()); err != nil {
		log.Fatal(err)
	}
}

// registerLease registers the real lease activities, with the cloud-wide locks (a lease
// workflow of their own, stackrun/lock/<name>) scoped to this run's task queue: every crashed
// run stands for a cloud of its own (its hosts are named after it too), so that the runs of
// the matrix, which go at once, do not queue for one swift-ring lock. Host leases need no
// scoping: the hosts' names differ.
func registerLease(w worker.Worker, l *activities.Lease, scope string) {
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	scoped := func(id string) string {
		if strings.HasPrefix(id, "stackrun/lock/") {
			return id + "@" + scope
		}
		return id
	}
	reg("RequestLease", func(ctx context.Context, req activities.LeaseRequest) error {
		req.Lease = scoped(req.Lease)
		return l.RequestLease(ctx, req)
	})
	reg("ReleaseLease", func(ctx context.Context, req activities.LeaseRequest) error {
		req.Lease = scoped(req.Lease)
		return l.ReleaseLease(ctx, req)
	})
	reg("Holds", func(ctx context.Context, c activities.LeaseCheck) (bool, error) {
		c.Lease = scoped(c.Lease)
		return l.Holds(ctx, c)
	})
	reg("StillRunning", l.StillRunning)
	reg("Wants", l.Wants)
	reg("ClaimStartNonce", l.ClaimStartNonce)
}

// crasher records every activity attempt the worker starts and kills the process at CRASH_AT.
type crasher struct {
	interceptor.WorkerInterceptorBase
	store    *Store
	at, when string
	mu       sync.Mutex
	seen     map[string]int
}

func (c *crasher) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &crashInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, c: c}
}

type crashInbound struct {
	interceptor.ActivityInboundInterceptorBase
	c *crasher
}

func (a *crashInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	if info.IsLocalActivity {
		// Local activities run inside a workflow task: not a boundary of their own.
		return a.Next.ExecuteActivity(ctx, in)
	}
	// A boundary is the n-th first attempt of an activity type: the same in every run, whatever
	// runs beside it (notifications run concurrently).
	name := info.ActivityType.Name
	a.c.mu.Lock()
	boundary := ""
	if info.Attempt == 1 {
		a.c.seen[name]++
		boundary = fmt.Sprintf("%s#%d", name, a.c.seen[name])
	}
	a.c.mu.Unlock()
	// The work's identity (type and arguments): a step the workflow schedules again after its
	// attempts ran out is a new activity ID doing the same work.
	work := fmt.Sprintf("%s:%x", name, sha256.Sum256([]byte(fmt.Sprintf("%v", in.Args))))[:len(name)+13]
	a.c.store.Append("starts.log", fmt.Sprintf("%d %s %s %d %s %s", time.Now().UnixMilli(), info.WorkflowExecution.ID, info.ActivityID, info.Attempt, orDash(boundary), work))
	if boundary != "" && boundary == a.c.at && a.c.when == "start" {
		a.c.kill(boundary)
	}
	res, err := a.Next.ExecuteActivity(ctx, in)
	if boundary != "" && boundary == a.c.at && a.c.when == "end" {
		a.c.kill(boundary)
	}
	return res, err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// kill writes when the crash happened, then SIGKILLs this process: no deferred call, no
// graceful stop, the server learns of it only through timeouts.
func (c *crasher) kill(boundary string) {
	c.store.Append("crash.log", fmt.Sprintf("%d %s %s", time.Now().UnixMilli(), boundary, c.when))
	// Die holding the store: an activity running beside this one (a fan-out's other push) is
	// then either done with its Act or not begun, never half-way (the world changed, the
	// effect not logged: its retry finds nothing to do and the effect looks lost).
	c.store.mu.Lock()
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// Store is the mocked world: key/value state and an effects log, in files, under a lock. The
// state is a journal (world.log, one JSON [key, value] line per change) that each process reads
// once and then follows from where it stopped: a read costs nothing more as the world grows
// (2,000 computes: some 8,000 keys; the whole state re-read and rewritten at every activity
// took minutes of the history test's CPU). Nothing is fsynced: the crash is a SIGKILL, which
// loses no write the process made (the kernel has it), and the lock makes every Act whole.
type Store struct {
	Dir string
	mu  sync.Mutex
	// world is the journal read so far, up to offset.
	world  map[string]string
	offset int64
}

func (s *Store) locked(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(s.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		log.Fatal(err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	s.follow()
	fn()
}

// Append adds one line to a log file of the store.
func (s *Store) Append(file, line string) {
	s.locked(func() { appendLine(filepath.Join(s.Dir, file), line) })
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, line); err != nil {
		log.Fatal(err)
	}
}

// Act reads the world's value for key; when want differs, it sets it and records the effect.
// It reports whether it acted. The check and the act are one step under the lock.
func (s *Store) Act(key, want, effect string) bool {
	acted := false
	s.locked(func() {
		if s.world[key] == want {
			return
		}
		b, _ := json.Marshal([2]string{key, want})
		appendLine(filepath.Join(s.Dir, "world.log"), string(b))
		s.follow()
		appendLine(filepath.Join(s.Dir, "effects.log"), effect)
		acted = true
	})
	return acted
}

// ActLogged is Act that, when it acts, also sets logKey to logValue in the same step (the
// record a real system keeps of the act, e.g. Nova's instance action log).
func (s *Store) ActLogged(key, want, effect, logKey, logValue string) bool {
	acted := false
	s.locked(func() {
		if s.world[key] == want {
			return
		}
		for _, kv := range [][2]string{{logKey, logValue}, {key, want}} {
			b, _ := json.Marshal(kv)
			appendLine(filepath.Join(s.Dir, "world.log"), string(b))
		}
		s.follow()
		appendLine(filepath.Join(s.Dir, "effects.log"), effect)
		acted = true
	})
	return acted
}

// Set sets key to value in the world, with no effect: what a side effect leaves besides it (a
// service's last report to Nova when it stopped).
func (s *Store) Set(key, value string) {
	s.locked(func() {
		b, _ := json.Marshal([2]string{key, value})
		appendLine(filepath.Join(s.Dir, "world.log"), string(b))
		s.follow()
	})
}

// Get reads the world's value for key.
func (s *Store) Get(key string) string {
	var v string
	s.locked(func() { v = s.world[key] })
	return v
}

// follow reads the journal's lines written since the last read (by this process or another:
// the worker started after a crash reads it from the start). Under the lock.
func (s *Store) follow() {
	if s.world == nil {
		s.world = map[string]string{}
	}
	f, err := os.Open(filepath.Join(s.Dir, "world.log"))
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(s.offset, io.SeekStart); err != nil {
		log.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		log.Fatal(err)
	}
	for len(b) > 0 {
		n := bytes.IndexByte(b, '\n')
		if n < 0 {
			break // never: a line is written whole under the lock
		}
		var kv [2]string
		if err := json.Unmarshal(b[:n], &kv); err != nil {
			log.Fatalf("world.log at %d: %v", s.offset, err)
		}
		s.world[kv[0]] = kv[1]
		s.offset += int64(n + 1)
		b = b[n+1:]
	}
}
