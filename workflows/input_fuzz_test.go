package workflows

// Fuzz targets for every runbook input's Validate (issue 17). Each asserts, beyond "no panic":
//   - a refusal is a *FieldError that names a field, and its text starts with that field;
//   - Validate is deterministic (the same input gets the same answer twice);
//   - an accepted value is one the SSH layer accepts for the argument it becomes (host names,
//     services, devices, weights, paths), so that a value Validate lets through can never be the
//     one refused later, after side effects, and a refused value never reaches a command line.
// Seeds: f.Add below and testdata/fuzz/FuzzX/ (hostile values). `make fuzz` runs them long.

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/placeholder"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// checkRefusal asserts that err, when not nil, names a field; it returns whether in was accepted.
func checkRefusal(t *testing.T, in Input) bool {
	t.Helper()
	err := in.Validate()
	again := in.Validate()
	if (err == nil) != (again == nil) || (err != nil && err.Error() != again.Error()) {
		t.Fatalf("Validate is not deterministic: %v then %v", err, again)
	}
	if err == nil {
		return true
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("refusal %q (%T) is not a FieldError naming the field", err, err)
	}
	if fe.Field == "" || fe.Problem == "" {
		t.Fatalf("refusal %q names no field or no problem: %+v", err, fe)
	}
	if !strings.HasPrefix(err.Error(), fe.Field) {
		t.Fatalf("refusal %q does not start with its field %q", err, fe.Field)
	}
	return false
}

// mustArg asserts that an accepted value passes the SSH layer's check for kind.
func mustArg(t *testing.T, field, kind, v string) {
	t.Helper()
	if err := remote.ValidateArg(kind, v); err != nil {
		t.Fatalf("%s %q was accepted by Validate but the SSH layer refuses it as %s: %v", field, v, kind, err)
	}
}

// mustText asserts that accepted free text carries no control or bidirectional-format character.
func mustText(t *testing.T, field, v string) {
	t.Helper()
	if !utf8.ValidString(v) {
		t.Fatalf("%s %q accepted with invalid UTF-8", field, v)
	}
	for _, c := range v {
		if (unicode.IsControl(c) && c != '\t') || unicode.Is(unicode.Bidi_Control, c) {
			t.Fatalf("%s %q accepted with the control character %U", field, v, c)
		}
	}
}

func meta(by, reason string) Meta { return Meta{RequestedBy: by, Reason: reason} }

