// Package results is the reliability table's shared format (issue 17): each part of the
// reliability suite — the crash matrix (tests/crash), the fault proxy, the hostile-input corpus —
// writes one JSON file, <part>.json, into one folder (STACKRUN_RELIABILITY_DIR, default
// .state/reliability at the repository's root), and `make reliability` prints one table from all
// of them (tests/crash/table). A part fills only its own columns and leaves the others out
// (null): a column no part filled prints as "-".
//
// The file:
//
//	{"part": "crash", "measured": "2026-12-01T13:40:00Z", "mode": "full",
//	 "rows": [{"runbook": "evacuate", "boundaries_crashed": 36, "runs": 36, "runs_correct": 36,
//	           "side_effects_repeated": 0, "worst_recover_ms": 22900, "retries": 40}]}
//
// Columns (a row per runbook, as its CLI word; a variant in parentheses, "swift-disk (--drain-first)"):
//   - boundaries_crashed, runs, runs_correct, side_effects_repeated, worst_recover_ms: the crash matrix's
//   - retries: activity attempts after the first (the crash matrix counts the retries its crashes
//     caused; the fault proxy adds the retries of the activities whose requests it saw)
//   - faults_injected: the fault proxy's
//   - hostile_refused, hostile_total: the hostile corpus's: inputs refused before any side effect,
//     of those tried (row "chat": whole chat command lines)
//
// The parts and who writes them:
//   - crash.json: tests/crash (make test: a sample; make reliability: every boundary)
//   - hostile.json: tests/hostile, only with STACKRUN_RELIABILITY_DIR set (make reliability)
//   - faults-<Test>.json (faults-<Test>-2.json for a test's second proxy, ...): every fault proxy
//     (internal/testenv/faultproxy) on Close, with STACKRUN_RELIABILITY_DIR set (make
//     reliability-faults): per runbook the faults its activities' requests met and their retries,
//     {"part": "faults-TestEvacuate", "mode": "sample, rate 0.2 seed 1", "rows": [{"runbook":
//     "evacuate", "faults_injected": 7, "retries": 3}]}; a runbook that made no request through
//     the proxy has no row. Whether the test passed is in its log, not here.
//   - faults-api.json, faults-ssh.json: the scripted fault tests (e2e/faults_test.go)
//
// A rerun replaces its part's file; a part no longer run must be removed by hand.
//
// Numbers from several parts add up; worst_recover_ms takes the largest; runs_correct < runs or
// hostile_refused < hostile_total is a failure the table marks. A column no part wrote for a row
// prints "-"; a part that wrote 0 prints 0. A part that names a runbook by its bare word joins the
// runbook's row when the other parts measured exactly one case of it ("check" joins "check
// (daily)"); where there are several ("swift-disk", "swift-disk (--drain-first)"), it joins the
// bare one.
package results

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Row is one runbook's figures from one part; nil is "not measured by this part".
type Row struct {
	Runbook             string `json:"runbook"`
	BoundariesCrashed   *int   `json:"boundaries_crashed,omitempty"`
	Runs                *int   `json:"runs,omitempty"`
	RunsCorrect         *int   `json:"runs_correct,omitempty"`
	SideEffectsRepeated *int   `json:"side_effects_repeated,omitempty"`
	WorstRecoverMS      *int64 `json:"worst_recover_ms,omitempty"`
	Retries             *int   `json:"retries,omitempty"`
	FaultsInjected      *int   `json:"faults_injected,omitempty"`
	HostileRefused      *int   `json:"hostile_refused,omitempty"`
	HostileTotal        *int   `json:"hostile_total,omitempty"`
}

// File is one part's results.
type File struct {
	Part     string    `json:"part"`
	Measured time.Time `json:"measured"`
	Mode     string    `json:"mode,omitempty"` // full | sample
	Rows     []Row     `json:"rows"`
}

