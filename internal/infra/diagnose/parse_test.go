package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Outputs below were captured from Debian 12's tools on this project's machines.

func TestParseNodeResources(t *testing.T) {
	l1, l5, l15, err := ParseLoadavg("5.26 2.21 1.38 5/482 29038\n")
	require.NoError(t, err)
	assert.Equal(t, []float64{5.26, 2.21, 1.38}, []float64{l1, l5, l15})
	_, _, _, err = ParseLoadavg("")
	require.Error(t, err)

	total, avail, st, sf, err := ParseMeminfo("MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   12288000 kB\nSwapTotal:       2097148 kB\nSwapFree:        2097148 kB\n")
	require.NoError(t, err)
	assert.Equal(t, int64(24576000*1024), total)
	assert.Equal(t, int64(12288000*1024), avail)
	assert.Equal(t, st, sf)
	_, _, _, _, err = ParseMeminfo("garbage")
	require.Error(t, err)

	disks, err := ParseVmstatDisk(`disk- ------------reads------------ ------------writes----------- -----IO------
       total merged sectors      ms  total merged sectors      ms    cur    sec
loop0    140      0     401       8     31      1   12495      35      0      0
vda   120733   3202 9551370  101012 1911218 890121 71299424 2941300     12   1577
`)
	require.NoError(t, err)
	require.Len(t, disks, 2)
	assert.Equal(t, DiskIO{Name: "vda", Reads: 120733, Writes: 1911218, InFlight: 12, IOSeconds: 1577}, disks[1])
	_, err = ParseVmstatDisk("vmstat: command not found")
	require.Error(t, err)

	fss, err := ParseDF("Filesystem     1-blocks        Used   Available Capacity Mounted on\n/dev/vda1    105089261568 52544630784 48226148352      53% /\n")
	require.NoError(t, err)
	require.Len(t, fss, 1)
	assert.Equal(t, "/", fss[0].Mount)
	assert.Equal(t, int64(52544630784+48226148352), fss[0].Size)
}

func TestParseNetwork(t *testing.T) {
	r, err := ParseRoute(`[{"dst":"10.213.5.7","dev":"sr-xp","prefsrc":"10.213.5.1","flags":[],"uid":0,"cache":[]}]`)
	require.NoError(t, err)
	assert.True(t, r.OnLink())
	r, err = ParseRoute(`[{"dst":"10.213.5.7","gateway":"192.0.2.1","dev":"eth0","prefsrc":"192.0.2.2","flags":[],"uid":0,"cache":[]}]`)
	require.NoError(t, err)
	assert.False(t, r.OnLink(), "via a gateway")
	r, err = ParseRoute(`[{"type":"local","dst":"10.213.5.7","dev":"lo","prefsrc":"10.213.5.7","flags":[],"uid":0,"cache":["local"]}]`)
	require.NoError(t, err)
	assert.False(t, r.OnLink(), "the namespace holds the address")

	ns, err := ParseNetnsRoutes(`
netns: sr-xb
[{"type":"local","dst":"10.213.5.7","dev":"lo","prefsrc":"10.213.5.7","flags":[],"uid":0,"cache":["local"]}]

netns: sr-xq

netns: sr-xp
[{"dst":"10.213.5.7","dev":"sr-xp","prefsrc":"10.213.5.1","flags":[],"uid":0,"cache":[]}]
`)
	require.NoError(t, err)
	require.Len(t, ns, 2)
	assert.Equal(t, "sr-xb", ns[0].Netns)
	assert.Equal(t, "local", ns[0].Route.Type)
	assert.Equal(t, "sr-xp", ns[1].Netns)
	assert.True(t, ns[1].Route.OnLink())
	ns, err = ParseNetnsRoutes("")
	require.NoError(t, err)
	assert.Empty(t, ns)

	mac, state, err := ParseNeigh(`[{"dst":"10.213.5.7","dev":"sr-xp","lladdr":"b2:1c:5c:10:b2:0e","state":["REACHABLE"]},{"dst":"10.213.5.9","dev":"sr-xp","state":["FAILED"]}]`, "10.213.5.7")
	require.NoError(t, err)
	assert.Equal(t, "b2:1c:5c:10:b2:0e", mac)
	assert.Equal(t, "REACHABLE", state)
	mac, _, err = ParseNeigh("[]", "10.213.5.7")
	require.NoError(t, err)
	assert.Empty(t, mac)

	sent, replies, macs, err := ParseArping(`ARPING 10.213.5.7 from 10.213.5.1 sr-xp
Unicast reply from 10.213.5.7 [BA:5B:49:DA:51:AF]  0.552ms
Unicast reply from 10.213.5.7 [B2:1C:5C:10:B2:0E]  0.569ms
Unicast reply from 10.213.5.7 [BA:5B:49:DA:51:AF]  0.591ms
Unicast reply from 10.213.5.70 [00:11:22:33:44:55]  0.591ms
Sent 3 probes (3 broadcast(s))
Received 4 response(s)
`, "10.213.5.7")
	require.NoError(t, err)
	assert.Equal(t, 3, sent)
	assert.Equal(t, 3, replies, "the reply for another address does not count")
	assert.Equal(t, []string{"ba:5b:49:da:51:af", "b2:1c:5c:10:b2:0e"}, macs)
	_, _, _, err = ParseArping("arping: socket: Operation not permitted", "10.0.0.1")
	require.Error(t, err)

	s, rcv, err := ParsePing("--- 10.213.5.7 ping statistics ---\n3 packets transmitted, 2 received, 33.3333% packet loss, time 2003ms\n")
	require.NoError(t, err)
	assert.Equal(t, []int{3, 2}, []int{s, rcv})
	_, _, err = ParsePing("ping: connect: Network is unreachable")
	require.Error(t, err)
}

