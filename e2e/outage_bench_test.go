//go:build e2e && bench

package e2e

// Outage-recovery benchmark: from the same killed state (labfail power-loss: every service of
// every lab host SIGKILLed at once), the lab's own lab/up.sh against outage-recovery (the real
// worker on a dev server) until every tier is verified. Goal: outage-recovery ≤ 1.3× up.sh, while
// it verifies every tier (processes, ports, AMQP, APIs, database integrity, hypervisors).
//
//	go test -count=1 -tags 'e2e bench' -run TestOutageRecoveryVersusUpSh -v ./e2e/
//
// STACKRUN_BENCH_ROUNDS sets the rounds (default 1; each is two power losses).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/workflows"
)

func TestOutageRecoveryVersusUpSh(t *testing.T) {
	l := newNovaLab(t)
	l.cfgPath = outageConfig(t)
	require.NoError(t, l.worker.Process.Kill())
	_, _ = l.worker.Process.Wait()
	l.worker = startWorker(t, l.cfgPath, l.srv)
	t.Cleanup(func() { labRestore(t) })
	src := requireLab(t).Env["LAB_SRC"]
	require.NotEmpty(t, src, "lab.env has no LAB_SRC")
	rounds, _ := strconv.Atoi(os.Getenv("STACKRUN_BENCH_ROUNDS"))
	rounds = max(rounds, 1)
	powerLoss := func() {
		out, err := exec.Command(l.labfail, "power-loss").CombinedOutput()
		require.NoError(t, err, string(out))
	}
	var up, rec []time.Duration
	for i := 0; i < rounds; i++ {
		powerLoss()
		// The lab's own up.sh: the clone that brought it up (lab.env's LAB_SRC), whose stackrun.yaml stays.
		cmd := exec.Command(filepath.Join(src, "up.sh"))
		cmd.Env = append(os.Environ(), "STACKRUN_LAB_DIR="+labDir(t))
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		up = append(up, time.Since(t0))
		require.NoError(t, err, tail(string(out), 30))

		powerLoss()
		t0 = time.Now()
		id := l.start("outage-recovery", &workflows.OutageRecoveryInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "bench"}})
		rep := l.report(id, 15*time.Minute)
		rec = append(rec, time.Since(t0))
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		logUpPhases(t, string(out))
		logTierTimes(t, rep)
		logAttempts(t, l.worker, id, rep.Started)
		var calls []string
		for _, a := range rep.Audit {
			calls = append(calls, fmt.Sprintf("+%6.1fs %5.1fs %-10s %s %s %s", a.At.Sub(rep.Started).Seconds(), a.Duration.Seconds(), a.Step, a.Activity, a.Target, a.Error))
		}
		t.Logf("outage-recovery calls (the run's audit):\n%s", strings.Join(calls, "\n"))
		labRestore(t) // what the table does not list (Alertmanager) comes back too, untimed
	}
	var su, sr time.Duration
	for i := range up {
		su += up[i]
		sr += rec[i]
	}
	n := time.Duration(len(up))
	t.Logf("\n| from labfail power-loss to everything verified | wall time (mean of %d) |\n| --- | --- |\n| lab/up.sh | %s |\n| outage-recovery | %s |\n| ratio | %.2f× (goal ≤ 1.3×) |",
		len(up), (su / n).Round(100*time.Millisecond), (sr / n).Round(100*time.Millisecond), float64(sr)/float64(su))
}

// logUpPhases prints up.sh's own phase lines ("... (N s)"): where its time goes.
func logUpPhases(t *testing.T, out string) {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "[lab]") && strings.HasSuffix(strings.TrimSpace(line), " s)") {
			lines = append(lines, strings.TrimSpace(line[strings.Index(line, "[lab]"):]))
		}
	}
	t.Logf("up.sh phases:\n%s", strings.Join(lines, "\n"))
}

// logAttempts prints every activity attempt of the run from the worker's audit log (its offset
// from the run's start, attempt, duration, error): where a tier's seconds went, verification by
// verification. Diagnostics only: the figures above are the wall times.
func logAttempts(t *testing.T, worker *exec.Cmd, workflowID string, began time.Time) {
	var path string
	for _, e := range worker.Env {
		if v, ok := strings.CutPrefix(e, "STACKRUN_WORKER_AUDIT_LOG="); ok {
			path = v
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Logf("worker audit log: %v", err)
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r struct {
			Time       time.Time `json:"time"`
			WorkflowID string    `json:"workflow_id"`
			Activity   string    `json:"activity"`
			Attempt    int32     `json:"attempt"`
			DurationMS int64     `json:"duration_ms"`
			Error      string    `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.WorkflowID != workflowID || r.Activity == "Notify" {
			continue
		}
		e := r.Error
		if len(e) > 150 {
			e = e[:150] + "..."
		}
		lines = append(lines, fmt.Sprintf("+%6.1fs %5.1fs #%d %s %s", r.Time.Sub(began).Seconds(), float64(r.DurationMS)/1000, r.Attempt, r.Activity, e))
	}
	t.Logf("outage-recovery attempts (worker audit log):\n%s", strings.Join(lines, "\n"))
}
