package activities_test

// Fuzz targets of the parsers of what hosts and services answer (issue 17): swift-ring-builder
// output, /proc/self/mounts, lsblk/blkid (through InspectDisk and FormatDisk with a fake host),
// recon JSON, AMQP log lines and `ss` output, Alertmanager's alert list. Properties: no panic;
// parse(format(x)) == x; truncated input is an error (or reads no more than it holds); and the
// safety property the parser guards: a disk that blkid says holds a file system is never
// formatted without the overwrite gate.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// formatRing writes what swift-ring-builder 2.30 prints for a builder with these devices.
func formatRing(devs []activities.RingDevice, remaining time.Duration) string {
	var b strings.Builder
	zones := map[int]bool{}
	for _, d := range devs {
		zones[d.Zone] = true
	}
	fmt.Fprintf(&b, "object.builder, build version 9, id 89732dcb114141158b60242d77abbf8d\n")
	fmt.Fprintf(&b, "256 partitions, 3.000000 replicas, 1 regions, %d zones, %d devices, 0.00 balance, 0.00 dispersion\n", len(zones), len(devs))
	h := int(remaining / time.Hour)
	fmt.Fprintf(&b, "The minimum number of hours before a partition can be reassigned is 1 (%d:%02d:%02d remaining)\n", h, int(remaining/time.Minute)%60, int(remaining/time.Second)%60)
	b.WriteString("The overload factor is 0.00% (0.000000)\nRing file object.ring.gz is up-to-date\n")
	b.WriteString("Devices:   id region zone ip address:port replication ip:port  name weight partitions balance flags meta\n")
	for _, d := range devs {
		fmt.Fprintf(&b, "         %4d %6d %4d %15s:%d %15s:%d %5s %6.2f %10d %7.2f %5s \n", d.ID, d.Region, d.Zone, d.IP, d.Port, d.IP, d.Port, d.Name, d.Weight, d.Partitions, d.Balance, d.Flags)
	}
	return b.String()
}

func FuzzParseRingShow(f *testing.F) {
	f.Add(uint8(6), uint16(6200), uint8(21), "sdb", uint32(10000), uint16(128), int32(-3333), true, uint32(3521), 500)
	f.Add(uint8(1), uint16(1), uint8(0), "d1", uint32(0), uint16(0), int32(0), false, uint32(0), 0)
	f.Fuzz(func(t *testing.T, n uint8, port uint16, octet uint8, name string, weight uint32, parts uint16, bal int32, del bool, rem uint32, cut int) {
		if port == 0 || !plainName(name) {
			return
		}
		var devs []activities.RingDevice
		for i := range int(n % 12) {
			d := activities.RingDevice{ID: i, Region: 1, Zone: 1 + i%3, IP: fmt.Sprintf("10.0.%d.%d", octet, i), Port: int(port),
				Name: fmt.Sprintf("%s%d", name, i), Weight: float64(weight%1000000) / 100, Partitions: int(parts), Balance: float64(bal%100000) / 100}
			if del && i == 0 {
				d.Flags = "DEL"
			}
			devs = append(devs, d)
		}
		remaining := time.Duration(rem%(100*3600)) * time.Second
		text := formatRing(devs, remaining)
		ri, err := activities.ParseRingShow("object", "b", text)
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if len(ri.Devices) != len(devs) || ri.DeviceCount != len(devs) || ri.Remaining != remaining {
			t.Fatalf("parsed %d devices (header %d), %s remaining; want %d, %s\n%s", len(ri.Devices), ri.DeviceCount, ri.Remaining, len(devs), remaining, text)
		}
		for i, d := range devs {
			if ri.Devices[i] != d {
				t.Fatalf("device %d: parsed %+v, want %+v", i, ri.Devices[i], d)
			}
		}
		// Truncated anywhere: an error, or exactly the devices it still holds whole.
		if cut < 0 {
			cut = -cut
		}
		cut %= len(text) + 1
		tr, err := activities.ParseRingShow("object", "b", text[:cut])
		if err != nil {
			return
		}
		if len(tr.Devices) != len(devs) {
			t.Fatalf("output cut at %d of %d read as a whole ring of %d devices (header says %d)", cut, len(text), len(tr.Devices), tr.DeviceCount)
		}
		for i, d := range tr.Devices {
			w := devs[i]
			if d.ID != w.ID || d.Name != w.Name || d.IP != w.IP || d.Port != w.Port || d.Weight != w.Weight {
				t.Fatalf("cut at %d: device %d read as %+v, is %+v", cut, i, d, w)
			}
		}
	})
}

