package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	wf "github.com/stackrun/stackrun/workflows"
)

var inspectAct *activities.DiskInspector

const inspectID = "6f1c2a34-5b6d-4e7f-8091-a2b3c4d5e6f7"

var inspectLoc = activities.DiskLocation{
	Instance: inspectID, Name: "broken-vm", Host: "compute1", Status: "ACTIVE",
	Disk: "/var/lib/nova/instances/" + inspectID + "/disk", Format: "qcow2", FormatFrom: "disk.info", VirtualSize: 1 << 30,
	Method: activities.MethodQSD, Pause: activities.PauseSuspend,
	Work: "/run/stackrun/inspect/" + inspectID, Export: "/run/stackrun/inspect/" + inspectID + "/export.raw",
	PIDFile: "/run/stackrun/inspect/" + inspectID + "/qsd.pid", MountPoint: "/run/stackrun/inspect/" + inspectID + "/mnt",
}

func inspectPolicy() policy.Policy {
	p := basePolicy()
	p.TwoPersonGates = []string{wf.GateDataAccess}
	return p
}

func inspectInput(paths ...string) wf.InspectDiskInput {
	if len(paths) == 0 {
		paths = []string{"/etc/fstab", "/var/log/syslog"}
	}
	return wf.InspectDiskInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "INC-4711: instance does not boot"}, Instance: inspectID, Paths: paths, MaxBytes: 1000}
}

// world is the host and Nova as the mocked activities see them: every side effect and every
// compensation changes it, so tests assert on what is left, not only on what was called.
type world struct {
	mu                         sync.Mutex
	status                     string
	exported, attached, mounts bool
	calls                      []string
}

func (w *world) call(name string) {
	w.mu.Lock()
	w.calls = append(w.calls, name)
	w.mu.Unlock()
}

func (w *world) called() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

