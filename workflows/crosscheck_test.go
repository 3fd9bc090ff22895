package workflows_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// The API-versus-database cross-check of evacuate's preflight (crossCheck, compute_family.go): an
// instance row the API does not list, and an instance the API lists without a row, are warning
// findings naming the instance; the instances both list are not. (e2e/novadb_test.go does the
// same with a real row on the lab.)
func TestEvacuationCrossCheckFindsMismatches(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.env.RegisterActivity(computeAct)
	f.env.RegisterActivity(novaDBAct)
	f.env.OnActivity(hosts.DescribeHost, mock.Anything, "compute1").Return(computeFacts, nil)
	f.env.OnActivity(computeAct.ComputeServices, mock.Anything).Return([]activities.ComputeService{
		{Host: "compute1", ID: "s1", Status: "enabled", State: "up", UpdatedAt: time.Now()},
		{Host: "compute2", ID: "s2", Status: "enabled", State: "up"},
	}, nil)
	api := sampleInstances(3) // id-000, id-001, id-002
	f.env.OnActivity(computeAct.InstancesOnHost, mock.Anything, "compute1").Return(api, nil)
	f.env.OnActivity(novaDBAct.DBInstancesOnHost, mock.Anything, "compute1").Return([]string{"id-000", "id-001", "row-only"}, nil)
	f.env.OnActivity(computeAct.Capacity, mock.Anything, mock.Anything).Return(bigCaps, nil)

	in := evacInput()
	in.DryRun = true
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	var got []activities.Finding
	for _, fd := range rep.Findings {
		if fd.Subject != "compute1" {
			got = append(got, fd)
		}
	}
	assert.ElementsMatch(t, []activities.Finding{
		{Severity: activities.SeverityWarning, Subject: "compute1/row-only", Message: "instance row-only is on compute1 in the Nova database but not in the API's list"},
		{Severity: activities.SeverityWarning, Subject: "compute1/id-002", Message: "instance id-002 (vm-002) is on compute1 in the API but not in the Nova database"},
	}, got)
	assert.Equal(t, "API 3 instance(s), database 3", rep.Details["crosscheck"])
}
