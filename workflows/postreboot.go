package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

var (
	hosts *activities.Hosts
	cloud *activities.Cloud
)

// PostRebootCheckInput is the input of PostRebootCheck (RUNBOOKS.md §3).
type PostRebootCheckInput struct {
	Meta
	// Host is the inventory name of the host that rebooted.
	Host string `json:"host" flag:"host" usage:"inventory name of the host that rebooted (required)"`
	// Role limits the check to one of the host's roles (controller, compute, storage, proxy);
	// empty checks all of them.
	Role string `json:"role,omitempty" flag:"role" usage:"check only this role of the host (controller, compute, storage, proxy)"`
	// Since is the time after which the AMQP connection must have been logged; zero means the
	// host's boot time.
	Since time.Time `json:"since,omitempty" flag:"since" usage:"AMQP connection must be logged after this time (RFC 3339; default: the host's boot time)"`
	// StartInstances (computes): start SHUTOFF instances and reboot those whose guest does not run
	// (hard reboot when a soft one fails). Without it the check only lists them (read-only).
	StartInstances bool `json:"start_instances,omitempty" flag:"start-instances" usage:"computes: start or reboot the host's instances that do not run (default: only list them)"`
}

func (in *PostRebootCheckInput) GetMeta() *Meta     { return &in.Meta }
func (in *PostRebootCheckInput) Target() string     { return in.Host }
func (in *PostRebootCheckInput) WorkflowID() string { return "post-reboot-check/" + in.Host }
func (in *PostRebootCheckInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if err := ValidateHostName("host", in.Host); err != nil {
		return err
	}
	if in.Role != "" && !roleRE.MatchString(in.Role) {
		return &FieldError{Field: "role", Value: in.Role, Problem: "not a valid role name"}
	}
	return nil
}

// apiProbesByRole lists the read-only API questions that prove a role's services answer.
var apiProbesByRole = map[string][]string{
	"controller": {"projects", "images", "servers"},
	"proxy":      {"object-store"},
	"compute":    {"compute-service"},
}

// PostRebootCheck verifies a host after a reboot: its role's processes run, the services that
// talk to the message queue logged an AMQP connection after the boot, and the APIs its role
// provides answer. It is read-only: no gates, findings instead of changes.
func PostRebootCheck(ctx workflow.Context, in PostRebootCheckInput) (*Report, error) {
	r, err := Begin(ctx, "post-reboot-check", in.Host, in.Meta, "describe-host", "boot-time", "processes", "amqp", "apis")
	if err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return r.Finish(err, "invalid input")
	}
	facts, err := r.DescribeHost(in.Host)
	if err != nil {
		return r.Finish(err, "")
	}
	if in.Role != "" && !slices.Contains(facts.Roles, in.Role) {
		return r.Finish(&FieldError{Field: "role", Value: in.Role, Problem: fmt.Sprintf("host %s has roles %v", in.Host, facts.Roles)}, "invalid input")
	}
	var services []activities.ServiceFacts
	var roles []string
	for _, s := range facts.Services {
		if in.Role == "" || s.Role == in.Role {
			services = append(services, s)
		}
	}
	for _, role := range facts.Roles {
		if in.Role == "" || role == in.Role {
			roles = append(roles, role)
		}
	}
	plan := []string{fmt.Sprintf("host %s (%s), roles %v", in.Host, facts.Address, roles)}
	for _, s := range services {
		line := fmt.Sprintf("check %s is running", s.Name)
		if s.AMQP {
			line += " and logged an AMQP connection after boot"
		}
		plan = append(plan, line)
	}
	for _, role := range roles {
		for _, p := range apiProbesByRole[role] {
			plan = append(plan, fmt.Sprintf("probe API: %s", p))
		}
	}
	if slices.Contains(roles, "compute") {
		plan = append(plan, computeInstancesPlan(in))
	}
	r.SetPlan(plan)
	if r.DryRun() {
		return r.Finish(nil, "")
	}

	since := in.Since
	if since.IsZero() {
		err = r.Do("boot-time", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
			return r.Exec(ctx, "boot-time", in.Host, hosts.BootTime, &since, in.Host)
		})
		if err != nil {
			return r.Finish(err, "")
		}
		r.SetDetail("boot_time", since)
	} else {
		r.step("boot-time").Detail = "given: " + since.Format(time.RFC3339)
		r.setStepState(r.step("boot-time"), StepSkipped, "")
	}

	running := map[string]bool{}
	err = r.Do("processes", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		calls := make([]*Call, len(services))
		for i, s := range services {
			calls[i] = r.Start(ctx, "processes", in.Host+"/"+s.Name, hosts.ServiceStatus, activities.ServiceRequest{Host: in.Host, Role: s.Role, Service: s.Name})
		}
		for i, s := range services {
			var st activities.ServiceState
			if err := calls[i].Get(ctx, &st); err != nil {
				return fmt.Errorf("status of %s: %w", s.Name, err)
			}
			running[s.Name] = st.Running
			if !st.Running {
				r.AddFinding(SeverityCritical, in.Host+"/"+s.Name, "%s is not running: %s", s.Name, st.Output)
			}
		}
		return nil
	})
	if err != nil {
		return r.Finish(err, "")
	}

	err = r.Do("amqp", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		for _, s := range services {
			if !s.AMQP || !running[s.Name] {
				continue
			}
			var res activities.AMQPResult
			req := activities.AMQPRequest{ServiceRequest: activities.ServiceRequest{Host: in.Host, Role: s.Role, Service: s.Name}, Log: s.Log, Since: since}
			if err := r.Exec(ctx, "amqp", in.Host+"/"+s.Name, hosts.CheckAMQP, &res, req); err != nil {
				return err
			}
			if !res.Connected {
				r.AddFinding(SeverityWarning, in.Host+"/"+s.Name, "no AMQP connection logged in %s since %s", s.Log, since.Format(time.RFC3339))
			}
		}
		return nil
	})
	if err != nil {
		return r.Finish(err, "")
	}

	err = r.Do("apis", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		for _, role := range roles {
			for _, kind := range apiProbesByRole[role] {
				var res activities.APIProbeResult
				if err := r.Exec(ctx, "apis", kind, cloud.Probe, &res, activities.APIProbe{Kind: kind, Host: in.Host}); err != nil {
					return err
				}
				if !res.OK {
					r.AddFinding(SeverityCritical, in.Host+"/api/"+kind, "%s", res.Detail)
				}
			}
		}
		return nil
	})
	if err != nil {
		return r.Finish(err, "")
	}
	if slices.Contains(roles, "compute") {
		if err := r.computeInstances(in); err != nil {
			return r.Finish(err, "")
		}
	}
	return r.Finish(nil, summarize(r.findings, "all post-reboot checks passed"))
}

// summarize counts findings by severity for a report's summary line.
func summarize(findings []Finding, allGood string) string {
	var crit, warn int
	for _, f := range findings {
		switch f.Severity {
		case SeverityCritical:
			crit++
		case SeverityWarning:
			warn++
		}
	}
	if crit == 0 && warn == 0 {
		return allGood
	}
	return fmt.Sprintf("%d critical, %d warning finding(s)", crit, warn)
}
