// Command stackrun-worker runs Stackrun's workflows and activities: it dials Temporal, builds the
// activities from configuration, registers everything and runs until interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/app/runmetrics"
	"github.com/stackrun/stackrun/internal/app/workerapp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "stackrun-worker:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := pflag.NewFlagSet("stackrun-worker", pflag.ContinueOnError)
	config.BindFlags(fs)
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, `stackrun-worker runs Stackrun's runbooks (workflows and activities) for one task queue.

Usage:
  stackrun-worker [flags]

Configuration comes from the file (--config, $STACKRUN_CONFIG, ./stackrun.yaml,
~/.config/stackrun/stackrun.yaml), STACKRUN_* variables and these flags; see
stackrun.example.yaml. The worker needs the SSH key and known_hosts of the config.

Flags:
%s`, fs.FlagUsages())
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)

	cfg, err := config.Load(config.LoadOptions{Flags: fs})
	if err != nil {
		return err
	}
	if err := cfg.ValidateFor(config.ForWorker); err != nil {
		return err
	}
	host, _ := os.Hostname()
	c, err := control.Dial(cfg, control.DialOptions{Identity: fmt.Sprintf("stackrun-worker@%s/%d", host, os.Getpid()), Logger: log})
	if err != nil {
		return err
	}
	defer c.Close()
	app, err := workerapp.New(c, cfg, log)
	if err != nil {
		return err
	}
	defer app.Close()

	if cfg.Worker.MetricsAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", runmetrics.New(runmetrics.Options{Client: c, TaskQueue: cfg.Temporal.TaskQueue,
			Audit: app.Audit, Pool: app.Pool.Stats}))
		srv := &http.Server{Addr: cfg.Worker.MetricsAddress, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "error", err)
			}
		}()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}()
	}
	log.Info("worker starting", "temporal", cfg.Temporal.Address, "namespace", cfg.Temporal.Namespace,
		"task_queue", cfg.Temporal.TaskQueue, "config", cfg.File, "hosts", len(cfg.Inventory))
	stop := make(chan any)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		log.Info("stopping worker")
		close(stop)
	}()
	return app.Worker.Run(stop)
}