// Dir is the results folder: STACKRUN_RELIABILITY_DIR, else <repo>/.state/reliability.
func Dir(repoRoot string) string {
	if d := os.Getenv("STACKRUN_RELIABILITY_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot, ".state", "reliability")
}

// Write writes f as <dir>/<part>.json (atomically: a reader never sees half a file).
func Write(dir string, f File) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dir, f.Part+".json")
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// ReadAll reads every <part>.json of dir.
func ReadAll(dir string) ([]File, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []File
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var f File
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// Merge adds up the parts' rows by runbook, in runbook order.
func Merge(files []File) []Row {
	files = foldBare(files)
	by := map[string]*Row{}
	addI := func(dst **int, v *int) {
		if v != nil {
			if *dst == nil {
				*dst = new(int)
			}
			**dst += *v
		}
	}
	for _, f := range files {
		for _, r := range f.Rows {
			m := by[r.Runbook]
			if m == nil {
				m = &Row{Runbook: r.Runbook}
				by[r.Runbook] = m
			}
			addI(&m.BoundariesCrashed, r.BoundariesCrashed)
			addI(&m.Runs, r.Runs)
			addI(&m.RunsCorrect, r.RunsCorrect)
			addI(&m.SideEffectsRepeated, r.SideEffectsRepeated)
			addI(&m.Retries, r.Retries)
			addI(&m.FaultsInjected, r.FaultsInjected)
			addI(&m.HostileRefused, r.HostileRefused)
			addI(&m.HostileTotal, r.HostileTotal)
			if r.WorstRecoverMS != nil && (m.WorstRecoverMS == nil || *r.WorstRecoverMS > *m.WorstRecoverMS) {
				v := *r.WorstRecoverMS
				m.WorstRecoverMS = &v
			}
		}
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Row, 0, len(names))
	for _, n := range names {
		out = append(out, *by[n])
	}
	return out
}

// foldBare relabels a runbook's bare rows to its one variant when no part writes both (the
// package comment).
func foldBare(files []File) []File {
	labels := map[string]map[string]bool{} // runbook word -> its labels
	both := map[string]bool{}              // runbook words some part writes bare and as a variant
	for _, f := range files {
		seen := map[string]map[string]bool{}
		for _, r := range f.Rows {
			base, _, _ := strings.Cut(r.Runbook, " (")
			for _, m := range []map[string]map[string]bool{labels, seen} {
				if m[base] == nil {
					m[base] = map[string]bool{}
				}
				m[base][r.Runbook] = true
			}
		}
		for base, ls := range seen {
			if ls[base] && len(ls) > 1 {
				both[base] = true
			}
		}
	}
	to := map[string]string{}
	for base, ls := range labels {
		if !ls[base] || len(ls) != 2 || both[base] {
			continue
		}
		for l := range ls {
			if l != base {
				to[base] = l
			}
		}
	}
	if len(to) == 0 {
		return files
	}
	out := make([]File, len(files))
	for i, f := range files {
		f.Rows = slices.Clone(f.Rows)
		for j, r := range f.Rows {
			if l, ok := to[r.Runbook]; ok {
				f.Rows[j].Runbook = l
			}
		}
		out[i] = f
	}
	return out
}

// Print writes the table (Markdown, as the README shows it) with a totals row.
func Print(w io.Writer, files []File) {
	rows := Merge(files)
	var parts []string
	// The fault proxy writes a part per test: one entry for all of them (first to last).
	var proxied []File
	for _, f := range files {
		if strings.HasPrefix(f.Part, "faults-Test") {
			proxied = append(proxied, f)
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", f.Part, f.Measured.UTC().Format(stamp), cmpOr(f.Mode, "full")))
	}
	if len(proxied) > 0 {
		first, last := proxied[0].Measured, proxied[0].Measured
		var modes []string
		for _, f := range proxied {
			if f.Measured.Before(first) {
				first = f.Measured
			}
			if f.Measured.After(last) {
				last = f.Measured
			}
			if !slices.Contains(modes, f.Mode) {
				modes = append(modes, f.Mode)
			}
		}
		slices.Sort(modes)
		parts = append(parts, fmt.Sprintf("fault proxy, %d tests, %s to %s (%s)", len(proxied), first.UTC().Format(stamp), last.UTC().Format(stamp), strings.Join(modes, "; ")))
	}
	slices.Sort(parts)
	fmt.Fprintf(w, "reliability, from %s\n\n", strings.Join(parts, "; "))
	fmt.Fprintln(w, "| runbook | boundaries crashed | runs correct | side effects repeated | worst time to recover | faults injected | retries | hostile inputs refused |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	line := func(r Row) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Runbook, num(r.BoundariesCrashed), frac(r.RunsCorrect, r.Runs),
			num(r.SideEffectsRepeated), dur(r.WorstRecoverMS), num(r.FaultsInjected), num(r.Retries), frac(r.HostileRefused, r.HostileTotal))
	}
	total := File{}
	for _, r := range rows {
		line(r)
		r.Runbook = "**total**"
		total.Rows = append(total.Rows, r)
	}
	if t := Merge([]File{total}); len(t) == 1 {
		line(t[0])
	}
}

const stamp = "2006-01-02 15:04 MST"

func num(v *int) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func frac(n, of *int) string {
	if n == nil || of == nil {
		return "-"
	}
	s := fmt.Sprintf("%d/%d", *n, *of)
	if *n < *of {
		s += " ✗"
	}
	return s
}

func dur(ms *int64) string {
	if ms == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f s", float64(*ms)/1000)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Int and Int64 make a column's value.
func Int(v int) *int       { return &v }
func Int64(v int64) *int64 { return &v }
