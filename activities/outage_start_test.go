package activities

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
)

// A start whose answer was lost (the worker killed after systemctl start, before the result
// reached the server): the retry finds the service running and, from the intent the first
// attempt heartbeated before it acted, reports it started by this run, not "already up"; it
// does not start it again. Without an earlier intent, a running service is "already up".
func TestOutageStartServiceRetryAfterItActedIsStarted(t *testing.T) {
	f := &fakeRunner{running: map[string]bool{}}
	o := &Outage{Hosts: newHosts(t, f)}
	s := OutageService{Host: "compute1", Role: "compute", Service: "nova-compute", Verify: []string{"process"}}
	var suite testsuite.WorkflowTestSuite

	// The first attempt: stopped; the intent is recorded before the start is sent.
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(o)
	var intent OutageStartIntent
	var ranAtIntent []string
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
		require.NoError(t, d.Get(&intent))
		ranAtIntent = append([]string(nil), f.ran...)
	})
	v, err := env.ExecuteActivity(o.OutageStartService, s)
	require.NoError(t, err)
	var first OutageStarted
	require.NoError(t, v.Get(&first))
	assert.False(t, first.AlreadyUp)
	require.False(t, intent.Starting.IsZero(), "the intent is heartbeated")
	assert.Equal(t, []string{"compute1: systemctl is-active nova-compute"}, ranAtIntent, "recorded before the start")
	assert.True(t, f.running["nova-compute"])

	// Its answer was lost: the retry carries the first attempt's heartbeat details.
	f.ran = nil
	env = suite.NewTestActivityEnvironment()
	env.RegisterActivity(o)
	env.SetHeartbeatDetails(intent)
	v, err = env.ExecuteActivity(o.OutageStartService, s)
	require.NoError(t, err)
	var retry OutageStarted
	require.NoError(t, v.Get(&retry))
	assert.False(t, retry.AlreadyUp, "started by this run's first attempt")
	assert.True(t, retry.Retried)
	assert.True(t, retry.At.Equal(intent.Starting), "since the first attempt's start: %v %v", retry.At, intent.Starting)
	assert.Equal(t, []string{"compute1: systemctl is-active nova-compute"}, f.ran, "not started twice")

	// A service that ran before this activity: no intent, "already up".
	f.ran = nil
	env = suite.NewTestActivityEnvironment()
	env.RegisterActivity(o)
	v, err = env.ExecuteActivity(o.OutageStartService, s)
	require.NoError(t, err)
	var up OutageStarted
	require.NoError(t, v.Get(&up))
	assert.True(t, up.AlreadyUp)
	assert.False(t, up.Retried)

	// A retry whose first attempt recorded its intent but never started it (killed before the
	// command): stopped still, so it starts it now.
	f.ran, f.running["nova-compute"] = nil, false
	env = suite.NewTestActivityEnvironment()
	env.RegisterActivity(o)
	env.SetHeartbeatDetails(intent)
	v, err = env.ExecuteActivity(o.OutageStartService, s)
	require.NoError(t, err)
	var again OutageStarted
	require.NoError(t, v.Get(&again))
	assert.False(t, again.AlreadyUp)
	assert.False(t, again.Retried)
	assert.Equal(t, []string{"compute1: systemctl is-active nova-compute", "compute1: systemctl start nova-compute"}, f.ran)
	assert.WithinDuration(t, time.Now(), again.At, time.Minute)
}
