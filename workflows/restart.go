package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// RestartServiceInput is the input of RestartService.
type RestartServiceInput struct {
	Meta
	Host    string `json:"host" flag:"host" usage:"inventory name of the host (required)"`
	Service string `json:"service" flag:"service" usage:"service to restart, one of the host's role services (required)"`
}

func (in *RestartServiceInput) GetMeta() *Meta { return &in.Meta }
func (in *RestartServiceInput) Target() string { return in.Host + "/" + in.Service }
func (in *RestartServiceInput) WorkflowID() string {
	return "restart-service/" + in.Host + "/" + in.Service
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

// RestartService restarts one service of one host: plan, gate approve-restart, a slot among the
// hosts out of service, stop, start, verify that it runs and (for services on the message queue)
// that it logged an AMQP connection after the restart. Each side effect checks the world first, so
// a retried or replayed step does not stop a service twice.
func RestartService(ctx workflow.Context, in RestartServiceInput) (*Report, error) {
	r, err := Begin(ctx, "restart-service", in.Target(), in.Meta,
		"describe-host", GateApproveRestart, "acquire-lease", "stop", "start", "verify", "release-lease")
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
	var svc *activities.ServiceFacts
	for i := range facts.Services {
		if facts.Services[i].Name == in.Service {
			svc = &facts.Services[i]
		}
	}
	if svc == nil {
		names := make([]string, len(facts.Services))
		for i, s := range facts.Services {
			names[i] = s.Name
		}
		return r.Finish(&FieldError{Field: "service", Value: in.Service, Problem: fmt.Sprintf("not a service of %s (its services: %v)", in.Host, names)}, "invalid input")
	}
	req := activities.ServiceRequest{Host: in.Host, Role: svc.Role, Service: svc.Name}
	r.SetPlan([]string{
		fmt.Sprintf("stop %s on %s (%s), role %s", svc.Name, in.Host, facts.Address, svc.Role),
		fmt.Sprintf("start %s and verify it runs", svc.Name),
	})
	if r.DryRun() {
		return r.Finish(nil, "")
	}
	if err := r.Gate(GateApproveRestart, GateOptions{Summary: fmt.Sprintf("Restart %s on %s. Reason: %s", svc.Name, in.Host, in.Reason)}); err != nil {
		return r.Finish(err, "")
	}
	if err := r.AcquireHostLease(in.Host); err != nil {
		return r.Finish(err, "")
	}
	defer r.ReleaseHostLease(in.Host)

	var restartedAt time.Time
	err = r.Do("stop", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		restartedAt = workflow.Now(ctx)
		return r.Exec(ctx, "stop", in.Host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req, Action: "stop"})
	})
	if err != nil {
		r.SetLeftState(fmt.Sprintf("%s on %s: state unknown after a failed stop — check it", svc.Name, in.Host))
		return r.finishReleasing(in.Host, err)
	}
	r.SetLeftState(fmt.Sprintf("%s on %s is STOPPED", svc.Name, in.Host))
	err = r.Do("start", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		return r.Exec(ctx, "start", in.Host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req, Action: "start"})
	})
	if err != nil {
		return r.finishReleasing(in.Host, err)
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
		return r.finishReleasing(in.Host, err)
	}
	r.ReleaseHostLease(in.Host)
	return r.Finish(nil, fmt.Sprintf("%s on %s restarted and verified", svc.Name, in.Host))
}

// finishReleasing gives back the host's lease before the report is written.
func (r *Run) finishReleasing(host string, err error) (*Report, error) {
	r.ReleaseHostLease(host)
	return r.Finish(err, "")
}
