package checks

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ProbeRun records one probe of a check: which, on what, whether it answered.
type ProbeRun struct {
	Name     string        `json:"name"`
	Target   string        `json:"target,omitempty"`
	OK       bool          `json:"ok"`
	Error    string        `json:"error,omitempty"`
	Summary  string        `json:"summary,omitempty"`
	Duration time.Duration `json:"duration"`
}

// Report is one check run's report, as stored and as rendered.
type Report struct {
	Cadence     string     `json:"cadence"`
	WorkflowID  string     `json:"workflow_id"`
	RunID       string     `json:"run_id"`
	RequestedBy string     `json:"requested_by"`
	Started     time.Time  `json:"started"`
	Ended       time.Time  `json:"ended"`
	Summary     string     `json:"summary"`
	Findings    []Finding  `json:"findings"`
	Metrics     []Metric   `json:"metrics,omitempty"`
	Probes      []ProbeRun `json:"probes"`
	// Previous is when the previous run of this cadence ended (nil: none stored).
	Previous *time.Time `json:"previous,omitempty"`
	// Stored says whether the report went to the reports database.
	Stored bool `json:"stored"`
}

// Counts returns the number of critical, warning and info findings.
func (r *Report) Counts() (crit, warn, info int) {
	for _, f := range r.Findings {
		switch f.Severity {
		case Critical:
			crit++
		case Warning:
			warn++
		default:
			info++
		}
	}
	return
}

// NewCount is how many findings are new since the previous run.
func (r *Report) NewCount() int {
	n := 0
	for _, f := range r.Findings {
		if f.New {
			n++
		}
	}
	return n
}

// SortFindings orders findings by severity (critical first), then probe and subject.
func SortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		if a, b := SeverityRank(fs[i].Severity), SeverityRank(fs[j].Severity); a != b {
			return a > b
		}
		if fs[i].Probe != fs[j].Probe {
			return fs[i].Probe < fs[j].Probe
		}
		return fs[i].Subject < fs[j].Subject
	})
}

// JSON renders the report as indented JSON.
func (r *Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// Markdown renders the report for people (chat, files, the database).
func (r *Report) Markdown() string {
	var b strings.Builder
	crit, warn, info := r.Counts()
	fmt.Fprintf(&b, "# %s check — %s\n\n", r.Cadence, r.Ended.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Run `%s` requested by %s: **%d critical, %d warning, %d info** finding(s)", r.WorkflowID, r.RequestedBy, crit, warn, info)
	if r.Previous != nil {
		fmt.Fprintf(&b, ", %d new since the previous run (%s)", r.NewCount(), r.Previous.UTC().Format(time.RFC3339))
	} else if r.Stored {
		b.WriteString(" (first stored run of this cadence)")
	}
	b.WriteString(".\n\n")
	if r.Summary != "" {
		fmt.Fprintf(&b, "%s\n\n", r.Summary)
	}
	if len(r.Findings) > 0 {
		b.WriteString("## Findings\n\n| severity | new | probe | subject | finding |\n| --- | --- | --- | --- | --- |\n")
		for _, f := range r.Findings {
			n := ""
			if f.New {
				n = "new"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.Severity, n, f.Probe, mdCell(f.Subject), mdCell(f.Message))
		}
		b.WriteString("\n")
	}
	if len(r.Metrics) > 0 {
		b.WriteString("## Measurements\n\n| metric | subject | value | period |\n| --- | --- | --- | --- |\n")
		for _, m := range r.Metrics {
			fmt.Fprintf(&b, "| %s | %s | %.2f %s | %s |\n", m.Name, mdCell(m.Subject), m.Value, m.Unit, m.Period)
		}
		b.WriteString("\n")
	}
	b.WriteString("## Probes\n\n| probe | target | result | time |\n| --- | --- | --- | --- |\n")
	for _, p := range r.Probes {
		res := "ok"
		if !p.OK {
			res = "FAILED: " + p.Error
		} else if p.Summary != "" {
			res = p.Summary
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", p.Name, p.Target, mdCell(res), p.Duration.Round(time.Millisecond))
	}
	return b.String()
}

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
