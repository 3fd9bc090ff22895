// Package checks holds the pure logic of the recurring checks (RUNBOOKS.md §7): grouping alerts
// by failure domain so that one failed rack is one finding, finding keys for "new since last
// time", usage trends, capacity projections, and the report's Markdown. It does no I/O; the
// report store is the subpackage store, the probes are in package activities.
package checks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Severities, as in activities.
const (
	Info     = "info"
	Warning  = "warning"
	Critical = "critical"
)

// SeverityRank orders severities (critical highest); unknown ones count as info.
func SeverityRank(s string) int {
	switch s {
	case Critical:
		return 2
	case Warning:
		return 1
	}
	return 0
}

// Finding is one finding of a check: what a probe saw, with its severity and whether it is new
// since the previous run of the same cadence.
type Finding struct {
	Severity string `json:"severity"`
	Probe    string `json:"probe"`
	Subject  string `json:"subject"`
	Message  string `json:"message"`
	// Key identifies the finding across runs (probe + subject + Kind); see FindingKey.
	Key string `json:"key"`
	New bool   `json:"new"`
}

// FindingKey identifies a finding across runs: the same probe, subject and kind (the message
// without its numbers, so that "40 alerts" and "41 alerts" are the same finding).
func FindingKey(probe, subject, message string) string {
	var b strings.Builder
	for _, r := range message {
		if r >= '0' && r <= '9' {
			continue
		}
		b.WriteRune(r)
	}
	h := sha256.Sum256([]byte(probe + "\x00" + subject + "\x00" + b.String()))
	return hex.EncodeToString(h[:16])
}

// Metric is one measured value a check keeps for trends (usage per project, capacity).
type Metric struct {
	Name    string  `json:"name"`    // e.g. usage.vcpu_hours, capacity.vcpu.used
	Subject string  `json:"subject"` // project, resource class, "" for the cloud
	Value   float64 `json:"value"`
	Unit    string  `json:"unit,omitempty"`
	// Period says what the value covers (e.g. "2025-05-01..2025-06-01"), for reports.
	Period string `json:"period,omitempty"`
	// Trend asks Record to compare the value with the previous one of the same name and subject.
	Trend bool `json:"trend,omitempty"`
}

// Sample is a stored metric value and when it was measured.
type Sample struct {
	At     time.Time `json:"at"`
	Value  float64   `json:"value"`
	Period string    `json:"period,omitempty"`
}