func checkMeta(t *testing.T, m Meta) {
	t.Helper()
	if !ValidOperator(m.RequestedBy) {
		t.Fatalf("requested_by %q accepted", m.RequestedBy)
	}
	mustText(t, "reason", m.Reason)
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func FuzzRestartServiceInput(f *testing.F) {
	f.Add("alice", "restart", "compute1", "nova-compute")
	f.Add("alice", "", "compute1;reboot", "nova-compute")
	f.Add("alice", "x", "-oProxyCommand=sh", "nova-compute$(id)")
	f.Fuzz(func(t *testing.T, by, reason, host, service string) {
		in := &RestartServiceInput{Meta: meta(by, reason), Host: host, Service: service}
		if checkRefusal(t, in) {
			checkMeta(t, in.Meta)
			mustArg(t, "host", placeholder.KindHostname, host)
			mustArg(t, "service", placeholder.KindService, service)
		}
	})
}

func FuzzEvacuateInput(f *testing.F) {
	f.Add("alice", "maintenance", "compute1", "compute2,compute3", 2, "auto")
	f.Add("alice", "r", "compute1", "compute1", 0, "")
	f.Add("alice", strings.Repeat("x", 300), "compute1", "", 1, "yes")
	f.Add("alice", "r\u009b2J", "compute1", "", 1, "no")
	f.Fuzz(func(t *testing.T, by, reason, host, targets string, parallel int, block string) {
		in := &EvacuateInput{Meta: meta(by, reason), Host: host, Targets: split(targets), Parallel: parallel, BlockMigration: block}
		if checkRefusal(t, in) {
			checkMeta(t, in.Meta)
			mustArg(t, "host", placeholder.KindHostname, host)
			for _, h := range in.Targets {
				mustArg(t, "to", placeholder.KindHostname, h)
			}
			// The reason becomes Nova's disabled_reason (String(255)) after the plan.
			if err := ValidateDisabledReason("", reason); err != nil {
				t.Fatalf("reason accepted but Nova's disabled_reason would refuse it: %v", err)
			}
		}
	})
}

func FuzzRecoverHostInput(f *testing.F) {
	f.Add("alice", "power supply", "compute1", "compute2", 2)
	f.Add("alice", "", "compute1", "compute1", 0)
	f.Fuzz(func(t *testing.T, by, reason, host, targets string, parallel int) {
		in := &RecoverHostInput{Meta: meta(by, reason), Host: host, Targets: split(targets), Parallel: parallel}
		if checkRefusal(t, in) {
			checkMeta(t, in.Meta)
			mustArg(t, "host", placeholder.KindHostname, host)
			for _, h := range in.Targets {
				mustArg(t, "to", placeholder.KindHostname, h)
			}
			if err := ValidateDisabledReason(recoverReasonPrefix, reason); err != nil {
				t.Fatalf("reason accepted but too long or not text for Nova: %v", err)
			}
		}
	})
}

func FuzzPostRebootCheckInput(f *testing.F) {
	f.Add("alice", "", "compute1", "compute")
	f.Add("alice", "", "compute1", "../etc")
	f.Fuzz(func(t *testing.T, by, reason, host, role string) {
		in := &PostRebootCheckInput{Meta: meta(by, reason), Host: host, Role: role}
		if checkRefusal(t, in) {
			checkMeta(t, in.Meta)
			mustArg(t, "host", placeholder.KindHostname, host)
			if role != "" && !roleRE.MatchString(role) {
				t.Fatalf("role %q accepted", role)
			}
		}
	})
}

func FuzzSwiftDiskInput(f *testing.F) {
	f.Add("alice", "disk died", "storage1", "sdb", int64(0), int64(0))
	f.Add("alice", "", "storage1", "/dev/sdb", int64(-1), int64(0))
	f.Add("alice", "", "storage1", "sdb/../sda", int64(0), int64(-5))
	f.Fuzz(func(t *testing.T, by, reason, node, device string, refill, poll int64) {
		in := &SwiftDiskInput{Meta: meta(by, reason), Node: node, Device: device, RefillTimeout: time.Duration(refill), PollInterval: time.Duration(poll)}
		if checkRefusal(t, in) {
			checkMeta(t, in.Meta)
			mustArg(t, "node", placeholder.KindHostname, node)
			mustArg(t, "device", placeholder.KindDevice, device)
			mustArg(t, "device", placeholder.KindLabel, device) // the new file system's label
			mustArg(t, "device", placeholder.KindPath, "/srv/node/"+device)
			if refill < 0 || poll < 0 || (poll > 0 && poll < int64(time.Second)) {
				t.Fatalf("duration accepted: refill %d, poll %d", refill, poll)
			}
		}
	})
}

func FuzzSwiftRingInput(f *testing.F) {
	f.Add("alice", "", "storage4/sdb=100", "", "", false, 1, 0)
	f.Add("alice", "", "", "storage3", "storage1/sdb=50.5", false, 0, 0)
	f.Add("alice", "", "storage1=1e9", "", "", false, 0, 0)
	f.Add("alice", "", "", "", "", true, 0, 0)
	f.Add("alice", "", "storage1/sdb", "storage1/sdb", "", false, 0, 0)
	f.Fuzz(func(t *testing.T, by, reason, add, remove, set string, distribute bool, steps, parallel int) {
		in := &SwiftRingInput{Meta: meta(by, reason), Add: split(add), Remove: split(remove), SetWeight: split(set), Distribute: distribute, Steps: steps, Parallelism: parallel}
		if !checkRefusal(t, in) {
			return
		}
		checkMeta(t, in.Meta)
		a, r, s, err := in.specs()
		if err != nil {
			t.Fatalf("accepted but its specs do not parse: %v", err)
		}
		for _, sp := range append(append(a, r...), s...) {
			mustArg(t, "node", placeholder.KindHostname, sp.Node)
			if sp.Device != "" {
				mustArg(t, "device", placeholder.KindDevice, sp.Device)
			}
			if sp.HasWeight {
				// The weight reaches swift-ring-builder as the number formatted back.
				if sp.Weight < 0 || sp.Weight >= 1e9 {
					t.Fatalf("weight %v accepted", sp.Weight)
				}
			}
		}
	})
}

func FuzzInspectDiskInput(f *testing.F) {
	f.Add("alice", "why", "0b5c3e9e-8f1d-4a53-9d3c-2f1e0a7b6c5d", "/etc/fstab", 0)
	f.Add("alice", "why", "0b5c3e9e-8f1d-4a53-9d3c-2f1e0a7b6c5d", "/etc/../../host", 1024)
	f.Add("alice", "why", "0B5C3E9E-8F1D-4A53-9D3C-2F1E0A7B6C5D", "etc/fstab", 1)
	f.Fuzz(func(t *testing.T, by, reason, instance, paths string, maxBytes int) {
		var ps []string
		if paths != "" {
			ps = strings.Split(paths, "\n")
		}
		in := &InspectDiskInput{Meta: meta(by, reason), Instance: instance, Paths: ps, MaxBytes: maxBytes}
		if !checkRefusal(t, in) {
			return
		}
		checkMeta(t, in.Meta)
		if !activities.ValidInstanceID(instance) {
			t.Fatalf("instance %q accepted", instance)
		}
		for _, p := range ps {
			mustArg(t, "path", placeholder.KindPath, p)
			// Joined under the export's mount point, it stays below it.
			mustArg(t, "path", placeholder.KindPath, "/run/stackrun/inspect/x"+p)
		}
		if err := activities.ValidateGuestRequest(ps, int64(in.maxBytes())); err != nil {
			t.Fatalf("accepted but the activity would refuse it: %v", err)
		}
	})
}

func FuzzStagedUpgradeInput(f *testing.F) {
	f.Add("alice", "", "keystone,nova", "python3-nova=2:26.2.2-1~deb12u5", false, "controller1", 0, "")
	f.Add("alice", "", "", "", true, "", 0, "nova")
	f.Add("alice", "", "nova", "python3-nova=1;reboot", false, "", 0, "")
	f.Fuzz(func(t *testing.T, by, reason, services, versions string, candidate bool, canary string, parallel int, changes string) {
		in := &StagedUpgradeInput{Meta: meta(by, reason), Services: split(services), ToVersion: split(versions), ToCandidate: candidate,
			Canary: canary, Parallel: parallel, ConfigChanges: split(changes)}
		if !checkRefusal(t, in) {
			return
		}
		checkMeta(t, in.Meta)
		for _, s := range in.Services {
			mustArg(t, "services", placeholder.KindService, s)
		}
		for _, tv := range in.ToVersion {
			pkg, ver, _ := strings.Cut(tv, "=")
			mustArg(t, "to_version", placeholder.KindPackage, pkg)
			mustArg(t, "to_version", placeholder.KindDebVersion, ver)
			mustArg(t, "to_version", placeholder.KindPackageVersion, tv)
		}
		if canary != "" {
			mustArg(t, "canary", placeholder.KindHostname, canary)
		}
	})
}

func FuzzDiagnoseInput(f *testing.F) {
	f.Add("alice", "", "instance-unreachable", "10.0.0.5", "30m", 0)
	f.Add("alice", "", "db-connection-errors", "all", "3d", 4)
	f.Add("alice", "", "api-slow", "compute", "8d", 0)
	f.Add("alice", "", "instance-wont-boot", "$(reboot)", "", 0)
	f.Fuzz(func(t *testing.T, by, reason, symptom, subject, since string, parallel int) {
		in := &DiagnoseInput{Meta: meta(by, reason), Symptom: symptom, Subject: subject, Since: since, Parallel: parallel}
		if checkRefusal(t, in) {
			checkMeta(t, in.Meta)
			for _, c := range subject {
				if strings.ContainsRune("$`;|&<>'\"\\\n\r\x00", c) {
					t.Fatalf("subject %q accepted with %q", subject, c)
				}
			}
		}
	})
}

func FuzzCheckInput(f *testing.F) {
	f.Add("alice", "", "daily", 0)
	f.Add("alice", "", "Daily", -1)
	f.Fuzz(func(t *testing.T, by, reason, cadence string, parallelism int) {
		in := &CheckInput{Meta: meta(by, reason), Cadence: cadence, Parallelism: parallelism}
		if checkRefusal(t, in) {
			checkMeta(t, in.Meta)
			if !strings.Contains(strings.Join(Cadences, ","), cadence) || parallelism < 0 || parallelism > 500 {
				t.Fatalf("cadence %q / parallelism %d accepted", cadence, parallelism)
			}
		}
	})
}