func plainName(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// FuzzParseRingShowRaw feeds arbitrary text: never a panic, and never more devices than the
// header counts.
func FuzzParseRingShowRaw(f *testing.F) {
	f.Add(formatRing([]activities.RingDevice{{ID: 0, Region: 1, Zone: 1, IP: "10.0.0.1", Port: 6200, Name: "sdb", Weight: 100}}, time.Minute))
	f.Add("Traceback (most recent call last):\n")
	f.Add("1 partitions, 1.0 replicas, 1 regions, 1 zones, 99999999999999999999 devices, 0 balance, 0 dispersion\nDevices:\n 0 1 1 [::1]:6200 x sdb 1 1 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		ri, err := activities.ParseRingShow("object", "b", text)
		if err == nil && len(ri.Devices) != ri.DeviceCount {
			t.Fatalf("%d devices read, header says %d", len(ri.Devices), ri.DeviceCount)
		}
	})
}

// mountEscape escapes a field as the kernel writes it in /proc/self/mounts (mangle(): space, tab,
// newline and backslash as octal).
func mountEscape(s string) string {
	r := strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`)
	return r.Replace(s)
}

func FuzzParseMounts(f *testing.F) {
	f.Add("/dev/sdb", "/srv/node/sdb", "")
	f.Add("LABEL=a b", "/mnt/with space", "/dev/x /y xfs rw 0 0")
	f.Add("/dev/\\040", "/mnt/a\u00a0b", "")
	f.Add("/dev/sdc", "/mnt/a\rb\vc", "")
	f.Fuzz(func(t *testing.T, src, mp, other string) {
		if src == "" || mp == "" {
			return
		}
		text := other + "\n" + mountEscape(src) + " " + mountEscape(mp) + " xfs rw,relatime 0 0\n"
		m := activities.ParseMounts(text)
		if got, ok := m[mp]; !ok || got != src {
			t.Fatalf("mount of %q on %q read as %q (found %v) from %q", src, mp, got, ok, text)
		}
	})
}

func FuzzParseRecon(f *testing.F) {
	f.Add([]byte(`{"replication_last": 1000.0, "replication_time": 0.5}`), "object")
	f.Add([]byte(`{"replication_last": 1000.0, "replication_time": 3, "replication_stats": {"start": 990.0}}`), "account")
	f.Add([]byte(`{"replication_last": 1000.0, "replication_time": -1e9}`), "object")
	f.Add([]byte(`{"replication_last": 1e300}`), "container")
	f.Fuzz(func(t *testing.T, data []byte, kind string) {
		p, ok := activities.ParseRecon(kind, data)
		if !ok {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("invalid JSON %q read as a pass", data)
		}
		// A pass ends after it starts, and not in the far future: a replicator's clock is the
		// host's, and a time beyond 2262 is an overflow, not a pass.
		if p.End.Before(p.Start) {
			t.Fatalf("pass from %s to %s: ends before it starts (%q)", p.Start, p.End, data)
		}
		if p.End.Year() >= 2262 || p.Start.Year() < 1970 {
			t.Fatalf("pass from %s to %s read from %q", p.Start, p.End, data)
		}
		// Truncated: never a pass.
		for _, n := range []int{len(data) / 2, len(data) - 1} {
			if n > 0 && !json.Valid(data[:n]) {
				if _, ok := activities.ParseRecon(kind, data[:n]); ok {
					t.Fatalf("truncated %q read as a pass", data[:n])
				}
			}
		}
	})
}

func FuzzFindAMQPConnection(f *testing.F) {
	f.Add(int64(1764600000), uint16(345), "noise\n2026-01-01 00:00:00.000 1 INFO x", int64(0), false)
	f.Add(int64(1764600000), uint16(0), "", int64(1764600001), true)
	f.Fuzz(func(t *testing.T, sec int64, ms uint16, noise string, sinceSec int64, reconnect bool) {
		sec = 1e9 + sec%(4e9)
		at := time.Unix(sec, int64(ms%1000)*int64(time.Millisecond)).UTC()
		since := time.Unix(1e9+sinceSec%(4e9), 0).UTC()
		word := "Connected"
		if reconnect {
			word = "Reconnected"
		}
		line := fmt.Sprintf("%s 4242 INFO oslo.messaging._drivers.impl_rabbit [-] %s to AMQP server on 10.0.0.10:5672 via [amqp] client with port 41234.",
			at.Format("2006-01-02 15:04:05.000"), word)
		// The noise is older log, one line at most per noise line, none of them a connection.
		var lines []string
		for _, l := range strings.Split(noise, "\n") {
			if !strings.Contains(strings.ToLower(l), "amqp") && len(l) < 1000 {
				lines = append(lines, l)
			}
		}
		log := strings.Join(append(lines, line), "\n") + "\n"
		got := activities.FindAMQPConnection(log, since)
		want := !at.Before(since.Truncate(time.Second))
		if got.Connected != want {
			t.Fatalf("connection at %s, since %s: connected=%v, want %v", at, since, got.Connected, want)
		}
		if want && (!got.At.Equal(at) || !strings.Contains(got.Line, word+" to AMQP")) {
			t.Fatalf("found %+v, want the line at %s", got, at)
		}
	})
}

func FuzzFindAMQPSocket(f *testing.F) {
	f.Add("ESTAB 0 0 10.0.0.21:41234 10.0.0.10:5672 users:((\"nova-compute\",pid=4242,fd=12))", "4242")
	f.Add("ESTAB 0 0 10.0.0.21:41234 10.0.0.10:5673 users:((\"x\",pid=4242,fd=12))", "4242")
	f.Add("x x x 5672", "1")
	f.Add("0 0 0 5671 pid=0,", "0") // found by CI's fuzzing on 2 December: a peer without a colon
	f.Fuzz(func(t *testing.T, ss, pid string) {
		got := activities.FindAMQPSocket(ss, pid, time.Unix(0, 0))
		if got.Connected && (!strings.Contains(ss, "pid="+pid+",") || !(strings.Contains(ss, ":5672") || strings.Contains(ss, ":5671"))) {
			t.Fatalf("connected from %q for pid %q", ss, pid)
		}
	})
}

// FuzzInspectDisk answers lsblk and blkid with fuzzed output: never a panic; a disk blkid reports
// a file system on is never formatted without the overwrite gate; lsblk output cut short is an
// error.
func FuzzInspectDisk(f *testing.F) {
	f.Add(`{"blockdevices":[{"name":"sdx","size":536870912}]}`, "DEVNAME=/dev/sdx\nLABEL=sdd\nUUID=u1\nTYPE=xfs\n", 0, "")
	f.Add(`{"blockdevices":[{"name":"sdx","size":"536870912","fstype":"ext4"}]}`, "", 2, "")
	f.Add(`{"blockdevices":[]}`, "TYPE=ext4", 0, "/dev/sdx /srv/node/sdd xfs rw 0 0\n")
	f.Add(`{"blockdevices":[{"name":"sdx","si`, "", 2, "")
	f.Add(`{"blockdevices":[{"name":"sdx","size":1}]}`, "  TYPE=swap\r\n", 0, "")
	f.Fuzz(func(t *testing.T, lsblk, blkid string, blkidExit int, mounts string) {
		fs := &struct{ typ, label, uuid string }{}
		fh := diskFake(fs, &mounts)
		mkfs := 0
		fh.reply["block_device_path"] = func([]string) remote.Result { return remote.Result{Stdout: lsblk} }
		fh.reply["blkid"] = func([]string) remote.Result { return remote.Result{Stdout: blkid, ExitCode: blkidExit} }
		fh.reply["mkfs_xfs"] = func([]string) remote.Result { mkfs++; return remote.Result{} }
		fh.reply["mkfs_xfs_force"] = func([]string) remote.Result { mkfs++; return remote.Result{} }
		s := newSwift(t, fh)
		ctx := context.Background()
		facts, err := s.InspectDisk(ctx, activities.DiskRequest{Node: "storage2", Device: "sdd"})
		if err == nil && !json.Valid([]byte(lsblk)) {
			t.Fatalf("lsblk answer %q is not JSON but was read", lsblk)
		}
		if err == nil {
			for _, v := range []string{facts.FSType, facts.UUID, facts.Label} {
				if strings.ContainsAny(v, "\n\r") {
					t.Fatalf("blkid value %q holds a line break", v)
				}
			}
		}
		holds := false
		if blkidExit == 0 {
			for _, l := range strings.Split(blkid, "\n") {
				if k, v, _ := strings.Cut(strings.TrimSpace(l), "="); k == "TYPE" && v != "" {
					holds = true
				}
			}
		}
		_, _ = s.FormatDisk(ctx, activities.FormatRequest{Node: "storage2", Device: "sdd"})
		if holds && mkfs > 0 {
			t.Fatalf("blkid says %q (exit %d) and the disk was formatted without the overwrite gate", blkid, blkidExit)
		}
		if blkidExit != 0 && blkidExit != 2 && mkfs > 0 {
			t.Fatalf("blkid failed (exit %d) and the disk was formatted", blkidExit)
		}
	})
}

// FuzzAlertsProbe serves Alertmanager's /api/v2/alerts with a fuzzed body: never a panic; a body
// that is not a JSON list (a truncated one included) is an error, not "no alerts"; every firing
// alert but the test's own is counted, and grouped into at most one finding per domain.
func FuzzAlertsProbe(f *testing.F) {
	f.Add(`[{"labels":{"alertname":"DiskFull","host":"compute1","severity":"critical"}}]`)
	f.Add(`[{"labels":{"alertname":"A","instance":"10.0.0.21:9100"}},{"labels":{"alertname":"B","rack":"r1"}},{"labels":{"alertname":"StackrunAlertingTest"}}]`)
	f.Add(`[{"labels":{"alertname":"A","host":"compute1"}},{"labels":null}]`)
	f.Add(`[{"labels":{"alertname":"A"}`)
	f.Add(`{"alerts":[]}`)
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(body)) }))
	f.Cleanup(srv.Close)
	c := &activities.Checks{Settings: activities.CheckSettings{AlertmanagerURL: srv.URL, FailureDomains: []string{"rack", "host"}},
		Hosts: &activities.Hosts{Inventory: map[string]activities.InventoryHost{
			"compute1": {Address: "10.0.0.21", Labels: map[string]string{"rack": "r1"}},
			"compute2": {Address: "10.0.0.22", Labels: map[string]string{"rack": "r2"}}}}}
	f.Fuzz(func(t *testing.T, b string) {
		body = b
		res, err := c.AlertsProbe(context.Background(), activities.ProbeRequest{Probe: activities.ProbeAlerts})
		var list []struct {
			Labels map[string]string `json:"labels"`
		}
		if jerr := json.Unmarshal([]byte(b), &list); jerr != nil {
			if err == nil {
				t.Fatalf("body %q is not an alert list but was read: %+v", b, res)
			}
			return
		}
		if err != nil {
			t.Fatalf("alert list %q refused: %v", b, err)
		}
		firing := 0
		for _, a := range list {
			if a.Labels["alertname"] != activities.AlertingTestName {
				firing++
			}
		}
		if len(res.Metrics) != 1 || res.Metrics[0].Value != float64(firing) || math.IsNaN(res.Metrics[0].Value) {
			t.Fatalf("%d firing alerts counted as %+v", firing, res.Metrics)
		}
		if len(res.Findings) > firing || (firing > 0 && len(res.Findings) == 0) {
			t.Fatalf("%d firing alerts became %d findings", firing, len(res.Findings))
		}
		seen := map[string]bool{}
		for _, fd := range res.Findings {
			if seen[fd.Subject] {
				t.Fatalf("two findings for domain %s", fd.Subject)
			}
			seen[fd.Subject] = true
			if fd.Severity != activities.SeverityCritical && fd.Severity != activities.SeverityWarning {
				t.Fatalf("firing alerts with severity %q", fd.Severity)
			}
		}
	})
}
