package diagnose

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ParseLoadavg reads /proc/loadavg.
func ParseLoadavg(out string) (l1, l5, l15 float64, err error) {
	f := strings.Fields(out)
	if len(f) < 3 {
		return 0, 0, 0, fmt.Errorf("loadavg: want 3 numbers, got %q", shorten(out))
	}
	v := make([]float64, 3)
	for i := range v {
		if v[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return 0, 0, 0, fmt.Errorf("loadavg: %q: %w", f[i], err)
		}
	}
	return v[0], v[1], v[2], nil
}

// ParseMeminfo reads /proc/meminfo (values in kB) into bytes.
func ParseMeminfo(out string) (total, avail, swapTotal, swapFree int64, err error) {
	vals := map[string]int64{}
	for _, line := range strings.Split(out, "\n") {
		k, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		vals[k] = n * 1024
	}
	if _, ok := vals["MemTotal"]; !ok {
		return 0, 0, 0, 0, fmt.Errorf("meminfo: no MemTotal in %q", shorten(out))
	}
	avail, ok := vals["MemAvailable"]
	if !ok { // kernels before 3.14
		avail = vals["MemFree"] + vals["Cached"] + vals["Buffers"]
	}
	return vals["MemTotal"], avail, vals["SwapTotal"], vals["SwapFree"], nil
}

// ParseVmstatDisk reads `vmstat -d`: per disk, reads, writes, IOs in progress and IO seconds.
func ParseVmstatDisk(out string) ([]DiskIO, error) {
	var disks []DiskIO
	header := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (strings.HasPrefix(f[0], "disk-") || f[0] == "total") {
			header = true
			continue
		}
		if len(f) != 11 {
			continue
		}
		n := make([]int64, 10)
		ok := true
		for i := range n {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				ok = false
				break
			}
			n[i] = v
		}
		if !ok {
			continue
		}
		disks = append(disks, DiskIO{Name: f[0], Reads: n[0], Writes: n[4], InFlight: n[8], IOSeconds: n[9]})
	}
	if !header {
		return nil, fmt.Errorf("vmstat -d: no header in %q", shorten(out))
	}
	return disks, nil
}

// ParseDF reads `df -P -B1`: size as df counts capacity (used + available), used.
func ParseDF(out string) ([]FSUsage, error) {
	lines := strings.Split(out, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "Filesystem") {
		return nil, fmt.Errorf("df: no header in %q", shorten(out))
	}
	var fss []FSUsage
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		used, err1 := strconv.ParseInt(f[2], 10, 64)
		avail, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil || used+avail == 0 {
			continue
		}
		fss = append(fss, FSUsage{Source: f[0], Mount: strings.Join(f[5:], " "), Size: used + avail, Used: used})
	}
	return fss, nil
}

// Route is the answer of `ip -j route get`.
type Route struct {
	Type    string `json:"type,omitempty"` // "local" when the namespace holds the address itself
	Dst     string `json:"dst"`
	Gateway string `json:"gateway,omitempty"`
	Dev     string `json:"dev"`
	PrefSrc string `json:"prefsrc,omitempty"`
}

// OnLink reports a direct route over a real interface: the address is on this segment.
func (r Route) OnLink() bool {
	return r.Type != "local" && r.Gateway == "" && r.Dev != "" && r.Dev != "lo"
}

// ParseRoute reads `ip -j route get`.
func ParseRoute(out string) (Route, error) {
	var rs []Route
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rs); err != nil {
		return Route{}, fmt.Errorf("ip route get: %w in %q", err, shorten(out))
	}
	if len(rs) == 0 {
		return Route{}, errors.New("ip route get: no route")
	}
	return rs[0], nil
}

// NetnsRoute is one namespace's answer in `ip -all netns exec ip -j route get`.
type NetnsRoute struct {
	Netns string `json:"netns"`
	Route Route  `json:"route"`
}

