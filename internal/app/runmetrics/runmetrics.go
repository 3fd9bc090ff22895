// Package runmetrics answers a worker's /metrics in Prometheus' text format: the runs of its
// namespace and task queue (open runs by runbook and status, closed runs by status, gates
// waiting and for how long, stalled steps and for how long), its activities (the audit
// counters, failures by error type) and its SSH pool.
//
// The run figures come from Temporal (visibility, and the status query of each run that waits at
// a gate or is stalled), so every worker of a task queue reports the same ones: aggregate them
// with max, not sum (docs/production.md, "Metrics").
//
//	h := runmetrics.New(runmetrics.Options{Client: c, TaskQueue: "stackrun", Audit: app.Audit, Pool: app.Pool.Stats})
//	mux.Handle("/metrics", h)
package runmetrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/audit"
	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/workflows"
)

// Options configure a Handler.
type Options struct {
	// Client reaches Temporal (the worker's own client).
	Client client.Client
	// TaskQueue limits the run figures to this task queue's runs.
	TaskQueue string
	// Audit and Pool are the worker's; either may be nil.
	Audit *audit.Log
	Pool  func() remote.Stats
	// TTL is how long one snapshot of the runs is served (default 10 s), so that scrapes
	// from several Prometheus servers cost one set of queries.
	TTL time.Duration
	// MaxQueried bounds the status queries of one snapshot (default 200 runs); beyond that,
	// waiting and stalled runs are counted but their ages are not reported.
	MaxQueried int
	// Timeout bounds one snapshot (default 10 s).
	Timeout time.Duration
	// Now is the clock the ages are measured with (default time.Now).
	Now func() time.Time
}

// Handler serves /metrics.
type Handler struct {
	o    Options
	mu   sync.Mutex
	at   time.Time
	snap string
}

// New returns a Handler.
func New(o Options) *Handler {
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.MaxQueried <= 0 {
		o.MaxQueried = 200
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{o: o}
}

// ServeHTTP writes the metrics.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	var b strings.Builder
	if h.o.Audit != nil {
		b.WriteString(h.o.Audit.Metrics())
	}
	if h.o.Pool != nil {
		s := h.o.Pool()
		gauge(&b, "stackrun_ssh_connections_open", "SSH connections this worker's pool holds open.", float64(s.Open))
		counter(&b, "stackrun_ssh_dials_total", "TCP connections the SSH pool attempted.", float64(s.Dials))
		counter(&b, "stackrun_ssh_connects_total", "SSH connections the pool established (handshakes).", float64(s.Connects))
		counter(&b, "stackrun_ssh_reconnects_total", "SSH connections replaced because they had died.", float64(s.Reconnects))
	}
	if h.o.Client != nil {
		b.WriteString(h.runs(r.Context()))
	}
	_, _ = io.WriteString(w, b.String())
}

// runs returns the run figures, from the cached snapshot when it is fresh.
func (h *Handler) runs(ctx context.Context) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.snap != "" && time.Since(h.at) < h.o.TTL {
		return h.snap
	}
	ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
	defer cancel()
	h.snap, h.at = h.collect(ctx, h.o.Now()), time.Now()
	return h.snap
}

type openRun struct {
	id, runbook, status string
}

