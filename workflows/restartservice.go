package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// RestartService restarts one service of one host: plan, gate approve-restart, a slot among the
// hosts out of service, stop, start, verify that it runs and (for services on the message queue)
// that it logged an AMQP connection after the restart. Each side effect checks the world first, so
// a retried or replayed step does not stop a service twice.
var RestartService = Define(Def[RestartServiceInput, restartServicePlan]{
	Name:  "restart-service",
	Short: "Restart one service on one host behind an approval, then verify it came back",
	Steps: []string{"describe-host", GateApproveRestart, "acquire-lease", "stop", "start", "verify", "release-lease"},
	Key:   func(in *RestartServiceInput) string { return in.Host + "/" + in.Service },
	Plan:  planRestartService,
	Act:   restartService,
})

// RestartServiceInput is the input of RestartService.
type RestartServiceInput struct {
	Meta
	Host    string `json:"host" flag:"host" usage:"inventory name of the host (required)"`
	Service string `json:"service" flag:"service" usage:"service to restart, one of the host's role services (required)"`
}

func (in *RestartServiceInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if err := ValidateHostName("host", in.Host); err != nil {
		return err
	}
	return ValidateServiceName("service", in.Service)
}

// GateApproveRestart is the gate before a service is stopped.
const GateApproveRestart = "approve-restart"

// restartServicePlan is what the restart acts on: the service as the inventory describes it.
type restartServicePlan struct {
	svc activities.ServiceFacts
	req activities.ServiceRequest
}

func planRestartService(r *Run, in *RestartServiceInput, p *restartServicePlan) (Approval, error) {
	facts, err := r.DescribeHost(in.Host)
	if err != nil {
		return Approval{}, err
	}
	found := false
	for _, s := range facts.Services {
		if s.Name == in.Service {
			p.svc, found = s, true
		}
	}
	if !found {
		names := make([]string, len(facts.Services))
		for i, s := range facts.Services {
			names[i] = s.Name
		}
		return Approval{}, Summarize("invalid input", &FieldError{Field: "service", Value: in.Service, Problem: fmt.Sprintf("not a service of %s (its services: %v)", in.Host, names)})
	}
	p.req = activities.ServiceRequest{Host: in.Host, Role: p.svc.Role, Service: p.svc.Name}
	r.SetPlan([]string{
		fmt.Sprintf("stop %s on %s (%s), role %s", p.svc.Name, in.Host, facts.Address, p.svc.Role),
		fmt.Sprintf("start %s and verify it runs", p.svc.Name),
	})
	return Approval{Gate: GateApproveRestart, Summary: fmt.Sprintf("Restart %s on %s. Reason: %s", p.svc.Name, in.Host, in.Reason)}, nil
}

func restartService(r *Run, in *RestartServiceInput, p *restartServicePlan) (string, error) {
	if err := r.AcquireHostLease(in.Host); err != nil {
		return "", err
	}
	svc, req := p.svc, p.req
	var restartedAt time.Time
	err := r.Do("stop", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		restartedAt = workflow.Now(ctx)
		return r.Exec(ctx, "stop", in.Host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req, Action: "stop"})
	})
	if err != nil {
		r.SetLeftState(fmt.Sprintf("%s on %s: state unknown after a failed stop — check it", svc.Name, in.Host))
		return "", err
	}
	r.SetLeftState(fmt.Sprintf("%s on %s is STOPPED", svc.Name, in.Host))
	err = r.Do("start", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		return r.Exec(ctx, "start", in.Host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req, Action: "start"})
	})
	if err != nil {
		return "", err
	}
	r.SetLeftState("")
	err = r.Do("verify", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		var st activities.ServiceState
		if err := r.Exec(ctx, "verify", in.Host, hosts.ServiceStatus, &st, req); err != nil {
			return err
		}
		if !st.Running {
			return fmt.Errorf("%s on %s is not running after start: %s", svc.Name, in.Host, st.Output)
		}
		if svc.AMQP {
			var res activities.AMQPResult
			areq := activities.AMQPRequest{ServiceRequest: req, Log: svc.Log, Since: restartedAt}
			// The service may take a few seconds to reach the queue: wait a little between tries.
			for i := 0; i < 6 && !res.Connected; i++ {
				if i > 0 {
					_ = workflow.Sleep(ctx, 5*time.Second)
				}
				if err := r.Exec(ctx, "verify", in.Host, hosts.CheckAMQP, &res, areq); err != nil {
					return err
				}
			}
			if !res.Connected {
				return fmt.Errorf("%s on %s logged no AMQP connection since %s", svc.Name, in.Host, restartedAt.Format(time.RFC3339))
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s on %s restarted and verified", svc.Name, in.Host), nil
}