// ParseNetnsRoutes reads `ip -all netns exec ip -j route get A`: blocks of "netns: NAME" and the
// namespace's JSON answer. Namespaces without a route print nothing (their error goes to stderr).
func ParseNetnsRoutes(out string) ([]NetnsRoute, error) {
	var res []NetnsRoute
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(line, "netns: "); ok {
			cur = name
			continue
		}
		if line == "" || cur == "" || !strings.HasPrefix(line, "[") {
			continue
		}
		r, err := ParseRoute(line)
		if err != nil {
			return nil, fmt.Errorf("netns %s: %w", cur, err)
		}
		res = append(res, NetnsRoute{Netns: cur, Route: r})
	}
	return res, nil
}

// ParseNeigh finds address in `ip -j neigh show` and returns its MAC and state.
func ParseNeigh(out, address string) (mac, state string, err error) {
	var es []struct {
		Dst    string   `json:"dst"`
		Lladdr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if s := strings.TrimSpace(out); s != "" {
		if err := json.Unmarshal([]byte(s), &es); err != nil {
			return "", "", fmt.Errorf("ip neigh: %w in %q", err, shorten(out))
		}
	}
	want := net.ParseIP(address)
	for _, e := range es {
		if ip := net.ParseIP(e.Dst); ip != nil && ip.Equal(want) {
			return strings.ToLower(e.Lladdr), strings.Join(e.State, ","), nil
		}
	}
	return "", "", nil
}

var (
	reARPReply = regexp.MustCompile(`(?i)^(unicast|broadcast) reply from ([0-9a-f.:]+) \[([0-9a-f:]{17})\]`)
	reARPSent  = regexp.MustCompile(`^Sent ([0-9]+) probe`)
	rePingStat = regexp.MustCompile(`([0-9]+) packets transmitted, ([0-9]+) (packets )?received`)
)

// ParseArping reads iputils arping's output: requests sent, replies for address, and the
// distinct MACs that answered, in order of first answer.
func ParseArping(out, address string) (sent, replies int, macs []string, err error) {
	want := net.ParseIP(address)
	seen := map[string]bool{}
	header := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "ARPING ") {
			header = true
			continue
		}
		if m := reARPSent.FindStringSubmatch(line); m != nil {
			sent, _ = strconv.Atoi(m[1])
			continue
		}
		m := reARPReply.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if ip := net.ParseIP(m[2]); ip == nil || !ip.Equal(want) {
			continue
		}
		replies++
		mac := strings.ToLower(m[3])
		if !seen[mac] {
			seen[mac] = true
			macs = append(macs, mac)
		}
	}
	if !header {
		return 0, 0, nil, fmt.Errorf("arping: unexpected output %q", shorten(out))
	}
	return sent, replies, macs, nil
}

// ParsePing reads ping's summary line.
func ParsePing(out string) (sent, recv int, err error) {
	m := rePingStat.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("ping: no summary in %q", shorten(out))
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ = strconv.Atoi(m[2])
	return sent, recv, nil
}

// Kinds of log lines the analysis reads.
const (
	LogNoValidHost = "no-valid-host" // the scheduler found no host
	LogDB          = "db"            // a database connection error
	LogAMQP        = "amqp"          // a message queue error or RPC timeout
	LogTimeout     = "timeout"
	LogError       = "error" // any other ERROR / CRITICAL / traceback
)

var logKinds = []struct {
	kind string
	re   *regexp.Regexp
}{
	{LogNoValidHost, regexp.MustCompile(`(?i)NoValidHost|No valid host was found|Filtering removed all hosts|returned 0 hosts`)},
	{LogDB, regexp.MustCompile(`(?i)OperationalError|DBConnectionError|DisconnectionError|Can't connect to (MySQL|MariaDB)|Lost connection to (MySQL|MariaDB)|(MySQL|MariaDB) server has gone away|Database connection was found disconnected|\((2002|2003|2006|2013),`)},
	{LogAMQP, regexp.MustCompile(`(?i)MessagingTimeout|AMQP server .* is unreachable|Timed out waiting for a reply|AMQP.*(refused|closed|closing|reset|timed out)`)},
	{LogTimeout, regexp.MustCompile(`(?i)timed out|timeout`)},
	{LogError, regexp.MustCompile(` (ERROR|CRITICAL) |\[ERROR\]|Traceback \(most recent call last\)`)},
}

