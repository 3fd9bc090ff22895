package keepalive_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/internal/infra/keepalive"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
)

// quiet runs longer than its heartbeat timeout and never heartbeats itself.
func quiet(ctx context.Context) (string, error) {
	time.Sleep(4 * time.Second)
	return "done", nil
}

// resumes records progress; its second attempt must find the first attempt's details, not an
// empty heartbeat the keepalive sent over them.
func resumes(ctx context.Context) (int, error) {
	var n int
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &n); err != nil {
			return 0, err
		}
		return n, nil
	}
	activity.RecordHeartbeat(ctx, 42)
	time.Sleep(3 * time.Second) // keepalive ticks re-send 42
	return 0, errors.New("fail the first attempt after its keepalive heartbeats")
}

func flow(ctx workflow.Context, name string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, HeartbeatTimeout: 2 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 2, InitialInterval: time.Second},
	})
	if name == "quiet" {
		var s string
		err := workflow.ExecuteActivity(ctx, quiet).Get(ctx, &s)
		return s, err
	}
	var n int
	err := workflow.ExecuteActivity(ctx, resumes).Get(ctx, &n)
	if n != 42 {
		return "", errors.New("second attempt lost the first attempt's heartbeat details")
	}
	return "resumed", err
}

func run(t *testing.T, srv *devserver.Server, name string, ics ...interceptor.WorkerInterceptor) (string, error) {
	tq := "keepalive-" + t.Name()
	w := worker.New(srv.Client, tq, worker.Options{Interceptors: ics})
	w.RegisterWorkflow(flow)
	w.RegisterActivity(quiet)
	w.RegisterActivity(resumes)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wr, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: tq}, flow, name)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	err = wr.Get(ctx, &s)
	return s, err
}

func TestKeepalive(t *testing.T) {
	srv := devserver.Start(t)
	t.Run("without", func(t *testing.T) {
		// The control: a quiet activity with a heartbeat timeout fails without the keepalive.
		if _, err := run(t, srv, "quiet"); err == nil {
			t.Fatal("a quiet activity past its heartbeat timeout succeeded without the keepalive")
		}
	})
	t.Run("quiet", func(t *testing.T) {
		s, err := run(t, srv, "quiet", keepalive.Interceptor(500*time.Millisecond))
		if err != nil || s != "done" {
			t.Fatalf("got %q, %v; want done", s, err)
		}
	})
	t.Run("keeps details", func(t *testing.T) {
		s, err := run(t, srv, "resumes", keepalive.Interceptor(500*time.Millisecond))
		if err != nil || s != "resumed" {
			t.Fatalf("got %q, %v; want resumed", s, err)
		}
	})
}
