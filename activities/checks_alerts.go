package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/stackrun/stackrun/internal/infra/checks"
	"github.com/stackrun/stackrun/internal/infra/redact"
)

// AlertingTestName is the alertname of the weekly alerting test's alert. Alertmanager must route
// it to the receiver the test runs (checks.alertmanager.receiver_address).
const AlertingTestName = "StackrunAlertingTest"

func (c *Checks) alertmanagerURL(path string) (string, error) {
	if c.Settings.AlertmanagerURL == "" {
		return "", errors.New("no Alertmanager configured (checks.alertmanager.url)")
	}
	return strings.TrimRight(c.Settings.AlertmanagerURL, "/") + path, nil
}

// unreachable words a transport error the way an operator needs it, with the URL's credentials
// (a password, a token in the query) masked wherever they appear: the error reaches the
// workflow's history, the report and the chat.
func unreachable(what, url string, err error) error {
	var ne net.Error
	if errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%s at %s is unreachable: %w", what, redact.URL(url), redact.Error(err, url))
	}
	return fmt.Errorf("%s at %s: %w", what, redact.URL(url), redact.Error(err, url))
}

// AlertsProbe reads the firing alerts from Alertmanager's v2 API (not silenced, not inhibited)
// and groups them by failure domain (hourly): 40 alerts of one rack are one finding.
func (c *Checks) AlertsProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	u, err := c.alertmanagerURL("/api/v2/alerts?active=true&silenced=false&inhibited=false")
	if err != nil {
		return ProbeResult{}, err
	}
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.httpClient().Do(hreq)
	if err != nil {
		return ProbeResult{}, unreachable("Alertmanager", c.Settings.AlertmanagerURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if resp.StatusCode != http.StatusOK {
		return ProbeResult{}, fmt.Errorf("Alertmanager %s: HTTP %d: %s", u, resp.StatusCode, firstLine(string(body)))
	}
	var alerts []checks.Alert
	if err := json.Unmarshal(body, &alerts); err != nil {
		return ProbeResult{}, fmt.Errorf("Alertmanager %s: not an alert list: %w", redact.URL(u), err)
	}
	// The alerting test's own alert is not an incident.
	kept := alerts[:0]
	for _, a := range alerts {
		if a.Labels["alertname"] != AlertingTestName {
			kept = append(kept, a)
		}
	}
	inv := checks.Inventory{}
	addrs := map[string]string{}
	if c.Hosts != nil {
		for name, h := range c.Hosts.Inventory {
			inv[name] = h.Labels
			addrs[h.Address] = name
		}
	}
	res := ProbeResult{Findings: checks.GroupAlerts(kept, c.Settings.FailureDomains, inv, addrs)}
	res.Summary = fmt.Sprintf("%d firing alert(s) in %d failure domain(s)", len(kept), len(res.Findings))
	res.Metrics = []CheckMetric{{Name: "alerts.firing", Value: float64(len(kept))}}
	return res, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// Ticket is one ticket of the tickets source.
type Ticket struct {
	ID       string    `json:"id"`
	Title    string    `json:"title"`
	Severity string    `json:"severity"`
	Status   string    `json:"status"`
	Created  time.Time `json:"created"`
}

// TicketsProbe reads the tickets source (GET, a JSON list, or {"tickets": [...]}) and reports
// the open tickets created since the previous run, or within the last hour without one (hourly).
func (c *Checks) TicketsProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	if c.Settings.TicketsURL == "" {
		return ProbeResult{Summary: "no tickets source configured (checks.tickets_url)"}, nil
	}
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Settings.TicketsURL, nil)
	hreq.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(hreq)
	if err != nil {
		return ProbeResult{}, unreachable("tickets source", c.Settings.TicketsURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if resp.StatusCode != http.StatusOK {
		return ProbeResult{}, fmt.Errorf("tickets source: HTTP %d: %s", resp.StatusCode, firstLine(string(body)))
	}
	var list []Ticket
	if err := json.Unmarshal(body, &list); err != nil {
		var wrapped struct {
			Tickets []Ticket `json:"tickets"`
		}
		if err2 := json.Unmarshal(body, &wrapped); err2 != nil {
			return ProbeResult{}, fmt.Errorf("tickets source: want a JSON list of {id, title, severity, status, created}: %w", err)
		}
		list = wrapped.Tickets
	}
	since := req.Since
	if since.IsZero() {
		since = req.At.Add(-time.Hour)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Created.Before(list[j].Created) })
	var res ProbeResult
	open := 0
	for _, t := range list {
		if s := strings.ToLower(t.Status); s == "closed" || s == "resolved" || s == "done" {
			continue
		}
		open++
		if !t.Created.After(since) {
			continue
		}
		sev := SeverityInfo
		switch strings.ToLower(t.Severity) {
		case "critical", "high", "urgent", "p1":
			sev = SeverityCritical
		case "warning", "medium", "major", "p2":
			sev = SeverityWarning
		}
		res.Findings = append(res.Findings, finding(sev, req.Probe, "ticket/"+t.ID, "new ticket %s: %s (created %s)", t.ID, t.Title, t.Created.UTC().Format(time.RFC3339)))
	}
	res.Summary = fmt.Sprintf("%d open ticket(s), %d new since %s", open, len(res.Findings), since.UTC().Format(time.RFC3339))
	return res, nil
}

// AlertingTestProbe tests alerting end to end (weekly): it runs a webhook receiver on
// checks.alertmanager.receiver_address, posts a test alert to Alertmanager and waits until
// Alertmanager delivers it there, then resolves it. Not delivered (or Alertmanager unreachable)
// is a critical finding: nobody would hear of a real incident either.
func (c *Checks) AlertingTestProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	fail := func(format string, args ...any) (ProbeResult, error) {
		return ProbeResult{Findings: []CheckFinding{finding(SeverityCritical, req.Probe, "alerting",
			"alerting does not work end to end: "+format, args...)}, Summary: "FAILED"}, nil
	}
	postURL, err := c.alertmanagerURL("/api/v2/alerts")
	if err != nil {
		return fail("%v", err)
	}
	testID := fmt.Sprintf("%s-%d", req.RunID, time.Now().UnixNano())
	if activity.IsActivity(ctx) {
		testID = fmt.Sprintf("%s-%d", activity.GetInfo(ctx).WorkflowExecution.RunID, activity.GetInfo(ctx).Attempt)
	}
	got := make(chan time.Time, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&msg)
		for _, a := range msg.Alerts {
			if a.Labels["stackrun_test_id"] == testID && a.Status == "firing" {
				select {
				case got <- time.Now():
				default:
				}
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	ln, err := net.Listen("tcp", c.Settings.ReceiverAddress)
	if err != nil {
		// Not Alertmanager's fault: the probe cannot run (another test holds the port).
		return ProbeResult{}, fmt.Errorf("alerting test: cannot listen on %s (checks.alertmanager.receiver_address): %w", c.Settings.ReceiverAddress, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()

	labels := map[string]string{"alertname": AlertingTestName, "stackrun_test_id": testID, "severity": "none", "source": "stackrun"}
	post := func(ends time.Time) error {
		a := map[string]any{"labels": labels, "annotations": map[string]string{"summary": "Stackrun weekly alerting test; resolves itself"},
			"startsAt": time.Now().Add(-time.Second).UTC().Format(time.RFC3339), "endsAt": ends.UTC().Format(time.RFC3339)}
		b, _ := json.Marshal([]any{a})
		hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, postURL, bytes.NewReader(b))
		hreq.Header.Set("Content-Type", "application/json")
		resp, err := c.httpClient().Do(hreq)
		if err != nil {
			return unreachable("Alertmanager", c.Settings.AlertmanagerURL, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return fmt.Errorf("Alertmanager refused the test alert: HTTP %d: %s", resp.StatusCode, firstLine(string(body)))
		}
		return nil
	}
	sent := time.Now()
	if err := post(sent.Add(time.Hour)); err != nil {
		return fail("%v", err)
	}
	timeout := c.Settings.DeliveryTimeout
	if timeout <= 0 {
		timeout = 90 * time.Second
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		select {
		case at := <-got:
			_ = post(time.Now()) // resolve it
			d := at.Sub(sent).Round(10 * time.Millisecond)
			return ProbeResult{Summary: fmt.Sprintf("test alert delivered to the receiver in %s", d),
				Metrics: []CheckMetric{{Name: "alerting.delivery_seconds", Value: d.Seconds(), Unit: "s"}}}, nil
		case <-tick.C:
			heartbeat(ctx, "waiting for the test alert")
		case <-deadline:
			_ = post(time.Now())
			return fail("the test alert was accepted by Alertmanager (%s) but not delivered to the receiver on %s within %s: check the route for alertname=%s and the receivers",
				redact.URL(c.Settings.AlertmanagerURL), c.Settings.ReceiverAddress, timeout, AlertingTestName)
		case <-ctx.Done():
			_ = post(time.Now())
			return ProbeResult{}, ctx.Err()
		}
	}
}
