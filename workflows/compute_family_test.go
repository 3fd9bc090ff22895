package workflows_test

import (
	"context"
	"fmt"
	"slices"
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

var (
	computeAct *activities.Compute
	novaDBAct  *activities.NovaDB
)

func TestPlanMovesPacksAndSkips(t *testing.T) {
	insts := []activities.Instance{
		{ID: "a", Name: "a", Status: "ACTIVE", VCPUs: 2, RAMMB: 4096, DiskGB: 20},
		{ID: "b", Name: "b", Status: "SHUTOFF", VCPUs: 1, RAMMB: 2048, DiskGB: 10},
		{ID: "c", Name: "c", Status: "ERROR", VCPUs: 1, RAMMB: 512, DiskGB: 1, Fault: "boom"},
		{ID: "d", Name: "d", Status: "ACTIVE", TaskState: "resize_prep", VCPUs: 1, RAMMB: 512, DiskGB: 1},
		{ID: "e", Name: "e", Status: "PAUSED", VCPUs: 1, RAMMB: 3000, DiskGB: 1},
		{ID: "f", Name: "f", Status: "SUSPENDED", VCPUs: 1, RAMMB: 512, DiskGB: 1},
	}
	caps := []activities.HostCapacity{{Host: "c2", FreeVCPUs: 10, FreeRAMMB: 6000, FreeDiskGB: 100}, {Host: "c3", FreeVCPUs: 10, FreeRAMMB: 6000, FreeDiskGB: 100}}
	moves, err := wf.PlanMoves("c1", insts, caps, false)
	require.NoError(t, err)
	kinds := map[string]string{}
	to := map[string]string{}
	for _, m := range moves {
		kinds[m.ID], to[m.ID] = m.Kind, m.To
	}
	assert.Equal(t, map[string]string{"a": "live", "b": "cold", "c": "skip", "d": "skip", "e": "live", "f": "skip"}, kinds)
	// Largest first onto the target with the most free memory: a (4096) → c2, e (3000) → c3
	// (6000 > 1904), b (2048) → c3 (3000 left > 1904).
	assert.Equal(t, map[string]string{"a": "c2", "b": "c3", "c": "", "d": "", "e": "c3", "f": ""}, to)
	assert.Contains(t, moves[2].Why, "ERROR")
	assert.Contains(t, moves[2].Why, "boom")
	assert.Contains(t, moves[3].Why, "resize_prep")
	for _, m := range moves {
		if m.Kind != "skip" {
			assert.NotEmpty(t, m.To, m.ID)
			assert.NotEqual(t, "c1", m.To)
			assert.Greater(t, m.Timeout, 5*time.Minute)
		}
	}
	// Per target, what was placed fits its free capacity.
	used := map[string][3]int{}
	for i, m := range moves {
		if m.To != "" {
			u := used[m.To]
			u[0] += insts[i].VCPUs
			u[1] += insts[i].RAMMB
			u[2] += insts[i].DiskGB
			used[m.To] = u
		}
	}
	for _, c := range caps {
		assert.LessOrEqual(t, used[c.Host][1], c.FreeRAMMB, c.Host)
	}

	// Evacuation mode: ERROR and SUSPENDED instances are rebuilt too.
	moves, err = wf.PlanMoves("c1", insts, []activities.HostCapacity{{Host: "c2", FreeVCPUs: 100, FreeRAMMB: 100000, FreeDiskGB: 1000}}, true)
	require.NoError(t, err)
	assert.Equal(t, "evacuate", moves[2].Kind)
	assert.Equal(t, "skip", moves[3].Kind, "busy instances are never moved")
}

func TestPlanMovesRefusesNamingTheShortfall(t *testing.T) {
	insts := []activities.Instance{
		{ID: "big1", Name: "big1", Status: "ACTIVE", VCPUs: 4, RAMMB: 500000, DiskGB: 10},
		{ID: "big2", Name: "big2", Status: "ACTIVE", VCPUs: 4, RAMMB: 500000, DiskGB: 10},
		{ID: "err", Name: "err", Status: "ERROR", VCPUs: 64, RAMMB: 900000, DiskGB: 10},
	}
	caps := []activities.HostCapacity{{Host: "compute2", FreeVCPUs: 100, FreeRAMMB: 700000, FreeDiskGB: 1000}}
	_, err := wf.PlanMoves("compute1", insts, caps, false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1 instance(s) fit nowhere")
	assert.Contains(t, err.Error(), "500000 MB RAM")
	assert.Contains(t, err.Error(), "compute2: 100 vCPU, 700000 MB RAM")
	assert.NotContains(t, err.Error(), "err (", "a skipped ERROR instance needs no room")
}

func TestMoveTimeoutScalesWithGuest(t *testing.T) {
	assert.Equal(t, 5*time.Minute+800*time.Second, wf.MoveTimeout(1024, 0))
	assert.Equal(t, 5*time.Minute+(800*(4+40))*time.Second, wf.MoveTimeout(4096, 40))
	assert.Greater(t, wf.MoveTimeout(65536, 100), wf.MoveTimeout(512, 1))
}

// evacFixture mocks a compute host with instances and two targets.
type evacFixture struct {
	*fixture
	mu        sync.Mutex
	calls     []string // service changes and moves, in order
	inflight  int
	maxFlight int
	failMove  map[string]bool
	onHost    []activities.Instance   // what the API and the database list on compute1
	amqp      activities.AMQPResult   // what CheckAMQP answers
	home      activities.HostCapacity // compute1's free capacity, when migrate-back asks
	// notConverge: the live migration of these never converges until force-completed.
	notConverge map[string]bool
}

// vanish deletes an instance from compute1 behind the run's back (a user deleted it).
func (f *evacFixture) vanish(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onHost = slices.DeleteFunc(f.onHost, func(i activities.Instance) bool { return i.ID == id })
}

var computeFacts = activities.HostFacts{Name: "compute1", Address: "127.0.0.11", Roles: []string{"compute"},
	Services: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", Log: "/var/log/nova-compute.log", AMQP: true}}}

func newEvacFixture(t *testing.T, insts []activities.Instance, caps []activities.HostCapacity) *evacFixture {
	return newEvacFixtureP(t, insts, caps, nil)
}

// newEvacFixtureP is newEvacFixture with a change of the policy.
func newEvacFixtureP(t *testing.T, insts []activities.Instance, caps []activities.HostCapacity, pol func(p *policy.Policy)) *evacFixture {
	p := basePolicy()

	p.TwoPersonGates = []string{wf.GateApprovePlan, wf.GateConfirmHostDead, wf.GateStartInstances}
	p.ConfigHold, p.ConfigRelease = []string{"systemd_mask", "puppet_disable"}, []string{"puppet_enable", "systemd_unmask"}
	if pol != nil {
		pol(&p)
	}
	f := &evacFixture{fixture: newFixture(t, p), failMove: map[string]bool{}, notConverge: map[string]bool{}}
	for _, act := range []struct {
		fn   any
		verb string
	}{{computeAct.ForceCompleteMigration, "force-complete"}, {computeAct.AbortMigration, "abort-migration"}} {
		verb := act.verb
		f.env.OnActivity(act.fn, mock.Anything, mock.Anything).Return(func(_ context.Context, id string) (string, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.calls = append(f.calls, verb+":"+id)
			return verb + " done", nil
		})
	}
	f.env.OnActivity(hosts.ConfigManagement, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.ConfigManagementRequest) (activities.ConfigManagementResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, req.Action+":"+strings.Join(req.Commands, ","))
		return activities.ConfigManagementResult{Ran: req.Commands}, nil
	})
	f.env.RegisterActivity(computeAct)
	f.env.RegisterActivity(novaDBAct)
	f.grantLeases()
	f.env.OnActivity(hosts.DescribeHost, mock.Anything, "compute1").Return(computeFacts, nil)
	svcs := []activities.ComputeService{
		{Host: "compute1", ID: "s1", Status: "enabled", State: "up", UpdatedAt: time.Now().Add(1000 * time.Hour)},
		{Host: "compute2", ID: "s2", Status: "enabled", State: "up"},
		{Host: "compute3", ID: "s3", Status: "enabled", State: "up"},
	}
	f.env.OnActivity(computeAct.ComputeServices, mock.Anything).Return(svcs, nil)
	f.onHost = slices.Clone(insts)
	f.env.OnActivity(computeAct.InstancesOnHost, mock.Anything, "compute1").Return(func(context.Context, string) ([]activities.Instance, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return slices.Clone(f.onHost), nil
	})
	f.env.OnActivity(novaDBAct.DBInstancesOnHost, mock.Anything, "compute1").Return(func(context.Context, string) ([]string, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var ids []string
		for _, i := range f.onHost {
			ids = append(ids, i.ID)
		}
		return ids, nil
	})
	f.home = activities.HostCapacity{Host: "compute1", FreeVCPUs: 10000, FreeRAMMB: 10000000, FreeDiskGB: 100000}
	f.env.OnActivity(computeAct.Capacity, mock.Anything, mock.Anything).Return(func(_ context.Context, hosts []string) ([]activities.HostCapacity, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if slices.Equal(hosts, []string{"compute1"}) { // migrate-back asks for the source alone
			return []activities.HostCapacity{f.home}, nil
		}
		return caps, nil
	})
	f.env.OnActivity(computeAct.SetComputeService, mock.Anything, mock.Anything).Return(func(_ context.Context, ch activities.ServiceChange) (activities.ComputeService, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case ch.Disable:
			f.calls = append(f.calls, "disable:"+ch.Host+":"+ch.Reason)
		case ch.Enable:
			f.calls = append(f.calls, "enable:"+ch.Host)
		case ch.ForcedDown != nil:
			f.calls = append(f.calls, fmt.Sprintf("forced-down:%s:%v", ch.Host, *ch.ForcedDown))
		}
		return activities.ComputeService{Host: ch.Host}, nil
	})
	f.env.OnActivity(computeAct.MoveInstance, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.MoveRequest) (activities.MoveResult, error) {
		f.mu.Lock()
		f.inflight++
		f.maxFlight = max(f.maxFlight, f.inflight)
		f.calls = append(f.calls, "move:"+req.ID+":"+req.Kind+":"+req.Target)
		fail := f.failMove[req.ID]
		if f.notConverge[req.ID] && !req.ForceCompleted {
			f.calls = append(f.calls, fmt.Sprintf("stall-watch:%s:%s:%s", req.ID, req.Stall, req.NotConverging))
		}
		if f.notConverge[req.ID] && !req.ForceCompleted && req.NotConverging == policy.NotConvergingForceComplete {
			f.inflight--
			f.mu.Unlock()
			return activities.MoveResult{}, temporal.NewNonRetryableApplicationError("live migration of "+req.ID+" does not converge", activities.ErrTypeNotConverging, nil,
				activities.MoveResult{Progress: "migration 12: 2048 MiB of 8192 MiB memory remaining"})
		}
		f.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // real time: lets parallel activities overlap
		f.mu.Lock()
		defer f.mu.Unlock()
		f.inflight--
		if fail {
			return activities.MoveResult{}, temporal.NewApplicationError("move of "+req.ID+" failed: it is ACTIVE on compute1 again", "MoveFailed")
		}
		f.onHost = slices.DeleteFunc(f.onHost, func(i activities.Instance) bool { return i.ID == req.ID && req.Source == "compute1" })
		return activities.MoveResult{ID: req.ID, From: req.Source, To: req.Target, Status: "ACTIVE", Migration: "m-" + req.ID, MigrationStat: "completed", Started: true}, nil
	})
	f.env.OnActivity(hosts.ServiceStatus, mock.Anything, mock.Anything).Return(activities.ServiceState{Running: true}, nil)
	f.amqp = activities.AMQPResult{Connected: true, At: time.Now()}
	f.env.OnActivity(hosts.CheckAMQP, mock.Anything, mock.Anything).Return(func(context.Context, activities.AMQPRequest) (activities.AMQPResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.amqp, nil
	})
	return f
}

func sampleInstances(n int) []activities.Instance {
	var out []activities.Instance
	for i := range n {
		out = append(out, activities.Instance{ID: fmt.Sprintf("id-%03d", i), Name: fmt.Sprintf("vm-%03d", i), Status: "ACTIVE", Host: "compute1", VCPUs: 1, RAMMB: 512, DiskGB: 1})
	}
	return out
}

var bigCaps = []activities.HostCapacity{{Host: "compute2", FreeVCPUs: 10000, FreeRAMMB: 10000000, FreeDiskGB: 100000}, {Host: "compute3", FreeVCPUs: 10000, FreeRAMMB: 10000000, FreeDiskGB: 100000}}
