package faultproxy

// The proxy's part of the reliability table (tests/crash/results: the format): faults injected
// and activity retries per runbook, told apart by the header the worker's OpenStack client puts on
// every request an activity makes (internal/infra/openstack.ActivityHeader).

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/stackrun/stackrun/tests/crash/results"
)

// ActivityHeader is internal/infra/openstack.ActivityHeader (a test checks they agree; the test
// environment does not import the production client).
const ActivityHeader = "X-Stackrun-Activity"

// RunbookStats are one runbook's figures.
type RunbookStats struct {
	Requests int // requests its activities made
	Faults   int // of those, faulted
	Retries  int // activity attempts after the first that reached the proxy (one per attempt)
}

// runbookOf names the runbook of a workflow type: its CLI word, the type's words joined by '-'
// (workflows.TypeName the other way round; a test checks every runbook). The package cannot
// import workflows: the OpenStack client's tests use the proxy.
func runbookOf(typ string) string {
	if n, ok := formerly[typ]; ok {
		return n
	}
	var b strings.Builder
	for i, c := range typ {
		if unicode.IsUpper(c) {
			if i > 0 {
				b.WriteByte('-')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

// formerly are the runbooks' former workflow types (workflows: Formerly).
var formerly = map[string]string{"ComputeEvacuation": "evacuate", "HostFailureRecovery": "recover-host",
	"SwiftDiskReplacement": "swift-disk", "SwiftRingChange": "swift-ring"}

// countRunbook counts r for its runbook and returns it ("" outside an activity). p.mu is held.
func (p *Proxy) countRunbook(r *http.Request) string {
	v, err := url.ParseQuery(r.Header.Get(ActivityHeader))
	if err != nil || v.Get("type") == "" {
		return ""
	}
	rb := runbookOf(v.Get("type"))
	st := p.stats.ByRunbook[rb]
	st.Requests++
	if n, _ := strconv.Atoi(v.Get("attempt")); n > 1 {
		key := v.Get("run") + " " + v.Get("activity") + " " + v.Get("attempt")
		if !p.retried[key] {
			p.retried[key] = true
			st.Retries++
		}
	}
	p.stats.ByRunbook[rb] = st
	return rb
}

// writeResults writes <part>.json into STACKRUN_RELIABILITY_DIR, if set.
func (p *Proxy) writeResults() {
	dir := os.Getenv("STACKRUN_RELIABILITY_DIR")
	if dir == "" || p.part == "-" {
		return
	}
	st := p.Stats()
	f := Results(p.part, p.opts, st, time.Now().UTC())
	if err := results.Write(dir, f); err != nil {
		fmt.Fprintf(os.Stderr, "faultproxy: reliability results: %v\n", err)
	}
}

// Results is the proxy's results file: a row per runbook that made requests, with the faults its
// requests met and its activities' retries.
func Results(part string, opts Options, st Stats, at time.Time) results.File {
	f := results.File{Part: part, Measured: at, Mode: fmt.Sprintf("sample, rate %g seed %d", opts.Rate, opts.Seed)}
	names := make([]string, 0, len(st.ByRunbook))
	for n := range st.ByRunbook {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := st.ByRunbook[n]
		f.Rows = append(f.Rows, results.Row{Runbook: n, FaultsInjected: results.Int(s.Faults), Retries: results.Int(s.Retries)})
	}
	if f.Rows == nil {
		f.Rows = []results.Row{}
	}
	return f
}

var (
	partsMu sync.Mutex
	parts   = map[string]int{} // part names given out in this process
)

var testFunc = regexp.MustCompile(`\.(Test[A-Za-z0-9_]*)(\.func[0-9.]+)?$`)

// partName is opts.Part, or "faults-" and the test function on the caller's stack ("-" with
// Force); a second proxy of the same test gets "-2", and so on.
func partName(opts Options, skip int) string {
	if opts.Part != "" {
		return opts.Part
	}
	if len(opts.Force) > 0 {
		return "-"
	}
	name := "faults-proxy"
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(skip+1, pcs)])
	for {
		fr, more := frames.Next()
		if m := testFunc.FindStringSubmatch(fr.Function); m != nil && !strings.HasPrefix(fr.Function, "testing.") {
			name = "faults-" + m[1]
			break
		}
		if !more {
			break
		}
	}
	partsMu.Lock()
	defer partsMu.Unlock()
	parts[name]++
	if n := parts[name]; n > 1 {
		name = fmt.Sprintf("%s-%d", name, n)
	}
	return name
}
