package control

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/stackrun/stackrun/workflows"
)

// Filter selects runs for List. Empty fields select everything.
type Filter struct {
	// Status is a RunbookStatus value (workflows.AllStatuses).
	Status string
	// Runbook is a runbook's CLI name or a workflow type (workflows.TypeName of the name, or a former one).
	Runbook string
	// Target is the exact RunbookTarget.
	Target string
	// Limit caps the number of runs (default 50, at most 1000).
	Limit int
}

// DefaultLimit is List's limit when Filter.Limit is zero.
const DefaultLimit = 50

// MaxLimit is the largest Filter.Limit.
const MaxLimit = 1000

// RunSummary is one run as List shows it.
type RunSummary struct {
	WorkflowID     string     `json:"workflow_id"`
	RunID          string     `json:"run_id"`
	Runbook        string     `json:"runbook"`
	WorkflowType   string     `json:"workflow_type"`
	Status         string     `json:"status"`
	Step           string     `json:"step,omitempty"`
	Target         string     `json:"target,omitempty"`
	RequestedBy    string     `json:"requested_by,omitempty"`
	TemporalStatus string     `json:"temporal_status"`
	Started        time.Time  `json:"started"`
	Closed         *time.Time `json:"closed,omitempty"`
}

var typeRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// quote renders a value for a visibility query. Values with quotes, backslashes or control
// characters are refused rather than escaped: no legitimate status, runbook or target has them.
func quote(field, v string) (string, error) {
	if len(v) > 256 {
		return "", fmt.Errorf("%s: longer than 256 characters", field)
	}
	for _, c := range v {
		if c == '\'' || c == '"' || c == '\\' || c == '`' || c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("%s %q: quotes, backslashes and control characters are not allowed", field, v)
		}
	}
	return "'" + v + "'", nil
}

// Query builds the visibility query of a filter. It validates the status against
// workflows.AllStatuses and refuses values that could escape their quotes.
func Query(f Filter) (string, error) {
	var clauses []string
	if f.Status != "" {
		ok := slices.Contains(workflows.AllStatuses, workflows.RunStatus(f.Status))
		if !ok {
			names := make([]string, len(workflows.AllStatuses))
			for i, s := range workflows.AllStatuses {
				names[i] = string(s)
			}
			return "", fmt.Errorf("status %q: must be one of %s", f.Status, strings.Join(names, ", "))
		}
		q, _ := quote("status", f.Status)
		clauses = append(clauses, workflows.AttrStatus.GetName()+" = "+q)
	}
	if f.Runbook != "" {
		wt := ""
		if rb, err := workflows.FindRunbook(f.Runbook); err == nil {
			wt = WorkflowType(rb)
		} else if typeRE.MatchString(f.Runbook) {
			wt = f.Runbook
		} else {
			return "", fmt.Errorf("runbook %q: not a runbook (%s) nor a workflow type", f.Runbook, strings.Join(workflows.RunbookNames(), ", "))
		}
		q, err := quote("runbook", wt)
		if err != nil {
			return "", err
		}
		clauses = append(clauses, "WorkflowType = "+q)
	}
	if f.Target != "" {
		q, err := quote("target", f.Target)
		if err != nil {
			return "", err
		}
		clauses = append(clauses, workflows.AttrTarget.GetName()+" = "+q)
	}
	return strings.Join(clauses, " AND "), nil
}

// List returns the runs that match the filter, newest first as the server orders them.
// Visibility is eventually consistent: a run started a moment ago may not show yet.
func List(ctx context.Context, c client.Client, f Filter) ([]RunSummary, error) {
	q, err := Query(f)
	if err != nil {
		return nil, err
	}
	limit := f.Limit
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		return nil, fmt.Errorf("limit %d: must be between 1 and %d", limit, MaxLimit)
	}
	out := []RunSummary{}
	var token []byte
	for len(out) < limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         q,
			PageSize:      int32(min(limit-len(out), 100)),
			NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list runs (query %q): %w", q, err)
		}
		for _, e := range resp.GetExecutions() {
			if len(out) == limit {
				break
			}
			s := RunSummary{
				WorkflowID:     e.GetExecution().GetWorkflowId(),
				RunID:          e.GetExecution().GetRunId(),
				WorkflowType:   e.GetType().GetName(),
				TemporalStatus: strings.TrimPrefix(e.GetStatus().String(), "WorkflowExecutionStatus"),
				Status:         keyword(e.GetSearchAttributes(), workflows.AttrStatus.GetName()),
				Step:           keyword(e.GetSearchAttributes(), workflows.AttrStep.GetName()),
				Target:         keyword(e.GetSearchAttributes(), workflows.AttrTarget.GetName()),
				RequestedBy:    keyword(e.GetSearchAttributes(), workflows.AttrRequestedBy.GetName()),
			}
			s.Runbook = RunbookName(s.WorkflowType)
			if s.Runbook == "" {
				s.Runbook = s.WorkflowType
			}
			if t := e.GetStartTime(); t != nil {
				s.Started = t.AsTime()
			}
			if t := e.GetCloseTime(); t != nil && !t.AsTime().IsZero() && t.AsTime().Unix() > 0 {
				ct := t.AsTime()
				s.Closed = &ct
			}
			out = append(out, s)
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	return out, nil
}

// keyword decodes one keyword search attribute ("" when absent or unreadable).
func keyword(sa *commonpb.SearchAttributes, name string) string {
	p, ok := sa.GetIndexedFields()[name]
	if !ok || p == nil {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		var list []string
		if err2 := converter.GetDefaultDataConverter().FromPayload(p, &list); err2 == nil && len(list) > 0 {
			return list[0]
		}
		return ""
	}
	return s
}
