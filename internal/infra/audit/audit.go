// Package audit records every activity the worker runs (which workflow, which activity, which
// attempt, how long, with what result) as JSON lines, and counts them for the /metrics endpoint.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
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
}

// Log writes records and keeps counters. It is safe for concurrent use.
type Log struct {
	mu      sync.Mutex
	w       io.Writer
	counts  map[[2]string]int64 // activity, result -> count
	seconds map[string]float64  // activity -> total seconds
}

// New returns a Log writing to w (nil: counters only).
func New(w io.Writer) *Log {
	return &Log{w: w, counts: map[[2]string]int64{}, seconds: map[string]float64{}}
}

// Add writes one record.
func (l *Log) Add(r Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[[2]string{r.Activity, r.Result}]++
	l.seconds[r.Activity] += float64(r.DurationMS) / 1000
	if l.w != nil {
		b, _ := json.Marshal(r)
		_, _ = l.w.Write(append(b, '\n'))
	}
}

// ServeHTTP answers Prometheus' text format.
func (l *Log) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	var b strings.Builder
	b.WriteString("# HELP stackrun_activities_total Activities run by this worker, by type and result.\n# TYPE stackrun_activities_total counter\n")
	keys := make([][2]string, 0, len(l.counts))
	for k := range l.counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		fmt.Fprintf(&b, "stackrun_activities_total{activity=%q,result=%q} %d\n", k[0], k[1], l.counts[k])
	}
	b.WriteString("# HELP stackrun_activity_seconds_total Time spent in activities, by type.\n# TYPE stackrun_activity_seconds_total counter\n")
	names := make([]string, 0, len(l.seconds))
	for k := range l.seconds {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "stackrun_activity_seconds_total{activity=%q} %g\n", n, l.seconds[n])
	}
	_, _ = io.WriteString(w, b.String())
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
		r.Result, r.Error = "error", err.Error()
	}
	a.log.Add(r)
	return res, err
}
