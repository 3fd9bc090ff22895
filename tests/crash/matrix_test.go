package crash

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"

	"github.com/stackrun/stackrun/workflows"
)

// runbookCase is one row of the matrix: a runbook and an input on a world of its own (hosts,
// Swift nodes and instance named after host, the run's own name).
type runbookCase struct {
	rb workflows.Runbook
	// variant names a second case of one runbook in the table: "swift-disk (--drain-first)".
	variant string
	input   func(host string) workflows.Input
	// env is the mocked world's settings for this case (tests/crash/worker: its environment).
	env []string
	// crashAlso are boundaries crashed at both points besides the sample (in make test too).
	crashAlso []string
}

func (rc runbookCase) label() string {
	if rc.variant != "" {
		return rc.rb.Name + " (" + rc.variant + ")"
	}
	return rc.rb.Name
}

func meta() workflows.Meta { return workflows.Meta{RequestedBy: "alice", Reason: "crash matrix"} }

// instanceID is the run's instance, a UUID derived from its name.
func instanceID(host string) string {
	h := fmt.Sprintf("%x", sha256.Sum256([]byte(host)))
	return h[0:8] + "-" + h[8:12] + "-4" + h[12:15] + "-8" + h[15:18] + "-" + h[18:30]
}

// matrix is every runbook of the registry (TestCrashMatrixCoversEveryRunbook): a new runbook is
// one entry here and its activities' mocks in tests/crash/worker, which check the world (the
// store) before they act and log each side effect to effects.log.
var matrix = []runbookCase{
	{rb: workflows.Check, variant: "daily", input: func(string) workflows.Input {
		return &workflows.CheckInput{Meta: meta(), Cadence: "daily"}
	}},
	{rb: workflows.Diagnose, variant: "api-slow", input: func(string) workflows.Input {
		return &workflows.DiagnoseInput{Meta: meta(), Symptom: "api-slow", Subject: "all"}
	}},
	{rb: workflows.Evacuate, input: func(host string) workflows.Input {
		return &workflows.EvacuateInput{Meta: meta(), Host: host, Parallel: 2}
	}},
	{rb: workflows.InspectDisk, input: func(host string) workflows.Input {
		return &workflows.InspectDiskInput{Meta: meta(), Instance: instanceID(host), Paths: []string{"/etc/fstab", "/var/log/syslog"}, MaxBytes: 1000}
	}},
	{rb: workflows.PostRebootCheck, variant: "--start-instances", input: func(host string) workflows.Input {
		return &workflows.PostRebootCheckInput{Meta: meta(), Host: host, StartInstances: true}
	}, env: []string{"CRASH_INSTANCE_STATUS=SHUTOFF"}},
	{rb: workflows.RecoverHost, input: func(host string) workflows.Input {
		m := meta()
		m.Reason = "host failure: crash matrix"
		return &workflows.RecoverHostInput{Meta: m, Host: host, Parallel: 2}
	}, env: []string{"CRASH_DEAD=1"}},
	// A wave of two hosts (two batches: the canary, then the other, gate canary-ok between), the
	// first holding the world's two instances: its evacuate child moves them out, migrate-back
	// brings them home; the second has nothing to move. Each host rebooted once, disabled and
	// enabled once (and once more by its evacuate child).
	{rb: workflows.RollingMaintenance, variant: "--action reboot", input: func(host string) workflows.Input {
		return &workflows.RollingMaintenanceInput{Meta: meta(), Hosts: []string{host, host + "-t1"}, Action: workflows.ActionReboot, Parallel: 2}
	}},
	// The same wave continuing as new between its two hosts (a budget of 1 event): crashed
	// around the continue-as-new too, the chain must end as the uncrashed one.
	{rb: workflows.RollingMaintenance, variant: "--action reboot, continuing as new", input: func(host string) workflows.Input {
		return &workflows.RollingMaintenanceInput{Meta: meta(), Hosts: []string{host, host + "-t1"}, Action: workflows.ActionReboot, Parallel: 2}
	}, env: []string{"CRASH_HISTORY_BUDGET=1"},
		// The first host's last activities (its lease given back, a notification) and the
		// second's first, in the next run.
		crashAlso: []string{"ReleaseLease#2", "Notify#5", "InstancesOnHost#8"}},
	{rb: workflows.RestartService, input: func(host string) workflows.Input {
		return &workflows.RestartServiceInput{Meta: meta(), Host: host, Service: "nova-compute"}
	}},
	{rb: workflows.StagedUpgrade, variant: "--to-candidate", input: func(string) workflows.Input {
		return &workflows.StagedUpgradeInput{Meta: meta(), ToCandidate: true}
	}},
	{rb: workflows.SwiftDisk, input: func(host string) workflows.Input {
		return &workflows.SwiftDiskInput{Meta: meta(), Node: host + "-s2", Device: "sdd"}
	}},
	{rb: workflows.SwiftDisk, variant: "--drain-first", input: func(host string) workflows.Input {
		return &workflows.SwiftDiskInput{Meta: meta(), Node: host + "-s2", Device: "sdd", DrainFirst: true}
	}},
	{rb: workflows.SwiftRing, variant: "--set-weight", input: func(host string) workflows.Input {
		return &workflows.SwiftRingInput{Meta: meta(), SetWeight: []string{host + "-s3/sdf=50"}}
	}},
	// Two steps that continue as new between them (a budget of 1 event): crashed around the
	// continue-as-new too (crashAlso), the chain must end as the uncrashed one.
	{rb: workflows.SwiftRing, variant: "--steps 2", input: func(host string) workflows.Input {
		return &workflows.SwiftRingInput{Meta: meta(), SetWeight: []string{host + "-s3/sdf=50"}, Steps: 2, Wait: true}
	}, env: []string{"CRASH_HISTORY_BUDGET=1"},
		// The last activity of the first run and the first of the second.
		crashAlso: []string{"FollowReplication#1", "RingStatus#3"}},
	{rb: workflows.OutageRecovery, input: func(string) workflows.Input {
		return &workflows.OutageRecoveryInput{Meta: meta(), Parallel: 2}
	}},
	// The plan and three tiers that continue as new between them (a budget of 1 event: four
	// runs; the snapshot of 4 services is one slice): crashed around each continue-as-new too
	// (crashAlso), the chain must end as the uncrashed one.
	{rb: workflows.OutageRecovery, variant: "continued", input: func(string) workflows.Input {
		return &workflows.OutageRecoveryInput{Meta: meta(), Parallel: 2}
	}, env: []string{"CRASH_HISTORY_BUDGET=1"},
		// The last activity of the first run (the plan's) and the first of the second, the last
		// of the second and the first of the last (STACKRUN_CRASH_FULL: all).
		crashAlso: []string{"OutageServiceState#4", "OutageStartService#1", "OutageInstancesBefore#1", "OutageStartInstance#1"}},
}

// notInMatrixYet are the runbooks whose crash entry and mocks are still to be written (README,
// reliability): named here so that the gap is visible and no other runbook can join it silently.
var notInMatrixYet = map[string]string{}

// Every runbook of the registry is in the matrix: a runbook added without its entry fails here.
func TestCrashMatrixCoversEveryRunbook(t *testing.T) {
	var names []string
	for _, rc := range matrix {
		names = append(names, rc.rb.Name)
	}
	for _, rb := range workflows.Runbooks {
		if why, ok := notInMatrixYet[rb.Name]; ok {
			if slices.Contains(names, rb.Name) {
				t.Errorf("runbook %s is in the matrix now: remove it from notInMatrixYet", rb.Name)
			}
			t.Logf("runbook %s is not in the crash matrix yet: %s", rb.Name, why)
			continue
		}
		if !slices.Contains(names, rb.Name) {
			t.Errorf("runbook %s is not in the crash matrix (tests/crash/matrix_test.go): add its entry and its mocks (tests/crash/worker)", rb.Name)
		}
	}
}