// ClassifyLogLine returns the kind of a log line, "" when it does not matter here.
func ClassifyLogLine(line string) string {
	for _, k := range logKinds {
		if k.re.MatchString(line) {
			return k.kind
		}
	}
	return ""
}

var (
	reANSI    = regexp.MustCompile("\x1b\\[[0-9;]*m")
	reISOTime = regexp.MustCompile(`(\d{4})-(\d{2})-(\d{2})[ T]+(\d{1,2}):(\d{2}):(\d{2})(\.\d+)?`)
	// uwsgi request lines: [Tue Dec  1 09:04:48 2026]
	reCTime = regexp.MustCompile(`\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})\]`)
)

// LineTime finds the timestamp of a log line (oslo.log, MariaDB, RabbitMQ, uwsgi formats), read
// in loc; ok is false when the line has none (a traceback's continuation).
func LineTime(line string, loc *time.Location) (time.Time, bool) {
	head := line
	if len(head) > 200 {
		head = head[:200]
	}
	head = reANSI.ReplaceAllString(head, "")
	if m := reISOTime.FindStringSubmatchIndex(head); m != nil && m[0] < 48 {
		s := reISOTime.FindStringSubmatch(head)
		n := func(i int) int { v, _ := strconv.Atoi(s[i]); return v }
		ns := 0
		if s[7] != "" {
			frac := (s[7][1:] + "000000000")[:9]
			ns, _ = strconv.Atoi(frac)
		}
		return time.Date(n(1), time.Month(n(2)), n(3), n(4), n(5), n(6), ns, loc), true
	}
	if s := reCTime.FindStringSubmatch(head); s != nil {
		t, err := time.ParseInLocation("Jan 2 15:04:05 2006", fmt.Sprintf("%s %s %s:%s:%s %s", s[1], s[2], s[3], s[4], s[5], s[6]), loc)
		return t, err == nil
	}
	return time.Time{}, false
}

// MaxLogLines is how many lines of one log an excerpt keeps (the newest).
const MaxLogLines = 20

// ScanLog keeps the lines of a log's tail that fall in [since, until] and matter (see
// ClassifyLogLine). Lines without a time belong to the line before. Times are read in loc.
func ScanLog(text string, since, until time.Time, loc *time.Location) LogExcerpt {
	var ex LogExcerpt
	var cur time.Time
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		ex.Scanned++
		if t, ok := LineTime(line, loc); ok {
			cur = t
			if ex.Oldest.IsZero() {
				ex.Oldest = t
			}
		}
		if cur.IsZero() || cur.Before(since) || cur.After(until) {
			continue
		}
		kind := ClassifyLogLine(line)
		if kind == "" {
			continue
		}
		ex.Matched++
		line = reANSI.ReplaceAllString(line, "")
		if len(line) > 400 {
			line = line[:400] + "…"
		}
		ex.Lines = append(ex.Lines, LogLine{At: cur, Kind: kind, Text: line})
		found := false
		for i := range ex.Kinds {
			if k := &ex.Kinds[i]; k.Kind == kind {
				k.Count++
				k.Last, k.Sample = cur, line
				found = true
			}
		}
		if !found {
			ex.Kinds = append(ex.Kinds, KindCount{Kind: kind, Count: 1, First: cur, Last: cur, Sample: line})
		}
		if len(ex.Lines) > MaxLogLines {
			ex.Lines = ex.Lines[1:]
		}
	}
	return ex
}
