// Package audit records every activity the worker runs (which workflow, which activity, which
// attempt, how long, with what result) as JSON lines, and counts them for the /metrics endpoint.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
)

// Record is one line of the audit log.
type Record struct {
	Time       time.Time `json:"time"`
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id"`
	Workflow   string    `json:"workflow"`
	Activity   string    `json:"activity"`
	Attempt    int32     `json:"attempt"`
	DurationMS int64     `json:"duration_ms"`
	Result     string    `json:"result"`
	Error      string    `json:"error,omitempty"`
	// ErrorType is the application error's type (temporal.NewApplicationError's, the stable
	// names such as HostKeyMismatch), "Canceled", or "untyped" for a plain Go error.
	ErrorType string `json:"error_type,omitempty"`
}

// Log writes records and keeps counters. It is safe for concurrent use.
type Log struct {
	mu       sync.Mutex
	w        io.Writer
	counts   map[[2]string]int64 // activity, result -> count
	failures map[[2]string]int64 // activity, error type -> count
	seconds  map[string]float64  // activity -> total seconds
}

// New returns a Log writing to w (nil: counters only).
func New(w io.Writer) *Log {
	return &Log{w: w, counts: map[[2]string]int64{}, failures: map[[2]string]int64{}, seconds: map[string]float64{}}
}

// Add writes one record.
func (l *Log) Add(r Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[[2]string{r.Activity, r.Result}]++
	if r.Result == "error" {
		l.failures[[2]string{r.Activity, r.ErrorType}]++
	}
	l.seconds[r.Activity] += float64(r.DurationMS) / 1000
	if l.w != nil {
		b, _ := json.Marshal(r)
		_, _ = l.w.Write(append(b, '\n'))
	}
}

// ServeHTTP answers Prometheus' text format.
func (l *Log) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = io.WriteString(w, l.Metrics())
}

// Metrics returns the counters in Prometheus' text format.
func (l *Log) Metrics() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	pairs := func(name, help, l1, l2 string, m map[[2]string]int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
		keys := make([][2]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i][0]+"\x00"+keys[i][1] < keys[j][0]+"\x00"+keys[j][1] })
		for _, k := range keys {
			fmt.Fprintf(&b, "%s{%s=%q,%s=%q} %d\n", name, l1, k[0], l2, k[1], m[k])
		}
	}
	pairs("stackrun_activities_total", "Activities run by this worker, by type and result.", "activity", "result", l.counts)
	pairs("stackrun_activity_failures_total", "Failed activity attempts of this worker, by activity and error type.", "activity", "error_type", l.failures)
	b.WriteString("# HELP stackrun_activity_seconds_total Time spent in activities, by type.\n# TYPE stackrun_activity_seconds_total counter\n")
	names := make([]string, 0, len(l.seconds))
	for k := range l.seconds {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "stackrun_activity_seconds_total{activity=%q} %g\n", n, l.seconds[n])
	}
	return b.String()
}

// ErrorType classifies an activity's error for the failure counters.
func ErrorType(ctx context.Context, err error) string {
	var app *temporal.ApplicationError
	switch {
	case errors.As(err, &app) && app.Type() != "":
		return app.Type()
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return "Canceled"
	}
	return "untyped"
}

// Interceptor returns a worker interceptor that records every activity in l.
func (l *Log) Interceptor() interceptor.WorkerInterceptor { return &workerInterceptor{log: l} }

type workerInterceptor struct {
	interceptor.WorkerInterceptorBase
	log *Log
}

func (w *workerInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &activityInbound{log: w.log}
	i.Next = next
	return i
}

type activityInbound struct {
	interceptor.ActivityInboundInterceptorBase
	log *Log
}

func (a *activityInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	start := time.Now()
	res, err := a.Next.ExecuteActivity(ctx, in)
	info := activity.GetInfo(ctx)
	r := Record{Time: start.UTC(), WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		Workflow: info.WorkflowType.Name, Activity: info.ActivityType.Name, Attempt: info.Attempt,
		DurationMS: time.Since(start).Milliseconds(), Result: "ok"}
	if err != nil {
		r.Result, r.Error, r.ErrorType = "error", err.Error(), ErrorType(ctx, err)
	}
	a.log.Add(r)
	return res, err
}