// inspectMocks answers every activity of the runbook from w; override names the activities a
// test answers itself.
func inspectMocks(f *fixture, w *world, override ...string) {
	f.env.RegisterActivity(inspectAct)
	f.env.RegisterActivity(computeAct)
	skip := func(name string) bool {
		for _, o := range override {
			if o == name {
				return true
			}
		}
		return false
	}
	on := func(name string, fn any, ret any) {
		if !skip(name) {
			f.env.OnActivity(fn, mock.Anything, mock.Anything).Return(ret)
		}
	}
	on("LocateInstanceDisk", inspectAct.LocateInstanceDisk, func(_ context.Context, id string) (activities.DiskLocation, error) {
		w.call("locate")
		l := inspectLoc
		l.Status = w.status
		return l, nil
	})
	on("SuspendInstance", inspectAct.SuspendInstance, func(_ context.Context, req activities.PowerRequest) (activities.PowerResult, error) {
		w.call("suspend")
		w.mu.Lock()
		defer w.mu.Unlock()
		before := w.status
		w.status = "SUSPENDED"
		return activities.PowerResult{Instance: req.Instance, Before: before, After: w.status, Acted: before == "ACTIVE"}, nil
	})
	on("ResumeInstance", inspectAct.ResumeInstance, func(_ context.Context, req activities.PowerRequest) (activities.PowerResult, error) {
		w.call("resume")
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.exported || w.attached || w.mounts {
			return activities.PowerResult{}, errors.New("resumed while the disk is exposed")
		}
		before := w.status
		w.status = "ACTIVE"
		return activities.PowerResult{Instance: req.Instance, Before: before, After: "ACTIVE", Acted: before != "ACTIVE"}, nil
	})
	on("ExposeInstanceDisk", inspectAct.ExposeInstanceDisk, func(_ context.Context, l activities.DiskLocation) (activities.DiskExposure, error) {
		w.call("expose")
		w.mu.Lock()
		defer w.mu.Unlock()
		w.exported, w.attached = true, true
		return activities.DiskExposure{Loop: "/dev/loop9", FSType: "ext4", DaemonPID: 4242}, nil
	})
	on("MountGuestFS", inspectAct.MountGuestFS, func(_ context.Context, req activities.DiskMountRequest) (activities.DiskMountResult, error) {
		w.call("mount")
		w.mu.Lock()
		defer w.mu.Unlock()
		w.mounts = true
		return activities.DiskMountResult{MountPoint: req.Location.MountPoint, Options: "ro,nosuid,nodev,noexec,norecovery"}, nil
	})
	on("ReadGuestFiles", inspectAct.ReadGuestFiles, func(_ context.Context, req activities.GuestFileRequest) ([]activities.GuestFile, error) {
		w.call("collect")
		out := make([]activities.GuestFile, len(req.Paths))
		for i, p := range req.Paths {
			switch {
			case strings.Contains(p, "missing"):
				out[i] = activities.GuestFile{Path: p, Status: activities.FileMissing, Detail: "No such file or directory"}
			case strings.Contains(p, "evil"):
				out[i] = activities.GuestFile{Path: p, Status: activities.FileRefused, Detail: "resolves outside the guest file system"}
			case strings.Contains(p, "syslog"):
				out[i] = activities.GuestFile{Path: p, Status: activities.FileOverCap, Size: 5000, Bytes: req.MaxBytes, Truncated: true, Content: strings.Repeat("x", int(req.MaxBytes)), SHA256: "ab", SHA256Of: "file", Detail: "over the cap"}
			default:
				out[i] = activities.GuestFile{Path: p, Status: activities.FileOK, Size: 12, Bytes: 12, Content: "UUID=0b6f /\n", SHA256: "cd", SHA256Of: "file"}
			}
		}
		return out, nil
	})
	on("UnmountGuestFS", inspectAct.UnmountGuestFS, func(_ context.Context, l activities.DiskLocation) (activities.DiskUnmountResult, error) {
		w.call("unmount")
		w.mu.Lock()
		defer w.mu.Unlock()
		was := w.mounts
		w.mounts = false
		return activities.DiskUnmountResult{WasMounted: was}, nil
	})
	on("DetachInstanceDisk", inspectAct.DetachInstanceDisk, func(_ context.Context, l activities.DiskLocation) (activities.DiskDetachResult, error) {
		w.call("detach")
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.mounts {
			return activities.DiskDetachResult{}, temporal.NewApplicationError("still mounted", activities.ErrTypeStillThere)
		}
		w.exported, w.attached = false, false
		return activities.DiskDetachResult{Loops: []string{"/dev/loop9"}, StoppedDaemon: 4242}, nil
	})
	on("DiskInspectionState", inspectAct.DiskInspectionState, func(_ context.Context, l activities.DiskLocation) (activities.DiskWorld, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		dw := activities.DiskWorld{Exported: w.exported, Mounted: w.mounts}
		if w.attached {
			dw.Loops = []activities.LoopDevice{{Name: "/dev/loop9", RO: true}}
		}
		return dw, nil
	})
	on("GetInstance", computeAct.GetInstance, func(_ context.Context, id string) (activities.Instance, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return activities.Instance{ID: id, Status: w.status}, nil
	})
}

func (f *fixture) approveDataAccess(after time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(f.t, st.OpenGates, 1)
		g := st.OpenGates[0]
		assert.Equal(f.t, wf.GateDataAccess, g.Name)
		assert.True(f.t, g.Destructive, "data-access is two-person")
		assert.Contains(f.t, g.Summary, "INC-4711: instance does not boot", "the reason is in the gate's summary")
		assert.Contains(f.t, g.Summary, "/etc/fstab")
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateDataAccess, By: "alice"}, "may not approve the destructive gate")
	}, after)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateDataAccess, By: "bob", Comment: "INC-4711 ok"}, "")
	}, after+time.Minute)
}

func (w *world) clean(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	assert.False(t, w.exported || w.attached || w.mounts, "nothing left exposed: exported=%v attached=%v mounted=%v", w.exported, w.attached, w.mounts)
}

