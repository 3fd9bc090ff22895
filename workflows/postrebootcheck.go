package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// PostRebootCheck verifies a host after a reboot (RUNBOOKS.md §3): its role's processes run,
// the services that talk to the message queue logged an AMQP connection after the boot, and the
// APIs its role provides answer; on a compute, its instances are listed and, with
// --start-instances, brought back. Otherwise it is read-only: findings instead of changes.
var PostRebootCheck = Define(Def[PostRebootCheckInput, postRebootCheckPlan]{
	Name:  "post-reboot-check",
	Short: "Check a host after a reboot: processes, AMQP reconnect, APIs (read-only; --start-instances after a gate)",
	Steps: []string{"describe-host", "boot-time", "processes", "amqp", "apis"},
	Key:   func(in *PostRebootCheckInput) string { return in.Host },
	Plan:  planPostRebootCheck,
	Act:   postRebootCheck,
})

// GateStartInstances guards --start-instances: starting and (hard) rebooting tenants' instances
// waits for a person who saw the list (two-person by default).
const GateStartInstances = "start-instances"

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

// postRebootCheckPlan is what the check looks at: the services and roles of the host (or of
// the role asked for).
type postRebootCheckPlan struct {
	services []activities.ServiceFacts
	roles    []string
}

func planPostRebootCheck(r *Run, in *PostRebootCheckInput, p *postRebootCheckPlan) (Approval, error) {
	facts, err := r.DescribeHost(in.Host)
	if err != nil {
		return Approval{}, err
	}
	if in.Role != "" && !slices.Contains(facts.Roles, in.Role) {
		return Approval{}, Summarize("invalid input", &FieldError{Field: "role", Value: in.Role, Problem: fmt.Sprintf("host %s has roles %v", in.Host, facts.Roles)})
	}
	for _, s := range facts.Services {
		if in.Role == "" || s.Role == in.Role {
			p.services = append(p.services, s)
		}
	}
	for _, role := range facts.Roles {
		if in.Role == "" || role == in.Role {
			p.roles = append(p.roles, role)
		}
	}
	plan := []string{fmt.Sprintf("host %s (%s), roles %v", in.Host, facts.Address, p.roles)}
	for _, s := range p.services {
		line := fmt.Sprintf("check %s is running", s.Name)
		if s.AMQP {
			line += " and logged an AMQP connection after boot"
		}
		plan = append(plan, line)
	}
	for _, role := range p.roles {
		for _, probe := range apiProbesByRole[role] {
			plan = append(plan, fmt.Sprintf("probe API: %s", probe))
		}
	}
	if slices.Contains(p.roles, "compute") {
		plan = append(plan, computeInstancesPlan(in))
	}
	r.SetPlan(plan)
	return Approval{}, nil
}

