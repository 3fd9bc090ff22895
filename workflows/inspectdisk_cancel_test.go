package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	wf "github.com/stackrun/stackrun/workflows"
)

// hangingSSH is a compute host whose every command hangs (a head that reads a bad spot of the
// disk) until its context ends, as the SSH pool then kills it and answers.
type hangingSSH struct {
	started, killed atomic.Int32
}

func (h *hangingSSH) Run(ctx context.Context, _ remote.Host, cmd remote.Command) (remote.Result, error) {
	h.started.Add(1)
	<-ctx.Done()
	h.killed.Add(1)
	return remote.Result{}, fmt.Errorf("remote: %s on compute1: %w (command timeout 30s): %w", cmd.Name, remote.ErrTimeout, context.Cause(ctx))
}

// TestInspectDiskCancelDuringCollectOnDevServer cancels a run while its collect activity runs, on
// a real dev server (real cancellation: delivered to the activity only in a heartbeat's answer).
// Either way the collection ends cancelled, the clean-up steps run once each, the run ends
// Aborted ("cancelled during collect"), nothing left exposed, its end is notified once (Aborted)
// and its history replays.
//   - the real ReadGuestFiles, its command hanging: it heartbeats while the command runs, so
//     it sees the cancel, the command is killed and the attempt ends cancelled;
//   - an activity that never sees the cancel and returns its files (a command that ends): the
//     files are not kept and the run does not complete as if nobody had cancelled it.
func TestInspectDiskCancelDuringCollectOnDevServer(t *testing.T) {
	if testing.Short() {
		t.Skip("a dev server and a cancel delivered by heartbeat (some 20 s)")
	}
	srv := devserver.Start(t)
	run := func(t *testing.T, tq, instance string, collect any) (*world, *wf.Report, time.Duration, []activities.Notification) {
		w := &world{status: "ACTIVE"}
		wk := worker.New(srv.Client, tq, worker.Options{})
		wf.Register(wk)
		keys := testKeys()
		wk.RegisterActivity(&activities.Machine{Policy: inspectPolicy(), Keys: func() (trust.Policy, error) { return keys, nil }})
		// The machine's Notify, replaced by one that records what it is told.
		var notesMu sync.Mutex
		var notes []activities.Notification
		wk.RegisterActivityWithOptions(func(_ context.Context, n activities.Notification) error {
			notesMu.Lock()
			defer notesMu.Unlock()
			notes = append(notes, n)
			return nil
		}, activity.RegisterOptions{Name: "Notify", DisableAlreadyRegisteredCheck: true})
		wk.RegisterActivity(&activities.Lease{Client: srv.Client, TaskQueue: tq}) // the start's nonce
		reg := func(name string, fn any) { wk.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
		loc := inspectLoc
		loc.Instance = instance
		loc.Work = "/run/stackrun/inspect/" + instance
		loc.Export, loc.PIDFile, loc.MountPoint = loc.Work+"/export.raw", loc.Work+"/qsd.pid", loc.Work+"/mnt"
		reg("LocateInstanceDisk", func(context.Context, string) (activities.DiskLocation, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			l := loc
			l.Status = w.status
			return l, nil
		})
		reg("SuspendInstance", func(_ context.Context, req activities.PowerRequest) (activities.PowerResult, error) {
			w.call("suspend")
			w.mu.Lock()
			defer w.mu.Unlock()
			w.status = "SUSPENDED"
			return activities.PowerResult{Instance: req.Instance, Before: "ACTIVE", After: "SUSPENDED", Acted: true}, nil
		})
		reg("ExposeInstanceDisk", func(context.Context, activities.DiskLocation) (activities.DiskExposure, error) {
			w.call("expose")
			w.mu.Lock()
			defer w.mu.Unlock()
			w.exported, w.attached = true, true
			return activities.DiskExposure{Loop: "/dev/loop9", FSType: "ext4", DaemonPID: 4242}, nil
		})
		reg("MountGuestFS", func(_ context.Context, req activities.DiskMountRequest) (activities.DiskMountResult, error) {
			w.call("mount")
			w.mu.Lock()
			defer w.mu.Unlock()
			w.mounts = true
			return activities.DiskMountResult{MountPoint: req.Location.MountPoint, Options: "ro"}, nil
		})
		reg("ReadGuestFiles", collect)
		reg("UnmountGuestFS", func(context.Context, activities.DiskLocation) (activities.DiskUnmountResult, error) {
			w.call("unmount")
			w.mu.Lock()
			defer w.mu.Unlock()
			was := w.mounts
			w.mounts = false
			return activities.DiskUnmountResult{WasMounted: was}, nil
		})
		reg("DetachInstanceDisk", func(context.Context, activities.DiskLocation) (activities.DiskDetachResult, error) {
			w.call("detach")
			w.mu.Lock()
			defer w.mu.Unlock()
			w.exported, w.attached = false, false
			return activities.DiskDetachResult{Loops: []string{"/dev/loop9"}, StoppedDaemon: 4242}, nil
		})
		reg("ResumeInstance", func(_ context.Context, req activities.PowerRequest) (activities.PowerResult, error) {
			w.call("resume")
			w.mu.Lock()
			defer w.mu.Unlock()
			w.status = "ACTIVE"
			return activities.PowerResult{Instance: req.Instance, Before: "SUSPENDED", After: "ACTIVE", Acted: true}, nil
		})
		reg("GetInstance", func(_ context.Context, id string) (activities.Instance, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return activities.Instance{ID: id, Status: w.status}, nil
		})
		reg("DiskInspectionState", func(context.Context, activities.DiskLocation) (activities.DiskWorld, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return activities.DiskWorld{Exported: w.exported, Mounted: w.mounts}, nil
		})
		require.NoError(t, wk.Start())
		t.Cleanup(wk.Stop)

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		in := inspectInput()
		in.Instance = instance
		rb, err := wf.FindRunbook("inspect-disk")
		require.NoError(t, err)
		started, err := control.Start(ctx, srv.Client, tq, rb, &in, control.KeySigner{Key: testOps[in.RequestedBy].Signer})
		require.NoError(t, err)
		waitFor := func(what string, ok func(wf.Status) bool) {
			for {
				st, err := control.Status(ctx, srv.Client, started.WorkflowID)
				if err == nil && ok(st) {
					return
				}
				require.NotContains(t, []wf.RunStatus{wf.StatusFailed, wf.StatusCompleted, wf.StatusAborted}, st.Status, "waiting for %s: %+v", what, st)
				require.NoError(t, ctx.Err(), "waiting for %s", what)
				time.Sleep(100 * time.Millisecond)
			}
		}
		waitFor("the gate", func(st wf.Status) bool { return len(st.OpenGates) == 1 })
		_, err = control.Approve(ctx, srv.Client, started.WorkflowID, wf.GateDecisionRequest{Gate: wf.GateDataAccess, By: "bob"}, control.KeySigner{Key: testOps["bob"].Signer})
		require.NoError(t, err)
		waitFor("collect", func(st wf.Status) bool { return st.CurrentStep == "collect" })
		time.Sleep(time.Second) // the attempt has started (and heartbeated once)
		at := time.Now()
		require.NoError(t, srv.Client.CancelWorkflow(ctx, started.WorkflowID, ""))
		rep, err := control.Report(ctx, srv.Client, started.WorkflowID, true)
		require.NoError(t, err)
		took := time.Since(at)
		replayChain(t, ctx, srv.Client, started.WorkflowID, "") // the end on a disconnected context replays
		notesMu.Lock()
		defer notesMu.Unlock()
		return w, rep, took, slices.Clone(notes)
	}
	check := func(t *testing.T, w *world, rep *wf.Report, notes []activities.Notification) {
		t.Helper()
		// The run's end is told once, Aborted, with nothing read (before the change
		// finish-notify-on-cancel, the notification's activity failed "canceled").
		var finished []activities.Notification
		var kinds []string
		for _, n := range notes {
			kinds = append(kinds, n.Kind)
			if n.Kind == "run-finished" {
				finished = append(finished, n)
			}
		}
		if assert.Len(t, finished, 1, "run-finished notifications (notified: %v)", kinds) {
			assert.Equal(t, string(wf.StatusAborted), finished[0].Status)
			assert.Equal(t, rep.Summary, finished[0].Summary)
			b, err := json.Marshal(finished[0])
			require.NoError(t, err)
			assert.NotContains(t, string(b), "secret", "nothing read goes into the notification")
		}
		assert.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
		assert.Contains(t, rep.Summary, "the run was cancelled during collect")
		collect := stepNamed(rep, "collect")
		require.NotNil(t, collect)
		assert.Equal(t, wf.StepFailed, collect.State)
		assert.Contains(t, collect.Detail, "cancelled while the files were read")
		assert.NotContains(t, collect.Detail, "stalled")
		assert.Nil(t, rep.Details["files"], "nothing read is kept")
		for _, s := range []string{"unmount", "detach", "resume", "final-state"} {
			assert.Equal(t, wf.StepDone, stepState(rep, s), s)
		}
		assert.Equal(t, []string{"suspend", "expose", "mount", "unmount", "detach", "resume"}, w.called(), "each clean-up once")
		assert.Equal(t, "ACTIVE", w.status)
		w.clean(t)
		assert.Contains(t, rep.LeftState, "is ACTIVE; nothing of its disk is mounted, attached or exported")
	}

	t.Run("the real activity, its command hanging", func(t *testing.T) {
		ssh := &hangingSSH{}
		cat, err := remote.NewCatalogue(nil, nil, nil)
		require.NoError(t, err)
		d := &activities.DiskInspector{Hosts: &activities.Hosts{
			Inventory: map[string]activities.InventoryHost{"compute1": {Address: "127.0.0.1", Roles: []string{"compute"}}},
			Runner:    ssh, Catalogue: cat,
		}}
		w, rep, took, notes := run(t, "inspect-cancel-real", "6f1c2a34-5b6d-4e7f-8091-a2b3c4d5e6f8", d.ReadGuestFiles)
		t.Logf("cancel to report: %s; %s", took.Round(time.Millisecond), rep.Summary)
		check(t, w, rep, notes)
		assert.EqualValues(t, 1, ssh.started.Load(), "one attempt, one command")
		assert.EqualValues(t, 1, ssh.killed.Load(), "the cancel reached the activity and killed its command")
		// The SDK sends a heartbeat per 0.8 × the 20 s heartbeat timeout: the cancel is seen
		// within some 16 s, before the heartbeat timeout.
		assert.Less(t, took, 20*time.Second)
	})
	t.Run("an activity that returns its files anyway", func(t *testing.T) {
		w, rep, _, notes := run(t, "inspect-cancel-deaf", "6f1c2a34-5b6d-4e7f-8091-a2b3c4d5e6f9",
			func(ctx context.Context, req activities.GuestFileRequest) ([]activities.GuestFile, error) {
				time.Sleep(3 * time.Second) // one command that ends, the cancel not seen
				return []activities.GuestFile{{Path: req.Paths[0], Status: activities.FileOK, Content: "secret"}}, nil
			})
		check(t, w, rep, notes)
	})
}
