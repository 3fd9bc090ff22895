package workflows_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

func TestHostLeaseLimitsHostsOutOfService(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger())
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(lease)
	var mu sync.Mutex
	released := false // evacuate/c1 gave its lease back: it no longer wants c1
	env.OnActivity(lease.Wants, mock.Anything, mock.Anything).Return(func(_ context.Context, h activities.LeaseHolder) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return !(released && h.Host == "c1"), nil
	})
	var granted []string
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", wf.SignalLeaseGranted, mock.Anything).Return(
		func(ns, id, run, name string, arg any) error {
			mu.Lock()
			granted = append(granted, id)
			mu.Unlock()
			return nil
		})
	send := func(d time.Duration, sig string, id, host string) {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(sig, activities.LeaseRequest{WorkflowID: id, Host: host, Max: 1})
		}, d)
	}
	send(time.Second, "acquire", "evacuate/c1", "c1")
	send(2*time.Second, "acquire", "evacuate/c2", "c2")
	send(3*time.Second, "acquire", "evacuate/c1", "c1") // repeated: same grant again
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(wf.QueryLease)
		require.NoError(t, err)
		var st activities.LeaseState
		require.NoError(t, v.Get(&st))
		require.Len(t, st.Holders, 1)
		require.Len(t, st.Waiting, 1)
		mu.Lock()
		require.Equal(t, []string{"evacuate/c1", "evacuate/c1"}, granted)
		mu.Unlock()
	}, 4*time.Second)
	env.RegisterDelayedCallback(func() { mu.Lock(); released = true; mu.Unlock() }, 4500*time.Millisecond)
	send(5*time.Second, "release", "evacuate/c1", "c1")
	env.RegisterDelayedCallback(func() {
		mu.Lock()
		require.Equal(t, []string{"evacuate/c1", "evacuate/c1", "evacuate/c2"}, granted)
		mu.Unlock()
		env.CancelWorkflow()
	}, 6*time.Second)
	env.ExecuteWorkflow(wf.HostLease, activities.LeaseState{Max: 1})
	require.True(t, env.IsWorkflowCompleted())
}

// leaseEnv runs the lease workflow with runs that answer Wants from wants (workflow ID -> keys).
func leaseEnv(t *testing.T, wants map[string][]string) (*testsuite.TestWorkflowEnvironment, func() []string, func() activities.LeaseState, *sync.Mutex) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger())
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(lease)
	var mu sync.Mutex
	env.OnActivity(lease.Wants, mock.Anything, mock.Anything).Return(func(_ context.Context, h activities.LeaseHolder) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range wants[h.WorkflowID] {
			if k == h.Host {
				return true, nil
			}
		}
		return false, nil
	})
	var granted []string
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, wf.SignalLeaseGranted, mock.Anything).Return(
		func(ns, id, run, name string, arg any) error {
			mu.Lock()
			granted = append(granted, id)
			mu.Unlock()
			return nil
		})
	state := func() activities.LeaseState {
		v, err := env.QueryWorkflow(wf.QueryLease)
		require.NoError(t, err)
		var st activities.LeaseState
		require.NoError(t, v.Get(&st))
		return st
	}
	return env, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), granted...) }, state, &mu
}

// The lease is a lock per host: a second run on a host another run holds waits, even with free
// slots, while a run on another host goes ahead.
func TestHostLeaseIsALockPerHost(t *testing.T) {
	wants := map[string][]string{"evacuate/c1": {"c1"}, "restart-service/c1/nova-compute": {"c1"}, "swift-disk/s1/sdb": {"s1"}}
	env, granted, state, mu := leaseEnv(t, wants)
	send := func(d time.Duration, sig, id, host string) {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(sig, activities.LeaseRequest{WorkflowID: id, RunID: "r-" + id, Host: host, Max: 3})
		}, d)
	}
	send(time.Second, "acquire", "evacuate/c1", "c1")
	send(2*time.Second, "acquire", "restart-service/c1/nova-compute", "c1")
	send(3*time.Second, "acquire", "swift-disk/s1/sdb", "s1")
	env.RegisterDelayedCallback(func() {
		require.Equal(t, []string{"evacuate/c1", "swift-disk/s1/sdb"}, granted())
		require.Len(t, state().Waiting, 1, "the restart waits for the evacuation of its host")
		mu.Lock()
		wants["evacuate/c1"] = nil // it ended and gave its lease back
		mu.Unlock()
	}, 4*time.Second)
	send(5*time.Second, "release", "evacuate/c1", "c1")
	env.RegisterDelayedCallback(func() {
		require.Equal(t, []string{"evacuate/c1", "swift-disk/s1/sdb", "restart-service/c1/nova-compute"}, granted())
		env.CancelWorkflow()
	}, 6*time.Second)
	env.ExecuteWorkflow(wf.HostLease, activities.LeaseState{Max: 3})
	require.True(t, env.IsWorkflowCompleted())
}

// Forged signals change nothing: a "release" for a run that still holds its host is refused (the
// limit holds), an "acquire" for a run that never asked is not granted.
func TestHostLeaseRefusesForgedReleaseAndAcquire(t *testing.T) {
	wants := map[string][]string{"evacuate/c1": {"c1"}, "evacuate/c2": {"c2"}}
	env, granted, state, _ := leaseEnv(t, wants)
	send := func(d time.Duration, sig, id, host string) {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(sig, activities.LeaseRequest{WorkflowID: id, RunID: "r-" + id, Host: host, Max: 1})
		}, d)
	}
	send(time.Second, "acquire", "evacuate/c1", "c1")
	send(2*time.Second, "acquire", "evacuate/c2", "c2")
	send(3*time.Second, "release", "evacuate/c1", "c1")     // forged: c1 still holds it
	send(4*time.Second, "acquire", "recover-host/c9", "c9") // forged: nobody asked
	env.RegisterDelayedCallback(func() {
		st := state()
		require.Equal(t, []string{"evacuate/c1"}, granted(), "the forged release let c2 out of service too")
		require.Len(t, st.Holders, 1)
		require.Equal(t, "evacuate/c1", st.Holders[0].WorkflowID)
		require.Len(t, st.Refused, 1)
		require.Contains(t, st.Refused[0], "forged release")
		env.CancelWorkflow()
	}, 5*time.Second)
	env.ExecuteWorkflow(wf.HostLease, activities.LeaseState{Max: 1})
	require.True(t, env.IsWorkflowCompleted())
}
