package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/checks"
)

// hostBatch is the most hosts one HostProbes activity runs at once. A check's time over a kept
// SSH pool is Temporal's per activity (events, a workflow task per completion), not SSH's: 200
// hosts in 8 activities instead of 200 is what makes repeated fan-out cheap (docs/production.md).
const hostBatch = 25

// probeNonRetryable are the error types a probe is not retried on.
var probeNonRetryable = []string{activities.ErrTypeInvalidInput, activities.ErrTypeNotFound, activities.ErrTypeRefused, activities.ErrTypeHostKey}

// hostBatches groups the plan's probes into units, in plan order: each non-host probe alone, the
// hosts of each per-host probe in batches of size (hostBatch, at most parallelism), so that
// parallelism/size units at once keep at most parallelism hosts probed at once. Unbatched (runs
// begun before batches): every probe alone, size 1.
func hostBatches(probes []activities.ProbeSpec, parallelism int, batched bool) (units [][]int, size int) {
	size = max(min(hostBatch, parallelism), 1)
	if !batched {
		size = 1
	}
	open := map[string]int{} // probe name -> index of its batch being filled
	for i, p := range probes {
		if !batched || !activities.IsHostProbe(p.Name) || p.Target == "" {
			units = append(units, []int{i})
			continue
		}
		if b, ok := open[p.Name]; ok && len(units[b]) < size {
			units[b] = append(units[b], i)
			continue
		}
		open[p.Name] = len(units)
		units = append(units, []int{i})
	}
	return units, size
}

// runHostBatch probes the hosts idx (one per-host probe) in one HostProbes activity and records
// each host as its own step, result and finding, as if each had had its own activity. A batch
// that fails as a whole (out of attempts, timed out) makes each of its hosts a blind finding.
func (r *Run) runHostBatch(ctx workflow.Context, plan activities.CheckPlan, idx []int, cadence string, since, at time.Time,
	results []activities.ProbeResult, runs []checks.ProbeRun) {
	name := plan.Probes[idx[0]].Name
	req := activities.HostProbesRequest{ProbeRequest: activities.ProbeRequest{Cadence: cadence, Probe: name,
		RunID: r.info.WorkflowExecution.RunID, At: at, Since: since}}
	steps := make([]*step, len(idx))
	for k, i := range idx {
		p := plan.Probes[i]
		req.Targets = append(req.Targets, p.Target)
		steps[k] = r.step(probeStep(p))
		steps[k].Target = p.Target
		steps[k].Attempts++
		r.setStepState(steps[k], StepRunning, "")
	}
	// Each host is retried once inside the activity; the activity has 3 attempts, as a probe has
	// (a worker that died: the retry skips the hosts its heartbeats reported finished). The
	// keepalive heartbeats it while it runs.
	opts := ActOpts{Timeout: plan.ProbeTimeout, Heartbeat: 20 * time.Second, Attempts: 3, NonRetryable: probeNonRetryable}
	started := workflow.Now(ctx)
	var out []activities.HostProbeResult
	stepName := fmt.Sprintf("probe/%s/%s..%s", name, req.Targets[0], req.Targets[len(req.Targets)-1])
	err := r.Exec(r.WithActivity(ctx, opts), stepName, cadence, checksAct.HostProbes, &out, req)
	byTarget := map[string]activities.HostProbeResult{}
	for _, o := range out {
		byTarget[o.Target] = o
	}
	took := workflow.Now(ctx).Sub(started)
	for k, i := range idx {
		p := plan.Probes[i]
		o, ok := byTarget[p.Target]
		switch {
		case err != nil:
			o.Error = errText(err)
		case !ok:
			o.Error = "no answer from the batch"
		}
		run := checks.ProbeRun{Name: p.Name, Target: p.Target, OK: o.Error == "", Summary: o.Result.Summary, Error: o.Error, Duration: took}
		res := o.Result
		if o.Error != "" {
			steps[k].Error = o.Error
			res = probeFailed(p, cadence, o.Error)
		}
		runs[i], results[i] = run, probeOwned(res, p.Name)
		r.setStepState(steps[k], StepDone, "")
	}
}

// probeFailed is the finding of a probe that could not answer.
func probeFailed(p activities.ProbeSpec, cadence, errText string) activities.ProbeResult {
	subj := "probe/" + p.Name
	if p.Target != "" {
		subj += "/" + p.Target
	}
	return activities.ProbeResult{Findings: []checks.Finding{{Severity: probeFailSeverity(p.Name), Probe: p.Name, Subject: subj,
		Message: fmt.Sprintf("probe %s could not answer, so this part of the %s check is blind: %s", p.Name, cadence, errText)}}}
}

// probeOwned fills in the probe name of findings that left it empty.
func probeOwned(res activities.ProbeResult, name string) activities.ProbeResult {
	for k := range res.Findings {
		if res.Findings[k].Probe == "" {
			res.Findings[k].Probe = name
		}
	}
	return res
}