func TestScanLog(t *testing.T) {
	since := time.Date(2026, 12, 1, 8, 30, 0, 0, time.UTC)
	until := since.Add(time.Hour)
	log := strings.Join([]string{
		"2026-12-01 08:10:00.000 100 ERROR nova.conductor [-] before the window: not kept",
		"2026-12-01 08:40:01.100 100 ERROR oslo_db.sqlalchemy.engines [-] Database connection was found disconnected; reconnecting: oslo_db.exception.DBConnectionError: (pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server on '127.0.0.10' ([Errno 111] Connection refused)\")",
		"Traceback (most recent call last):",
		"  File \"/usr/lib/python3/dist-packages/pymysql/connections.py\", line 613, in connect",
		"2026-12-01 08:41:00.000 100 INFO nova.conductor [-] all fine: not kept",
		"2026-12-01 08:42:00.000 100 WARNING nova.scheduler.utils [req-1] Failed to compute_task_build_instances: No valid host was found. There are not enough hosts available.",
		"2026-12-01 08:43:00.000 100 ERROR oslo.messaging._drivers.impl_rabbit [-] AMQP server on 127.0.0.10:5672 is unreachable: [Errno 111] ECONNREFUSED",
		"2026-12-01  8:44:14 58 [ERROR] mariadbd: Disk full (/var/lib/mysql/ibtmp1)",
		"\x1b[38;5;214m2026-12-01 08:45:40.440876+00:00 [error] <0.619.0> closing AMQP connection: timed out\x1b[0m",
		"[pid: 26124|app: 0|req: 101/101] 127.0.0.1 () {28 vars} [Tue Dec  1 08:46:48 2026] GET /v3/auth/tokens => generated 4084 bytes in 12 msecs (HTTP/1.1 200)",
		"2026-12-01 09:40:00.000 100 ERROR nova.conductor [-] after the window: not kept",
	}, "\n")
	ex := ScanLog(log, since, until, time.UTC)
	assert.Equal(t, 11, ex.Scanned)
	var kinds []string
	for _, l := range ex.Lines {
		kinds = append(kinds, l.Kind)
	}
	// The traceback lines belong to the DB error line before them (same time, in the window).
	assert.Equal(t, []string{LogDB, LogError, LogNoValidHost, LogAMQP, LogError, LogAMQP}, kinds)
	db, ok := ex.Count(LogDB)
	require.True(t, ok)
	assert.Equal(t, 1, db.Count)
	assert.Equal(t, time.Date(2026, 12, 1, 8, 40, 1, 100e6, time.UTC), db.First)
	assert.Equal(t, time.Date(2026, 12, 1, 8, 10, 0, 0, time.UTC), ex.Oldest)
	assert.Equal(t, time.Date(2026, 12, 1, 8, 44, 14, 0, time.UTC), ex.Lines[4].At, "MariaDB's space-padded hour")

	at, ok := LineTime("[pid: 1|app: 0] 127.0.0.1 () [Tue Dec  1 08:46:48 2026] GET /", time.UTC)
	require.True(t, ok)
	assert.Equal(t, time.Date(2026, 12, 1, 8, 46, 48, 0, time.UTC), at)
	_, ok = LineTime("  File \"x.py\", line 3", time.UTC)
	assert.False(t, ok)

	// The excerpt keeps the newest MaxLogLines lines and counts them all.
	var many []string
	for i := 0; i < 50; i++ {
		many = append(many, since.Add(time.Duration(i)*time.Second).Format("2006-01-02 15:04:05.000")+" 1 ERROR x [-] boom")
	}
	ex = ScanLog(strings.Join(many, "\n"), since, until, time.UTC)
	assert.Len(t, ex.Lines, MaxLogLines)
	assert.Equal(t, 50, ex.Matched)
	assert.Equal(t, since.Add(49*time.Second), ex.Lines[MaxLogLines-1].At)
}

