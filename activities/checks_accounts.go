package activities

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
)

// AccountsProbe proposes accounts to remove (monthly): Keystone users that are disabled, or
// whose last activity (when Keystone reports it) is older than the configured age, and
// Stackrun operators who requested no run within that age.
func (c *Checks) AccountsProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	all, err := cl.ListUsers(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	now := c.now()
	age := c.Settings.AccountMaxInactive
	var res ProbeResult
	reported := 0
	for _, u := range all {
		if !u.Enabled {
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "user/"+u.Name, "user %s (%s) is disabled: remove it, or say why it stays", u.Name, u.ID))
			continue
		}
		if v := u.LastActiveAt; v != "" {
			reported++
			if t, err := time.Parse("2006-01-02", v[:min(len(v), 10)]); err == nil && now.Sub(t) > age {
				res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "user/"+u.Name, "user %s last active %s, more than %s ago: remove it?", u.Name, v, age))
			}
		}
	}
	if reported == 0 {
		res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "users/inactivity",
			"Keystone reports no last activity for users (it does only with [security_compliance] disable_user_account_days_inactive set): only disabled users are listed"))
	}
	if c.Temporal != nil {
		for _, op := range c.Settings.Operators {
			last, err := lastRunBy(ctx, c.Temporal, op)
			if err != nil {
				return ProbeResult{}, fmt.Errorf("runs of operator %s: %w", op, err)
			}
			switch {
			case last.IsZero():
				res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "operator/"+op, "operator %s has requested no run that Temporal still keeps: still needed?", op))
			case now.Sub(last) > age:
				res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "operator/"+op, "operator %s last requested a run on %s, more than %s ago: remove from policy and chat?", op, last.Format("2006-01-02"), age))
			}
		}
	}
	res.Summary = fmt.Sprintf("%d user(s), %d operator(s) checked", len(all), len(c.Settings.Operators))
	return res, nil
}

func lastRunBy(ctx context.Context, c client.Client, op string) (time.Time, error) {
	resp, err := c.ListWorkflow(ctx, listRequest(fmt.Sprintf("RequestedBy = '%s'", strings.ReplaceAll(op, "'", ""))))
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	for _, e := range resp.Executions {
		if t := e.GetStartTime().AsTime(); t.After(last) {
			last = t
		}
	}
	return last, nil
}