func (h *Handler) collect(ctx context.Context, now time.Time) string {
	var b strings.Builder
	q := "ExecutionStatus = 'Running'" + h.queueClause()
	open, err := h.list(ctx, q)
	ok := 1.0
	if err != nil {
		ok = 0
	}
	gauge(&b, "stackrun_runs_up", "1 when the last look at Temporal's runs succeeded.", ok)
	if err != nil {
		return b.String()
	}

	byStatus := map[[2]string]int{}
	var waiting, stalled []openRun
	for _, r := range open {
		if r.status == "" {
			continue // not a runbook (the lease workflow, or a run that has not begun)
		}
		byStatus[[2]string{r.runbook, r.status}]++
		switch workflows.RunStatus(r.status) {
		case workflows.StatusWaitingApproval:
			waiting = append(waiting, r)
		case workflows.StatusStalled:
			stalled = append(stalled, r)
		}
	}
	header(&b, "stackrun_runs_open", "Open runs, by runbook and RunbookStatus.", "gauge")
	for _, k := range sortedKeys(byStatus) {
		fmt.Fprintf(&b, "stackrun_runs_open{runbook=%q,status=%q} %d\n", k[0], k[1], byStatus[k])
	}

	header(&b, "stackrun_runs_closed", "Closed runs still in Temporal's retention, by RunbookStatus.", "gauge")
	for _, st := range []workflows.RunStatus{workflows.StatusCompleted, workflows.StatusFailed, workflows.StatusAborted} {
		cq := "ExecutionStatus != 'Running' AND " + workflows.AttrStatus.GetName() + " = '" + string(st) + "'" + h.queueClause()
		resp, err := h.o.Client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: cq})
		if err == nil {
			fmt.Fprintf(&b, "stackrun_runs_closed{status=%q} %d\n", st, resp.GetCount())
		}
	}

	// Gates and stalled steps: how long, from each run's own status.
	queried := 0
	header(&b, "stackrun_gate_waiting_seconds", "How long each open gate has waited for a decision.", "gauge")
	gates := map[string]int{}
	for _, r := range waiting {
		gates[r.runbook]++
		if queried >= h.o.MaxQueried {
			continue
		}
		queried++
		st, err := control.Status(ctx, h.o.Client, r.id)
		if err != nil {
			continue
		}
		for _, g := range st.OpenGates {
			fmt.Fprintf(&b, "stackrun_gate_waiting_seconds{runbook=%q,workflow_id=%q,gate=%q} %.0f\n", r.runbook, r.id, g.Name, now.Sub(g.OpenedAt).Seconds())
		}
	}
	header(&b, "stackrun_gates_waiting", "Runs waiting at a gate, by runbook.", "gauge")
	for _, k := range sortedKeys(gates) {
		fmt.Fprintf(&b, "stackrun_gates_waiting{runbook=%q} %d\n", k, gates[k])
	}
	header(&b, "stackrun_step_stalled_seconds", "How long each stalled step has waited for resolve (retry, skip or abort).", "gauge")
	steps := map[string]int{}
	for _, r := range stalled {
		steps[r.runbook]++
		if queried >= h.o.MaxQueried {
			continue
		}
		queried++
		st, err := control.Status(ctx, h.o.Client, r.id)
		if err != nil {
			continue
		}
		for _, s := range st.Stalled {
			fmt.Fprintf(&b, "stackrun_step_stalled_seconds{runbook=%q,workflow_id=%q,step=%q} %.0f\n", r.runbook, r.id, s.Step, now.Sub(s.Since).Seconds())
		}
	}
	header(&b, "stackrun_steps_stalled", "Runs with a stalled step, by runbook.", "gauge")
	for _, k := range sortedKeys(steps) {
		fmt.Fprintf(&b, "stackrun_steps_stalled{runbook=%q} %d\n", k, steps[k])
	}
	return b.String()
}

// queueClause limits a query to the task queue. A name that could leave its quotes is not used
// (config does not allow one; this keeps the query well-formed whatever it is given).
func (h *Handler) queueClause() string {
	tq := h.o.TaskQueue
	if tq == "" || strings.ContainsAny(tq, "'\"\\`") {
		return ""
	}
	return " AND TaskQueue = '" + tq + "'"
}

// list pages through the visibility query (at most 10,000 runs).
func (h *Handler) list(ctx context.Context, q string) ([]openRun, error) {
	var out []openRun
	var token []byte
	for len(out) < 10000 {
		resp, err := h.o.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: 1000, NextPageToken: token})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetExecutions() {
			rb := control.RunbookName(e.GetType().GetName())
			if rb == "" {
				rb = e.GetType().GetName()
			}
			out = append(out, openRun{id: e.GetExecution().GetWorkflowId(), runbook: rb,
				status: keyword(e.GetSearchAttributes(), workflows.AttrStatus.GetName())})
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	return out, nil
}

func keyword(sa *commonpb.SearchAttributes, name string) string {
	p, ok := sa.GetIndexedFields()[name]
	if !ok || p == nil {
		return ""
	}
	var s string
	if converter.GetDefaultDataConverter().FromPayload(p, &s) == nil {
		return s
	}
	var list []string
	if converter.GetDefaultDataConverter().FromPayload(p, &list) == nil && len(list) > 0 {
		return list[0]
	}
	return ""
}

func header(b *strings.Builder, name, help, typ string) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func gauge(b *strings.Builder, name, help string, v float64) {
	header(b, name, help, "gauge")
	fmt.Fprintf(b, "%s %g\n", name, v)
}

func counter(b *strings.Builder, name, help string, v float64) {
	header(b, name, help, "counter")
	fmt.Fprintf(b, "%s %g\n", name, v)
}

func sortedKeys[K interface{ ~string | ~[2]string }, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	return keys
}