func TestInput(t *testing.T) {
	require.NoError(t, ValidateSymptom(InstanceUnreachable))
	for _, bad := range []string{"", "instance-slow", "INSTANCE-UNREACHABLE", "api-slow;rm"} {
		err := ValidateSymptom(bad)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "symptom")
	}
	ok := []struct{ symptom, subject, kind string }{
		{InstanceUnreachable, "10.0.0.5", SubjectIP},
		{InstanceUnreachable, "fd00::5", SubjectIP},
		{InstanceUnreachable, "web-1", SubjectName},
		{InstanceUnreachable, "compute1", SubjectName},
		{InstanceWontBoot, "5B0C1E52-3F7E-4C2A-9D1C-0A9B8C7D6E5F", SubjectUUID},
		{DBConnectionErrors, "nova-conductor", SubjectName},
		{DBConnectionErrors, "all", SubjectAll},
		{VolumeCreateTimeout, "all", SubjectAll},
		{APISlow, "compute", SubjectAPI},
		{APISlow, "all", SubjectAll},
	}
	for _, c := range ok {
		s, err := ParseSubject(c.symptom, c.subject)
		if assert.NoError(t, err, c.subject) {
			assert.Equal(t, c.kind, s.Kind, c.subject)
		}
	}
	s, _ := ParseSubject(InstanceWontBoot, "5B0C1E52-3F7E-4C2A-9D1C-0A9B8C7D6E5F")
	assert.Equal(t, "5b0c1e52-3f7e-4c2a-9d1c-0a9b8c7d6e5f", s.Value)
	for _, c := range []struct{ symptom, subject string }{
		{InstanceUnreachable, ""},
		{InstanceUnreachable, "web-1; reboot"},
		{InstanceUnreachable, "$(reboot)"},
		{InstanceUnreachable, "-rf"},
		{InstanceUnreachable, "web 1"},
		{InstanceUnreachable, "../../etc/passwd"},
		{InstanceUnreachable, "a/b"},
		{InstanceUnreachable, "web-1\nrm"},
		{InstanceUnreachable, "0.0.0.0"},
		{InstanceUnreachable, "255.255.255.255"},
		{InstanceUnreachable, strings.Repeat("a", 300)},
		{InstanceUnreachable, "ünïcode"},
		{InstanceWontBoot, "10.0.0.5"},
		{APISlow, "nova"},
		{DBConnectionErrors, "a:b"},
	} {
		_, err := ParseSubject(c.symptom, c.subject)
		if assert.Error(t, err, "%q", c.subject) {
			assert.Contains(t, err.Error(), "subject")
		}
	}
	for in, want := range map[string]time.Duration{"": 30 * time.Minute, "30m": 30 * time.Minute, "2h": 2 * time.Hour, "1h30m": 90 * time.Minute, "3d": 72 * time.Hour} {
		d, err := ParseSince(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, d, in)
	}
	for _, bad := range []string{"yesterday", "-30m", "+30m", "30", "10s", "8d", "99999h", "30m;ls", "1e9h", "0m"} {
		_, err := ParseSince(bad)
		if assert.Error(t, err, bad) {
			assert.Contains(t, err.Error(), "since")
		}
	}
}
