package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Machine holds what the runbook machinery itself needs: the worker's policy and where to send
// notifications.
type Machine struct {
	Policy Policy
	// WebhookURL, when set, receives every notification as a JSON POST.
	WebhookURL string
	HTTP       *http.Client
	Log        *slog.Logger
}

// LoadPolicy returns the worker's policy. Runs as a local activity at the start of every run, so
// the worker's configuration, not the caller's, decides who may approve what.
func (m *Machine) LoadPolicy(ctx context.Context) (Policy, error) {
	return m.Policy, nil
}

// Notify delivers a notification: always to the worker's log, and to the webhook when one is
// configured. The workflow never fails because of it.
func (m *Machine) Notify(ctx context.Context, n Notification) error {
	log := m.Log
	if log == nil {
		log = slog.Default()
	}
	log.Info("notification", "kind", n.Kind, "workflow_id", n.WorkflowID, "name", n.Name, "text", n.Text, "hint", n.Hint)
	if m.WebhookURL == "" {
		return nil
	}
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	hc := m.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("notify webhook: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("notify webhook: HTTP %d", resp.StatusCode)
	}
	return nil
}