func TestInspectDiskHappyPath(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w)
	f.approveDataAccess(time.Minute)
	f.run(wf.InspectDisk.Type, inspectInput("/etc/fstab", "/var/log/syslog", "/etc/missing", "/etc/evil"))
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, "2 of 4 file(s) read (1 over the cap), 1 missing, 1 refused", rep.Summary)
	assert.Equal(t, []string{"locate", "suspend", "expose", "mount", "collect", "unmount", "detach", "resume"}, w.called())
	assert.Equal(t, "ACTIVE", w.status)
	w.clean(t)
	assert.Contains(t, rep.LeftState, "is ACTIVE; nothing of its disk is mounted, attached or exported")
	var files []activities.GuestFile
	b, err := json.Marshal(rep.Details["files"])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &files))
	require.Len(t, files, 4)
	assert.Equal(t, "UUID=0b6f /\n", files[0].Content)
	assert.Equal(t, activities.FileOverCap, files[1].Status)
	assert.Equal(t, "bob", rep.Decisions[0].By)
	var subjects []string
	for _, fd := range rep.Findings {
		subjects = append(subjects, fd.Severity+":"+fd.Subject)
	}
	assert.ElementsMatch(t, []string{"warning:/etc/missing", "warning:/etc/evil", "info:/var/log/syslog"}, subjects)
}

func TestInspectDiskInvalidInputChangesNothing(t *testing.T) {
	many := make([]string, 10_000)
	for i := range many {
		many[i] = fmt.Sprintf("/var/log/f%d", i)
	}
	for field, in := range map[string]wf.InspectDiskInput{
		"instance":  {Meta: wf.Meta{RequestedBy: "alice", Reason: "r"}, Instance: "../../etc", Paths: []string{"/etc/fstab"}},
		"reason":    {Meta: wf.Meta{RequestedBy: "alice"}, Instance: inspectID, Paths: []string{"/etc/fstab"}},
		"path":      inspectInput(many...),
		"path[0]":   inspectInput("../../etc/shadow"),
		"path[1]":   inspectInput("/etc/fstab", "/etc/fstab\x00"),
		"path[2]":   inspectInput("/etc/fstab", "/a", "/etc/fs\ntab"),
		"max-bytes": {Meta: wf.Meta{RequestedBy: "alice", Reason: "r"}, Instance: inspectID, Paths: []string{"/a", "/b", "/c"}, MaxBytes: 512 << 10},
	} {
		err := in.Validate()
		var fe *wf.FieldError
		require.True(t, errors.As(err, &fe), "%s: %v", field, err)
		assert.Equal(t, field, fe.Field, err.Error())
		assert.NotContains(t, err.Error(), "\x00")
		assert.NotContains(t, err.Error(), "\n")

		f := newFixture(t, inspectPolicy())
		w := &world{status: "ACTIVE"}
		inspectMocks(f, w)
		f.run(wf.InspectDisk.Type, in)
		rep := f.report()
		assert.Equal(t, wf.StatusFailed, rep.Status)
		assert.Contains(t, rep.Summary, "invalid input")
		assert.Empty(t, w.called(), field)
	}
}

// Without data-access among the two-person gates the run refuses before it even looks.
func TestInspectDiskNeedsTwoPersonPolicy(t *testing.T) {
	f := newFixture(t, basePolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, rep.Summary, "two_person_gates")
	assert.Empty(t, w.called())
}

func TestInspectDiskRejectedTouchesNothing(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateDataAccess, By: "bob", Comment: "no ticket"}, "")
	}, time.Minute)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	assert.Equal(t, []string{"locate"}, w.called())
	assert.Equal(t, "ACTIVE", w.status)
}

// A run cancelled while it waits at the gate has done nothing and undoes nothing.
func TestInspectDiskCancelledAtGate(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w)
	f.env.RegisterDelayedCallback(func() { f.env.CancelWorkflow() }, time.Minute)
	f.run(wf.InspectDisk.Type, inspectInput())
	require.True(t, f.env.IsWorkflowCompleted())
	assert.Equal(t, []string{"locate"}, w.called())
}

// The collection fails for good (the mount went away): the run fails and still gives back.
func TestInspectDiskCollectFailsCompensates(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w, "ReadGuestFiles")
	f.env.OnActivity(inspectAct.ReadGuestFiles, mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("the guest file system is not mounted read-only", activities.ErrTypeRefused, nil))
	f.approveDataAccess(time.Minute)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusFailed, rep.Status)
	assert.Equal(t, []string{"locate", "suspend", "expose", "mount", "unmount", "detach", "resume"}, w.called())
	assert.Equal(t, "ACTIVE", w.status)
	w.clean(t)
	assert.Contains(t, rep.LeftState, "is ACTIVE; nothing of its disk is mounted")
}