func postRebootCheck(r *Run, in *PostRebootCheckInput, p *postRebootCheckPlan) (string, error) {
	services, roles := p.services, p.roles
	since := in.Since
	if since.IsZero() {
		err := r.Do("boot-time", StepOptions{Target: in.Host, ReadOnly: true}, func(ctx workflow.Context) error {
			return r.Exec(ctx, "boot-time", in.Host, hosts.BootTime, &since, in.Host)
		})
		if err != nil {
			return "", err
		}
		r.SetDetail("boot_time", since)
	} else {
		r.step("boot-time").Detail = "given: " + since.Format(time.RFC3339)
		r.setStepState(r.step("boot-time"), StepSkipped, "")
	}

	running := map[string]bool{}
	err := r.Do("processes", StepOptions{Target: in.Host, ReadOnly: true}, func(ctx workflow.Context) error {
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
				r.AddFinding(activities.SeverityCritical, in.Host+"/"+s.Name, "%s is not running: %s", s.Name, st.Output)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}

	err = r.Do("amqp", StepOptions{Target: in.Host, ReadOnly: true}, func(ctx workflow.Context) error {
		for _, s := range services {
			if !s.AMQP || !running[s.Name] {
				continue
			}
			var res activities.AMQPResult
			req := activities.AMQPRequest{ServiceRequest: activities.ServiceRequest{Host: in.Host, Role: s.Role, Service: s.Name}, Log: s.Log, Since: since}
			if err := r.Exec(ctx, "amqp", in.Host+"/"+s.Name, hosts.CheckAMQP, &res, req); err != nil {
				return err
			}
			logPath := strings.ReplaceAll(s.Log, "{host}", in.Host) // as the host's command sees it
			switch {
			case !res.Connected:
				r.AddFinding(activities.SeverityWarning, in.Host+"/"+s.Name, "no AMQP connection logged in %s since %s", logPath, since.Format(time.RFC3339))
			case res.WeakAMQP():
				r.AddFinding(activities.SeverityInfo, in.Host+"/"+s.Name, "AMQP: weaker evidence, only a socket seen by ss (%s); no connection logged in %s since %s", res.Line, logPath, since.Format(time.RFC3339))
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}

	err = r.Do("apis", StepOptions{Target: in.Host, ReadOnly: true}, func(ctx workflow.Context) error {
		for _, role := range roles {
			for _, kind := range apiProbesByRole[role] {
				var res activities.APIProbeResult
				if err := r.Exec(ctx, "apis", kind, cloud.Probe, &res, activities.APIProbe{Kind: kind, Host: in.Host}); err != nil {
					return err
				}
				if !res.OK {
					r.AddFinding(activities.SeverityCritical, in.Host+"/api/"+kind, "%s", res.Detail)
				}
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if slices.Contains(roles, "compute") {
		if err := r.computeInstances(in, running); err != nil {
			return "", err
		}
	}
	return summarize(r.findings, "all post-reboot checks passed"), nil
}

// summarize counts findings by severity for a report's summary line.
func summarize(findings []activities.Finding, allGood string) string {
	var crit, warn int
	for _, f := range findings {
		switch f.Severity {
		case activities.SeverityCritical:
			crit++
		case activities.SeverityWarning:
			warn++
		}
	}
	if crit == 0 && warn == 0 {
		return allGood
	}
	return fmt.Sprintf("%d critical, %d warning finding(s)", crit, warn)
}

func computeInstancesPlan(in *PostRebootCheckInput) string {
	if in.StartInstances {
		return fmt.Sprintf("list the instances on %s; after gate %s (the list), start SHUTOFF ones and reboot those whose guest does not run (hard reboot when a soft one fails)", in.Host, GateStartInstances)
	}
	return fmt.Sprintf("list the instances on %s and report those that do not run (read-only; --start-instances starts them)", in.Host)
}

// healthyInstance is an ACTIVE instance whose guest runs (power state 1) and that no task holds.
func healthyInstance(i activities.Instance) bool {
	return i.Status == "ACTIVE" && i.PowerState == 1 && i.TaskState == ""
}

// computeInstances is the compute part of the post-reboot check: the host's instances are listed
// and, with StartInstances, brought back one by one (RecoverInstance checks each first).
func (r *Run) computeInstances(in *PostRebootCheckInput, running map[string]bool) error {
	r.AddSteps("instances")
	var list, down []activities.Instance
	var lost map[string]string
	// Listing reads only; with verified identities the start comes after a gate (below).
	err := r.Do("instances", StepOptions{Target: in.Host, ReadOnly: r.Verifies()}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, "instances", in.Host, compute.InstancesOnHost, &list, in.Host); err != nil {
			return err
		}
		down = nil
		for _, i := range list {
			if !healthyInstance(i) {
				down = append(down, i)
			}
		}
		r.SetDetail("instances", list)
		lost = r.lostInstances(ctx, in.Host, list, running["nova-compute"], &down)
		switch {
		case !in.StartInstances:
			for _, i := range down {
				if lost[i.ID] != "" {
					continue // its own finding (lostInstances)
				}
				r.AddFinding(activities.SeverityWarning, in.Host+"/"+i.ID, "%s (%s) is %s (power state %d) after the reboot", i.Name, i.ID, i.Status, i.PowerState)
			}
			r.step("instances").Detail = fmt.Sprintf("%d instance(s), %d not running (listed only)", len(list), len(down))
		case r.Verifies():
			r.step("instances").Detail = fmt.Sprintf("%d instance(s), %d not running", len(list), len(down))
		default: // a run begun before the gate existed
			r.recoverInstances(ctx, "instances", in, list, down, nil)
		}
		return nil
	})
	if err != nil || !in.StartInstances || !r.Verifies() {
		return err
	}
	if len(down) == 0 {
		r.step("instances").Detail += ": nothing to start"
		return nil
	}
	// Starting and rebooting tenants' instances is not a check: a person approves the list.
	names := make([]string, len(down))
	for i, d := range down {
		names[i] = fmt.Sprintf("%s (%s, %s)", d.Name, d.ID, d.Status)
		if lost[d.ID] != "" {
			names[i] = fmt.Sprintf("%s (%s, LOST by the hypervisor: hard reboot)", d.Name, d.ID)
		}
	}
	r.AddSteps(GateStartInstances, "start-instances-run")
	if err := r.Gate(GateStartInstances, GateOptions{Summary: fmt.Sprintf("Start or reboot %d instance(s) on %s (hard reboot when a soft one fails): %s. Reason: %s",
		len(down), in.Host, strings.Join(names, "; "), in.Reason)}); err != nil {
		return err
	}
	return r.Do("start-instances-run", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		r.recoverInstances(ctx, "start-instances-run", in, list, down, lost)
		return nil
	})
}

// recoverInstances brings the instances that do not run back, one by one (RecoverInstance checks
// each first); step is the step that records it.
func (r *Run) recoverInstances(ctx workflow.Context, step string, in *PostRebootCheckInput, list, down []activities.Instance, lost map[string]string) {
	var done []activities.InstanceRecovery
	actx := r.ActivityOptions(ctx, 10*time.Minute, time.Minute)
	for _, i := range down {
		if lost[i.ID] != "" {
			// The hypervisor lost its definition: policy is a hard reboot, which recreates the
			// guest from the database (a soft one has nothing to reboot).
			var res activities.HardRebootResult
			if err := r.Exec(actx, step, i.ID, compute.HardRebootOn, &res, activities.HardRebootRequest{ID: i.ID, Host: in.Host, Wait: 4 * time.Minute}); err != nil {
				r.AddFinding(activities.SeverityCritical, in.Host+"/"+i.ID, "%s (%s), lost by the hypervisor, could not be brought back by a hard reboot: %s", i.Name, i.ID, errText(err))
				continue
			}
			done = append(done, activities.InstanceRecovery{ID: i.ID, Name: i.Name, Before: "ACTIVE (lost by the hypervisor)", Action: "hard-reboot", After: res.Status})
			continue
		}
		var rec activities.InstanceRecovery
		if err := r.Exec(actx, step, i.ID, compute.RecoverInstance, &rec, i.ID, 3*time.Minute); err != nil {
			r.AddFinding(activities.SeverityCritical, in.Host+"/"+i.ID, "%s (%s) could not be brought back: %s", i.Name, i.ID, errText(err))
			continue
		}
		done = append(done, rec)
	}
	r.SetDetail("recovered", done)
	r.step(step).Detail = fmt.Sprintf("%d instance(s), %d were not running, %d brought back", len(list), len(down), len(done))
}

// lostInstancesChange is the workflow.GetVersion change that made the compute part ask the
// hypervisor, and the Nova database, about the host's instances.
const lostInstancesChange = "post-reboot-lost-instances"

// lostInstances finds the instances the hypervisor lost: the Nova database places them on the
// host (cross-checked with the API: a row the API does not list is a finding), the API says
// ACTIVE, but nova-compute's driver does not run them (LostOnHypervisor). They join down, and
// each is a critical finding. The question goes to nova-compute over RPC: asked only when it runs.
func (r *Run) lostInstances(ctx workflow.Context, host string, list []activities.Instance, computeRuns bool, down *[]activities.Instance) map[string]string {
	lost := map[string]string{}
	if workflow.GetVersion(ctx, lostInstancesChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return lost
	}
	var db []string
	if err := r.Exec(ctx, "instances", host, novadb.DBInstancesOnHost, &db, host); err != nil {
		r.AddFinding(activities.SeverityWarning, host, "the Nova database could not be read, so lost instances are not looked for: %s", errText(err))
		return lost
	}
	crossCheck(r, host, list, db)
	if !computeRuns {
		r.AddFinding(activities.SeverityWarning, host, "nova-compute does not run: the hypervisor was not asked which of the %d instance(s) it lost", len(db))
		return lost
	}
	if len(db) == 0 {
		return lost
	}
	inDB := map[string]bool{}
	for _, id := range db {
		inDB[id] = true
	}
	var ask []string
	var gone []activities.LostInstance
	for _, i := range list {
		switch {
		case i.Status != "ACTIVE" || i.TaskState != "" || !inDB[i.ID]:
		case i.PowerState == 0: // NOSTATE: Nova's power sync already found it missing
			gone = append(gone, activities.LostInstance{ID: i.ID, Detail: "power state NOSTATE: the hypervisor does not know it"})
		default:
			ask = append(ask, i.ID)
		}
	}
	if len(ask) > 0 {
		var more []activities.LostInstance
		actx := r.ActivityOptions(ctx, 5*time.Minute, time.Minute)
		if err := r.Exec(actx, "instances", host, compute.LostOnHypervisor, &more, ask); err != nil {
			r.AddFinding(activities.SeverityWarning, host, "the hypervisor could not be asked about its instances: %s", errText(err))
		}
		gone = append(gone, more...)
	}
	for _, g := range gone {
		lost[g.ID] = g.Detail
		i := slices.IndexFunc(list, func(x activities.Instance) bool { return x.ID == g.ID })
		r.AddFinding(activities.SeverityCritical, host+"/"+g.ID, "%s (%s) is ACTIVE in the Nova database but LOST by the hypervisor (%s): policy is a hard reboot (--start-instances)", list[i].Name, g.ID, g.Detail)
		if !slices.ContainsFunc(*down, func(x activities.Instance) bool { return x.ID == g.ID }) {
			*down = append(*down, list[i])
		}
	}
	r.SetDetail("lost_instances", gone)
	return lost
}
