package workflows_test

import (
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