// The collection stalls (retryable errors, out of attempts); the operator aborts: compensation.
func TestInspectDiskAbortWhileExposed(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w, "ReadGuestFiles")
	f.env.OnActivity(inspectAct.ReadGuestFiles, mock.Anything, mock.Anything).Return(nil, errors.New("ssh: connection reset"))
	f.approveDataAccess(time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.Stalled, 1, "%+v", st)
		assert.Equal(t, "collect", st.Stalled[0].Step)
		w.mu.Lock()
		assert.True(t, w.mounts, "exposed and mounted while the step is stalled")
		w.mu.Unlock()
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "collect", Action: wf.ResolveAbort, By: "bob"}, "")
	}, time.Hour)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	calls := w.called()
	assert.Equal(t, []string{"unmount", "detach", "resume"}, calls[len(calls)-3:])
	assert.Equal(t, "ACTIVE", w.status)
	w.clean(t)
}

// The collection stalls (a guest file reads EIO on every attempt); the run is cancelled while
// stalled: compensation, and the report shows the step failed, not stalled.
func TestInspectDiskCancelledWhileStalled(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w, "ReadGuestFiles")
	f.env.OnActivity(inspectAct.ReadGuestFiles, mock.Anything, mock.Anything).Return(nil, errors.New("file_heads on compute1: exit 1: head: Input/output error"))
	f.approveDataAccess(time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.Stalled, 1, "%+v", st)
		assert.Equal(t, "collect", st.Stalled[0].Step)
		w.mu.Lock()
		assert.True(t, w.mounts, "exposed and mounted while the step is stalled")
		w.mu.Unlock()
		f.env.CancelWorkflow()
	}, time.Hour)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	assert.Contains(t, rep.Summary, "cancelled")
	collect := stepNamed(rep, "collect")
	require.NotNil(t, collect)
	assert.Equal(t, wf.StepFailed, collect.State, "a finished run has no stalled step")
	assert.Equal(t, "cancelled while stalled", collect.Detail)
	assert.Contains(t, collect.Error, "Input/output error")
	calls := w.called()
	assert.Equal(t, []string{"unmount", "detach", "resume"}, calls[len(calls)-3:])
	assert.Equal(t, "ACTIVE", w.status)
	w.clean(t)
	assert.Contains(t, rep.LeftState, "is ACTIVE; nothing of its disk is mounted, attached or exported")
}

// Cancelled while the collection runs: the compensation runs on a disconnected context.
func TestInspectDiskCancelledWhileCollecting(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w, "ReadGuestFiles")
	f.env.OnActivity(inspectAct.ReadGuestFiles, mock.Anything, mock.Anything).After(30*time.Minute).Return([]activities.GuestFile{}, nil)
	f.approveDataAccess(time.Minute)
	f.env.RegisterDelayedCallback(func() {
		w.mu.Lock()
		require.True(t, w.mounts)
		w.mu.Unlock()
		f.env.CancelWorkflow()
	}, 10*time.Minute)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	assert.Contains(t, rep.Summary, "the run was cancelled during collect")
	assert.Equal(t, wf.StepFailed, stepState(rep, "collect"))
	assert.Contains(t, stepDetail(rep, "collect"), "cancelled while the files were read")
	assert.Equal(t, []string{"locate", "suspend", "expose", "mount", "unmount", "detach", "resume"}, w.called(), "each clean-up once")
	assert.Equal(t, wf.StepDone, stepState(rep, "final-state"))
	assert.Equal(t, "ACTIVE", w.status)
	w.clean(t)
}

// The unmount stalls (busy); an operator retries once it can work; then detach and resume.
func TestInspectDiskUnmountStallsThenRetried(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w, "UnmountGuestFS")
	busy := true
	f.env.OnActivity(inspectAct.UnmountGuestFS, mock.Anything, mock.Anything).Return(func(_ context.Context, l activities.DiskLocation) (activities.DiskUnmountResult, error) {
		w.call("unmount")
		w.mu.Lock()
		defer w.mu.Unlock()
		if busy {
			return activities.DiskUnmountResult{}, errors.New("umount: target is busy")
		}
		w.mounts = false
		return activities.DiskUnmountResult{WasMounted: true}, nil
	})
	f.approveDataAccess(time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.Stalled, 1, "%+v", st)
		assert.Equal(t, "unmount", st.Stalled[0].Step)
		assert.Equal(t, wf.StatusStalled, st.Status)
		w.mu.Lock()
		busy = false
		w.mu.Unlock()
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "unmount", Action: wf.ResolveRetry, By: "bob"}, "")
	}, 2*time.Hour)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	calls := w.called()
	assert.Equal(t, []string{"unmount", "detach", "resume"}, calls[len(calls)-3:])
	w.clean(t)
	assert.Equal(t, "ACTIVE", w.status)
}

