package workflows

import (
	"fmt"
	"strings"
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
