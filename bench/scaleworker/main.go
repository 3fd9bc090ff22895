// Command scaleworker is the scale bench's worker (bench/scale_bench_test.go): the real Stackrun
// worker (workerapp.New: every workflow, the Machine, Lease and Checks activities, the worker
// options and interceptors stackrun-worker runs with) built from a real stackrun.yaml with a
// large inventory, in a process of its own so that the bench measures its CPU and RSS. Only the
// activities that would reach hosts over SSH or the OpenStack APIs are replaced, under their real
// names, by mocks over an in-memory world (like tests/crash/worker): each reads the world before
// it acts, and a short pause stands for the work.
//
// Environment: STACKRUN_CONFIG (the configuration, read as stackrun-worker reads it, with its
// worker.workflow_cache_size), SCALE_FIRST (a file: one line "<unix ns> <workflow ID>
// <activity>" when a run's first host or cloud activity starts).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/app/workerapp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scaleworker:", err)
		os.Exit(1)
	}
}

func run() error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := config.Load(config.LoadOptions{})
	if err != nil {
		return err
	}
	if err := cfg.ValidateFor(config.ForWorker); err != nil {
		return err
	}
	c, err := control.Dial(cfg, control.DialOptions{Identity: fmt.Sprintf("scaleworker/%d", os.Getpid()), Logger: log})
	if err != nil {
		return err
	}
	defer c.Close()
	app, err := workerapp.New(c, cfg, log)
	if err != nil {
		return err
	}
	defer app.Close()
	first, err := newFirstLog(os.Getenv("SCALE_FIRST"))
	if err != nil {
		return err
	}
	registerMocks(app.Worker, newWorld(cfg), first)

	stop := make(chan any)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		close(stop)
	}()
	return app.Worker.Run(stop)
}

// firstLog records the first mocked activity of every run: the moment the run's first step
// reaches the world.
type firstLog struct {
	mu   sync.Mutex
	seen map[string]bool
	f    *os.File
}

func newFirstLog(path string) (*firstLog, error) {
	l := &firstLog{seen: map[string]bool{}}
	if path == "" {
		return l, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("SCALE_FIRST: %w", err)
	}
	l.f = f
	return l, nil
}

func (l *firstLog) note(ctx context.Context) {
	info := activity.GetInfo(ctx)
	id := info.WorkflowExecution.ID
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[id] || l.f == nil {
		return
	}
	l.seen[id] = true
	fmt.Fprintf(l.f, "%d %s %s\n", time.Now().UnixNano(), id, info.ActivityType.Name)
}

// register re-registers fn under the real activity's name (the mock replaces it).
func register(w worker.Worker, name string, fn any) {
	w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name, DisableAlreadyRegisteredCheck: true})
}
