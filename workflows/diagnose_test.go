package workflows_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/diagnose"
	wf "github.com/stackrun/stackrun/workflows"
)

var diagAct *activities.Diagnose

func newDiagFixture(t *testing.T) *fixture {
	f := newFixture(t, basePolicy())
	f.env.RegisterActivity(diagAct)
	return f
}

func TestDiagnoseRefusesBadInputBeforeAnything(t *testing.T) {
	for _, c := range []struct {
		in    wf.DiagnoseInput
		field string
	}{
		{wf.DiagnoseInput{Symptom: "instance-sad", Subject: "web-1"}, "symptom"},
		{wf.DiagnoseInput{Symptom: "instance-unreachable", Subject: "web-1; reboot"}, "subject"},
		{wf.DiagnoseInput{Symptom: "instance-unreachable", Subject: "$(id)"}, "subject"},
		{wf.DiagnoseInput{Symptom: "instance-unreachable", Subject: "10.0.0.5", Since: "a while"}, "since"},
		{wf.DiagnoseInput{Symptom: "instance-unreachable", Subject: "10.0.0.5", Since: "-5m"}, "since"},
	} {
		c.in.Meta = wf.Meta{RequestedBy: "carol"}
		err := c.in.Validate()
		require.Error(t, err, "%+v", c.in)
		assert.Contains(t, err.Error(), c.field)
		// Started anyway (bypassing the CLI), the run ends at validation: no activity of Diagnose.
		f := newDiagFixture(t)
		f.run(wf.Diagnose.Type, c.in)
		rep := f.report()
		assert.Equal(t, wf.StatusFailed, rep.Status)
		assert.Contains(t, rep.Summary, "invalid input")
		for _, a := range rep.Audit {
			assert.False(t, strings.HasPrefix(a.Activity, "Diagnose"), "ran %s", a.Activity)
		}
	}
}

// The workflow can reach Diagnose's activities only, and Diagnose holds only the catalogue's
// read-only view (activities: TestDiagnoseCannotReachAMutatingCommand): so no mutating command.
// Here: every activity the run executed is one of Diagnose's (or the machinery's own), collectors
// run in parallel within the bound, a collector that fails is a blind spot and not a stall, and
// the report is macro first.
func TestDiagnoseFansOutAndReportsMacroFirst(t *testing.T) {
	f := newDiagFixture(t)
	specs := []activities.CollectorSpec{
		{Kind: activities.CollectComponents},
		{Kind: activities.CollectProcesses, Host: "controller", Services: []activities.ServiceFacts{{Name: "nova-compute"}}},
		{Kind: activities.CollectNode, Host: "compute1"},
		{Kind: activities.CollectNode, Host: "controller"},
		{Kind: activities.CollectNetwork, Host: "controller", Addresses: []string{"10.0.0.5"}},
	}
	f.env.OnActivity(diagAct.DiagnosePlan, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.DiagnoseRequest) (activities.DiagnosePlan, error) {
		assert.Equal(t, diagnose.SubjectIP, req.Subject.Kind)
		assert.Equal(t, 2*time.Hour, req.Until.Sub(req.Since))
		return activities.DiagnosePlan{Facts: diagnose.Facts{Symptom: req.Symptom, Subject: req.Subject, Since: req.Since, Until: req.Until}, Collectors: specs}, nil
	})
	var mu sync.Mutex
	inflight, peak := 0, 0
	slow := func(res diagnose.Facts, err error) func(context.Context, activities.CollectRequest) (diagnose.Facts, error) {
		return func(context.Context, activities.CollectRequest) (diagnose.Facts, error) {
			mu.Lock()
			inflight++
			peak = max(peak, inflight)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			inflight--
			mu.Unlock()
			return res, err
		}
	}
	f.env.OnActivity(diagAct.DiagnoseComponents, mock.Anything, mock.Anything).Return(slow(diagnose.Facts{}, errors.New("keystone: 503")))
	f.env.OnActivity(diagAct.DiagnoseProcesses, mock.Anything, mock.Anything).Return(slow(diagnose.Facts{Processes: []diagnose.Process{{Host: "controller", Service: "nova-compute", Running: true, Source: "ssh controller: systemctl is-active nova-compute"}}}, nil))
	f.env.OnActivity(diagAct.DiagnoseNode, mock.Anything, mock.Anything).Return(slow(diagnose.Facts{Nodes: []diagnose.Node{{Host: "compute1", CPUs: 2, Load1: 12, MemTotal: 8 << 30, MemAvail: 100 << 20, Sources: []string{"ssh compute1: cat /proc/loadavg"}}}}, nil))
	f.env.OnActivity(diagAct.DiagnoseNetwork, mock.Anything, mock.Anything).Return(slow(diagnose.Facts{Network: []diagnose.NetProbe{{Host: "controller", Netns: "qdhcp-1", Interface: "tap1", Address: "10.0.0.5", OnLink: true,
		MACs: []string{"fa:16:3e:00:00:05", "dc:9b:9c:00:00:01"}, ARPSent: 3, ARPReplies: 6, ARPSource: "ssh controller: ip netns exec qdhcp-1 arping -b -c 3 -I tap1 10.0.0.5"}}}, nil))
	f.run(wf.Diagnose.Type, wf.DiagnoseInput{Meta: wf.Meta{RequestedBy: "carol"}, Symptom: "instance-unreachable", Subject: "10.0.0.5", Since: "2h", Parallel: 2})
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, rep.Summary, "suspect: duplicate address 10.0.0.5 on controller")
	assert.Contains(t, rep.Summary, "1 blind spot(s)")
	assert.LessOrEqual(t, peak, 2, "at most --parallel collectors at once")
	assert.Equal(t, 2, peak, "collectors run in parallel")

	require.GreaterOrEqual(t, len(rep.Findings), 3)
	assert.Equal(t, "blast-radius", rep.Findings[0].Subject)
	assert.Contains(t, rep.Findings[1].Message, "fa:16:3e:00:00:05")
	assert.Contains(t, rep.Findings[1].Message, "dc:9b:9c:00:00:01")
	assert.Contains(t, rep.Findings[1].Message, "(from: ssh controller: ip netns exec qdhcp-1 arping")
	last := rep.Findings[len(rep.Findings)-1]
	assert.Contains(t, last.Message, "could not collect components")
	assert.Contains(t, last.Message, "keystone: 503")

	// Only Diagnose's activities (and the machinery's) ran.
	methods := map[string]bool{}
	typ := reflect.TypeOf(diagAct)
	for i := 0; i < typ.NumMethod(); i++ {
		methods[typ.Method(i).Name] = true
	}
	for _, a := range rep.Audit {
		assert.True(t, methods[a.Activity], "activity %s is not one of Diagnose's", a.Activity)
	}
	assert.Len(t, rep.Audit, 1+len(specs), "the plan and every collector (a retried one is one entry)")
	_ = rep.Details["diagnosis"]
}
