package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"
)

// NotifySink delivers notifications to one place (a Slack channel, a Mattermost webhook, a
// generic JSON webhook). The worker builds sinks from configuration (internal/app/chat implements
// them); they hold their own secrets, which therefore never enter workflow history.
type NotifySink interface {
	// Name names the sink in logs and errors ("slack", "mattermost", "webhook").
	Name() string
	// Send delivers one notification; an error means it was not delivered.
	Send(ctx context.Context, n Notification) error
}

// ErrTypeNotifyPartial is the type of the non-retryable error Notify returns when some sinks got
// the notification and others did not even after retries: retrying the activity would repeat the
// message where it already arrived.
const ErrTypeNotifyPartial = "NotifyPartial"

// Per-sink delivery attempts inside one Notify call, and the first pause between them (doubled
// each time). The workflow's retry policy retries the whole activity only when no sink got it.
var (
	notifyAttempts = 3
	notifyBackoff  = 500 * time.Millisecond
)

// Notify delivers a notification: always to the worker's log, then to every sink in parallel,
// each retried a few times. When every sink fails it returns a retryable error (the workflow
// retries the activity, with nothing duplicated); when only some fail it returns a non-retryable
// NotifyPartial error. The workflow never fails because of a notification: it logs the error.
func (m *Machine) Notify(ctx context.Context, n Notification) error {
	log := m.Log
	if log == nil {
		log = slog.Default()
	}
	log.Info("notification", "kind", n.Kind, "workflow_id", n.WorkflowID, "name", n.Name, "text", n.Text, "hint", n.Hint)
	if len(m.Sinks) == 0 {
		return nil
	}
	errs := make([]error, len(m.Sinks))
	var wg sync.WaitGroup
	for i, s := range m.Sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sendWithRetries(ctx, s, n)
			if errs[i] != nil {
				log.Warn("notification not delivered", "sink", s.Name(), "kind", n.Kind, "workflow_id", n.WorkflowID, "error", errs[i])
			}
		}()
	}
	wg.Wait()
	var ok []string
	var failed []error
	for i, s := range m.Sinks {
		if errs[i] == nil {
			ok = append(ok, s.Name())
		} else {
			failed = append(failed, fmt.Errorf("%s: %w", s.Name(), errs[i]))
		}
	}
	switch {
	case len(failed) == 0:
		return nil
	case len(ok) == 0:
		return fmt.Errorf("notification %s not delivered: %w", n.Kind, errors.Join(failed...))
	default:
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("notification %s delivered to %s but not to: %v", n.Kind, strings.Join(ok, ", "), errors.Join(failed...)),
			ErrTypeNotifyPartial, nil)
	}
}

func sendWithRetries(ctx context.Context, s NotifySink, n Notification) error {
	var err error
	pause := notifyBackoff
	for attempt := 1; attempt <= notifyAttempts; attempt++ {
		if err = s.Send(ctx, n); err == nil {
			return nil
		}
		if attempt == notifyAttempts {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (then %v)", err, ctx.Err())
		case <-time.After(pause):
		}
		pause *= 2
	}
	return fmt.Errorf("after %d attempts: %w", notifyAttempts, err)
}
