package activities

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
)

type fakeSink struct {
	name  string
	fails int // fail this many times, then succeed (-1: always fail)
	mu    sync.Mutex
	calls int
}

func (s *fakeSink) Name() string { return s.name }
func (s *fakeSink) Send(ctx context.Context, n Notification) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fails < 0 || s.calls <= s.fails {
		return errors.New("down")
	}
	return nil
}

func fastRetries(t *testing.T) {
	old := notifyBackoff
	notifyBackoff = time.Millisecond
	t.Cleanup(func() { notifyBackoff = old })
}

func TestNotifyRetriesEachSink(t *testing.T) {
	fastRetries(t)
	a, b := &fakeSink{name: "a", fails: 2}, &fakeSink{name: "b"}
	m := &Machine{Sinks: []NotifySink{a, b}}
	if err := m.Notify(context.Background(), Notification{Kind: "gate-opened"}); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if a.calls != 3 || b.calls != 1 {
		t.Fatalf("calls a=%d b=%d, want 3 and 1", a.calls, b.calls)
	}
}

func TestNotifyAllFailedIsRetryable(t *testing.T) {
	fastRetries(t)
	a := &fakeSink{name: "a", fails: -1}
	err := (&Machine{Sinks: []NotifySink{a}}).Notify(context.Background(), Notification{Kind: "run-finished"})
	var app *temporal.ApplicationError
	if err == nil || errors.As(err, &app) {
		t.Fatalf("want a plain (retryable) error, got %v", err)
	}
	if a.calls != notifyAttempts {
		t.Fatalf("calls %d, want %d", a.calls, notifyAttempts)
	}
}

func TestNotifyPartialIsNotRetried(t *testing.T) {
	fastRetries(t)
	ok, bad := &fakeSink{name: "slack"}, &fakeSink{name: "webhook", fails: -1}
	err := (&Machine{Sinks: []NotifySink{ok, bad}}).Notify(context.Background(), Notification{Kind: "step-stalled"})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || app.Type() != ErrTypeNotifyPartial {
		t.Fatalf("want non-retryable %s, got %v", ErrTypeNotifyPartial, err)
	}
	if ok.calls != 1 {
		t.Fatalf("the delivered sink was called %d times", ok.calls)
	}
}

func TestNotifyWithoutSinks(t *testing.T) {
	if err := (&Machine{}).Notify(context.Background(), Notification{Kind: "x"}); err != nil {
		t.Fatal(err)
	}
}