// Alert is one firing alert as Alertmanager's v2 API gives it.
type Alert struct {
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"startsAt"`
}

// Inventory gives each host's labels (rack, switch...) for grouping.
type Inventory map[string]map[string]string

// hostOf finds the host an alert is about: its host, hostname, node or instance label (the
// instance's address part), when that names an inventory host or one of their addresses.
func hostOf(a Alert, inv Inventory, addrs map[string]string) string {
	for _, k := range []string{"host", "hostname", "node", "nodename", "instance"} {
		v := a.Labels[k]
		if v == "" {
			continue
		}
		if h, _, ok := strings.Cut(v, ":"); ok && k == "instance" {
			v = h
		}
		if _, ok := inv[v]; ok {
			return v
		}
		if h, ok := addrs[v]; ok {
			return h
		}
		if k != "instance" {
			return v
		}
	}
	return ""
}

// Domain is where an alert is grouped: the widest failure domain known for it.
type Domain struct {
	Kind  string // rack, switch, host... or "alert" when nothing is known
	Value string
}

func (d Domain) String() string { return d.Kind + " " + d.Value }

// DomainOf returns the alert's failure domain: the first of domains (widest first) that the
// alert carries as a label, or that the inventory gives its host; "host" is the host itself.
func DomainOf(a Alert, domains []string, inv Inventory, addrs map[string]string) Domain {
	host := hostOf(a, inv, addrs)
	for _, d := range domains {
		if v := a.Labels[d]; v != "" && d != "host" {
			return Domain{d, v}
		}
		if d == "host" && host != "" {
			return Domain{"host", host}
		}
		if host != "" {
			if v := inv[host][d]; v != "" {
				return Domain{d, v}
			}
		}
	}
	if host != "" {
		return Domain{"host", host}
	}
	return Domain{"alert", a.Labels["alertname"]}
}

// GroupAlerts turns firing alerts into findings, one per failure domain: a rack with 40 firing
// alerts is one finding that names the rack, the hosts and alert names it saw, and counts them.
// Severity is the highest of the group's alerts (label severity: critical, warning, else info).
func GroupAlerts(alerts []Alert, domains []string, inv Inventory, addrs map[string]string) []Finding {
	type group struct {
		d      Domain
		alerts []Alert
		sev    string
	}
	groups := map[Domain]*group{}
	var order []Domain
	for _, a := range alerts {
		d := DomainOf(a, domains, inv, addrs)
		g, ok := groups[d]
		if !ok {
			g = &group{d: d, sev: Info}
			groups[d] = g
			order = append(order, d)
		}
		g.alerts = append(g.alerts, a)
		sev := strings.ToLower(a.Labels["severity"])
		switch sev {
		case "critical", "page", "error":
			sev = Critical
		case "warning", "warn":
			sev = Warning
		default:
			sev = Warning // a firing alert without severity still needs a look
		}
		if SeverityRank(sev) > SeverityRank(g.sev) {
			g.sev = sev
		}
	}
	sort.Slice(order, func(i, j int) bool {
		gi, gj := groups[order[i]], groups[order[j]]
		if len(gi.alerts) != len(gj.alerts) {
			return len(gi.alerts) > len(gj.alerts)
		}
		return order[i].String() < order[j].String()
	})
	out := make([]Finding, 0, len(order))
	for _, d := range order {
		g := groups[d]
		names := map[string]int{}
		hosts := map[string]bool{}
		for _, a := range g.alerts {
			names[a.Labels["alertname"]]++
			if h := hostOf(a, inv, addrs); h != "" {
				hosts[h] = true
			}
		}
		var msg string
		first := g.alerts[0]
		if len(g.alerts) == 1 {
			msg = fmt.Sprintf("%s firing", first.Labels["alertname"])
			if h := hostOf(first, inv, addrs); h != "" && d.Kind != "host" {
				msg += " on " + h
			}
			if s := first.Annotations["summary"]; s != "" {
				msg += ": " + s
			}
		} else {
			msg = fmt.Sprintf("%d firing alerts in %s %s (%s)", len(g.alerts), d.Kind, d.Value, topCounts(names, 3))
			if len(hosts) > 0 {
				msg += fmt.Sprintf(" on %d host(s): %s", len(hosts), topKeys(hosts, 5))
			}
			msg += fmt.Sprintf("; probably one %s-wide failure, not %d separate ones", d.Kind, len(g.alerts))
		}
		out = append(out, Finding{Severity: g.sev, Probe: "alerts", Subject: d.Kind + "/" + d.Value, Message: msg})
	}
	return out
}

func topCounts(m map[string]int, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for i, k := range keys {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d other alert name(s)", len(keys)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%d× %s", m[k], k))
	}
	return strings.Join(parts, ", ")
}

func topKeys(m map[string]bool, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > n {
		return strings.Join(keys[:n], ", ") + fmt.Sprintf(" and %d more", len(keys)-n)
	}
	return strings.Join(keys, ", ")
}

// Trend compares a value with the previous sample: the change in percent (NaN without a
// previous non-zero value).
func Trend(prev, cur float64) float64 {
	if prev == 0 {
		return math.NaN()
	}
	return (cur - prev) / prev * 100
}

// Projection says when a resource runs out at the current trend.
type Projection struct {
	Resource string
	Used     float64
	Capacity float64
	// PerDay is the fitted growth per day (least squares over the samples).
	PerDay float64
	// RunsOut is when used reaches capacity at PerDay; zero when it never does (flat or falling).
	RunsOut time.Time
	Samples int
}

// Project fits a line through the samples (at least two, over at least an hour) and returns
// when the used value reaches capacity. ok is false when there is not enough history.
func Project(resource string, samples []Sample, capacity float64, now time.Time) (Projection, bool) {
	p := Projection{Resource: resource, Capacity: capacity, Samples: len(samples)}
	if len(samples) < 2 {
		if len(samples) == 1 {
			p.Used = samples[0].Value
		}
		return p, false
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].At.Before(samples[j].At) })
	t0 := samples[0].At
	var sx, sy, sxx, sxy float64
	n := float64(len(samples))
	for _, s := range samples {
		x := s.At.Sub(t0).Hours() / 24
		sx += x
		sy += s.Value
		sxx += x * x
		sxy += x * s.Value
	}
	last := samples[len(samples)-1]
	p.Used = last.Value
	den := n*sxx - sx*sx
	if last.At.Sub(t0) < time.Hour || den == 0 {
		return p, false
	}
	p.PerDay = (n*sxy - sx*sy) / den
	if p.PerDay > 0 && capacity > p.Used {
		days := (capacity - p.Used) / p.PerDay
		if days < 365*100 {
			p.RunsOut = now.Add(time.Duration(days * 24 * float64(time.Hour)))
		}
	}
	return p, true
}