// The detach cannot be done and the operator aborts it: the instance is not resumed on an exposed
// disk, and the report says what is left and how to finish by hand.
func TestInspectDiskDetachAbortedLeavesSuspended(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w, "DetachInstanceDisk")
	f.env.OnActivity(inspectAct.DetachInstanceDisk, mock.Anything, mock.Anything).Return(activities.DiskDetachResult{},
		temporal.NewApplicationError("after detach: loops=[/dev/loop9]", activities.ErrTypeStillThere))
	f.approveDataAccess(time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.Stalled, 1)
		assert.Equal(t, "detach", st.Stalled[0].Step)
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "detach", Action: wf.ResolveAbort, By: "bob"}, "")
	}, 2*time.Hour)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.NotContains(t, w.called(), "resume")
	assert.Equal(t, "SUSPENDED", w.status)
	assert.Equal(t, "not resumed while its disk may still be exposed", stepDetail(rep, "resume"))
	assert.Contains(t, rep.LeftState, "is SUSPENDED")
	assert.Contains(t, rep.LeftState, "check by hand")
	assert.Contains(t, rep.LeftState, "openstack server resume "+inspectID)
}

// Expose fails for good (the disk is in use and the operator aborts): unmount and detach still
// check the world, the instance is resumed.
func TestInspectDiskExposeFailsCompensates(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w, "ExposeInstanceDisk")
	f.env.OnActivity(inspectAct.ExposeInstanceDisk, mock.Anything, mock.Anything).Return(activities.DiskExposure{},
		temporal.NewApplicationError("Failed to get shared \"write\" lock", activities.ErrTypeDiskInUse))
	f.approveDataAccess(time.Minute)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "expose", Action: wf.ResolveAbort, By: "alice"}, "")
	}, 2*time.Hour)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	assert.Equal(t, []string{"locate", "suspend", "unmount", "detach", "resume"}, w.called())
	assert.Equal(t, "ACTIVE", w.status)
}

// A SHUTOFF instance is neither suspended nor resumed; its disk is still taken down.
func TestInspectDiskShutoffInstanceLeftAsIs(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "SHUTOFF"}
	inspectMocks(f, w)
	f.approveDataAccess(time.Minute)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, []string{"locate", "expose", "mount", "collect", "unmount", "detach"}, w.called())
	assert.Equal(t, "SHUTOFF", w.status)
	assert.Contains(t, stepDetail(rep, "resume"), "did not suspend")
	assert.Contains(t, rep.LeftState, "is SHUTOFF; nothing of its disk")
}

// A PAUSED instance (its QEMU still holds the disk) is refused in the plan, before the gate.
func TestInspectDiskPausedRefused(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "PAUSED"}
	inspectMocks(f, w)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	assert.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, rep.Summary, "is PAUSED")
	assert.Equal(t, []string{"locate"}, w.called())
}

// The gate waited past plan_max_age and the instance was stopped meanwhile: the plan is checked
// again before the first side effect, the gate asks again, and the run neither suspends nor
// resumes (starting an instance someone stopped would not be giving it back).
func TestInspectDiskStalePlanFollowsTheInstance(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w)
	f.env.RegisterDelayedCallback(func() {
		w.mu.Lock()
		w.status = "SHUTOFF"
		w.mu.Unlock()
	}, 90*time.Minute)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateDataAccess, By: "bob"}, "")
	}, 2*time.Hour)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.OpenGates, 1, "asked again")
		assert.Contains(t, st.OpenGates[0].Summary, "ASKED AGAIN")
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateDataAccess, By: "bob"}, "")
	}, 2*time.Hour+time.Minute)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, []string{"locate", "locate", "expose", "mount", "collect", "unmount", "detach"}, w.called())
	assert.Equal(t, "SHUTOFF", w.status)
	assert.Contains(t, stepDetail(rep, "suspend"), "SHUTOFF")
	w.clean(t)
}
