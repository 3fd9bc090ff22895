package activities

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// hangingRunner is a host whose commands hang until their context ends (a head reading a bad
// spot of the disk), then answer as the SSH pool does when it kills one.
type hangingRunner struct{ started, killed atomic.Int32 }

func (h *hangingRunner) Run(ctx context.Context, _ remote.Host, cmd remote.Command) (remote.Result, error) {
	h.started.Add(1)
	<-ctx.Done()
	h.killed.Add(1)
	return remote.Result{}, fmt.Errorf("remote: %s: %w: %w", cmd.Name, remote.ErrTimeout, context.Cause(ctx))
}

// TestReadGuestFilesHeartbeatsWhileACommandRunsAndStopsOnCancel: Temporal delivers a cancel only
// in a heartbeat's answer, so the collection heartbeats while one command hangs (not only before
// each command); once its context ends (the cancel), the command is killed and the activity
// returns at once with the context's error, which the SDK reports as cancelled.
func TestReadGuestFilesHeartbeatsWhileACommandRunsAndStopsOnCancel(t *testing.T) {
	var beats atomic.Int32
	orig := recordHeartbeat
	recordHeartbeat = func(ctx context.Context, details ...any) {
		beats.Add(1)
		orig(ctx, details...)
	}
	t.Cleanup(func() { recordHeartbeat = orig })

	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	ssh := &hangingRunner{}
	d := &DiskInspector{
		Hosts:     &Hosts{Inventory: map[string]InventoryHost{"compute1": {Address: "127.0.0.1", Roles: []string{"compute"}}}, Runner: ssh, Catalogue: cat},
		Heartbeat: 10 * time.Millisecond,
	}
	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{BackgroundActivityContext: bg})
	env.RegisterActivity(d)

	id := "6f1c2a34-5b6d-4e7f-8091-a2b3c4d5e6f7"
	work := "/run/stackrun/inspect/" + id
	loc := DiskLocation{Instance: id, Host: "compute1", Method: MethodQSD, Work: work, Export: work + "/export.raw", MountPoint: work + "/mnt",
		Disk: "/var/lib/nova/instances/" + id + "/disk"}
	done := make(chan error, 1)
	go func() {
		_, err := env.ExecuteActivity(d.ReadGuestFiles, GuestFileRequest{Location: loc, Paths: []string{"/etc/fstab"}, MaxBytes: 100})
		done <- err
	}()
	require.Eventually(t, func() bool { return ssh.started.Load() == 1 && beats.Load() >= 5 }, 5*time.Second, 5*time.Millisecond,
		"heartbeats while the command hangs")
	select {
	case err := <-done:
		t.Fatalf("returned while its command hangs: %v", err)
	default:
	}
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "canceled")
		assert.Less(t, time.Since(start), time.Second, "promptly")
	case <-time.After(5 * time.Second):
		t.Fatal("ReadGuestFiles did not return after its context was cancelled")
	}
	assert.EqualValues(t, 1, ssh.killed.Load(), "the command under way was killed")
	n := beats.Load()
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, n, beats.Load(), "no heartbeat after the activity returned")
}
