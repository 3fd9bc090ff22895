package workflows

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/stackrun/stackrun/activities"
)

// LargeRunItems is the number of per-item steps (e.g. "migrate/<uuid>") from which a report is
// compacted so that a run over a large host (1,000 instances) stays well under Temporal's 512 KB
// payload warning: per-item audit entries that succeeded are collapsed per step group and
// activity (the worker's audit log, worker.audit_log, keeps every activity), finished per-item
// steps lose their target and timestamps (the detail names the item), and the runbooks record
// their per-item detail (moves) as one line each.
const LargeRunItems = 200

// compactReport trims rep in place when the run has at least LargeRunItems per-item steps.
func compactReport(rep *Report) {
	items := 0
	for _, s := range rep.Steps {
		if strings.IndexByte(s.Name, '/') > 0 {
			items++
		}
	}
	if items < LargeRunItems {
		return
	}
	steps := make([]StepStatus, len(rep.Steps))
	for i, s := range rep.Steps {
		if strings.IndexByte(s.Name, '/') > 0 && s.State == StepDone && s.Error == "" {
			s.Target, s.Started, s.Ended = "", nil, nil
			if s.Attempts == 1 {
				s.Attempts = 0
			}
		}
		steps[i] = s
	}
	rep.Steps = steps

	type key struct{ group, activity string }
	groups := map[key]int{} // index in out of the collapsed entry
	out := make([]AuditEntry, 0, len(rep.Audit))
	for _, e := range rep.Audit {
		g := stepGroup(e.Step)
		if g == e.Step || e.Result != "ok" {
			out = append(out, e)
			continue
		}
		k := key{g, e.Activity}
		i, ok := groups[k]
		if !ok {
			groups[k] = len(out)
			out = append(out, AuditEntry{At: e.At, Step: g + "/*", Activity: e.Activity, RequestedBy: e.RequestedBy, Result: "ok"})
			i = len(out) - 1
		}
		c := &out[i]
		c.Count++
		c.Duration += e.Duration
		c.Target = fmt.Sprintf("%d item(s), every call ok (each one is in the worker's audit log)", c.Count)
	}
	rep.Audit = out
}

// ReportBudget bounds a report's JSON: the report is the run's result, one payload, and
// Temporal terminates a run whose result passes its blob size limit (2 MB by default:
// "CompleteWorkflowExecutionCommandAttributes.Result exceeds size limit"), without its report.
// The runbooks keep their reports well under it (staged-upgrade: some 400 bytes per compute
// host); fitReport is the last line.
const ReportBudget = 1536 << 10

// fitReport cuts a report over budget so that the run still ends with one: the longest list of
// the report (a detail or the plan) loses its second half, with a last entry saying how many
// entries were cut, until it fits; a finding says what was cut. Deterministic (the report is
// marshalled as the data converter would).
func fitReport(rep *Report, budget int) {
	size := func() int {
		//workflowcheck:ignore encoding/json writes map keys sorted: the same bytes in a replay
		b, err := json.Marshal(rep)
		if err != nil {
			return 0
		}
		return len(b)
	}
	n := size()
	if n <= budget {
		return
	}
	before := n
	var cut []string
	for n > budget {
		// The longest list: the plan, or a detail that is a list (as JSON).
		key, longest, items := "", 0, []any(nil)
		//workflowcheck:ignore a list of strings
		if b, _ := json.Marshal(rep.Plan); len(rep.Plan) > 1 && len(b) > longest {
			key, longest = "plan", len(b)
			items = make([]any, len(rep.Plan))
			for i, l := range rep.Plan {
				items[i] = l
			}
		}
		keys := make([]string, 0, len(rep.Details))
		//workflowcheck:ignore sorted below
		for k := range rep.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			//workflowcheck:ignore encoding/json writes map keys sorted: the same bytes in a replay
			b, err := json.Marshal(rep.Details[k])
			var list []any
			//workflowcheck:ignore a JSON list decoded: the same values in a replay
			if err != nil || len(b) <= longest || json.Unmarshal(b, &list) != nil || len(list) < 2 {
				continue
			}
			key, longest, items = k, len(b), list
		}
		if key == "" {
			break // nothing left to cut: the run's result is what it is
		}
		keep := len(items) / 2
		note := fmt.Sprintf("… %d more entries cut (of %d) to keep the report under Temporal's payload limit", len(items)-keep, len(items))
		if key == "plan" {
			plan := make([]string, 0, keep+1)
			for _, l := range items[:keep] {
				plan = append(plan, l.(string))
			}
			rep.Plan = append(plan, note)
		} else {
			details := maps.Clone(rep.Details)
			details[key] = append(items[:keep:keep], note)
			rep.Details = details
		}
		cut = append(cut, fmt.Sprintf("%s (%d of %d entries)", key, len(items)-keep, len(items)))
		n = size()
	}
	rep.Findings = append(slices.Clip(rep.Findings), activities.Finding{Severity: activities.SeverityWarning, Subject: "report",
		Message: fmt.Sprintf("the report was %d bytes, over the %d that a run's result may carry here: cut %s; the worker's audit log (worker.audit_log) and the child runs' reports have what was cut", before, budget, strings.Join(cut, ", "))})
}
