package remote_test

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/placeholder"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":              `''`,
		"abc":           `'abc'`,
		"it's":          `'it'\''s'`,
		"'":             `''\'''`,
		"''":            `''\'''\'''`,
		"a b":           `'a b'`,
		"$(id)":         `'$(id)'`,
		"`id`":          "'`id`'",
		"a;b|c&d":       `'a;b|c&d'`,
		"line\nbreak":   "'line\nbreak'",
		`back\slash"q"`: `'back\slash"q"'`,
		"*?[x]~":        `'*?[x]~'`,
	} {
		assert.Equal(t, want, remote.ShellQuote(in), "ShellQuote(%q)", in)
	}
	assert.Equal(t, `'systemctl' 'start' 'nova-compute'`, remote.ShellJoin([]string{"systemctl", "start", "nova-compute"}))
	assert.Equal(t, `'mount' 'LABEL=d1' '/srv/node/d1'`, remote.Command{Argv: []string{"mount", "LABEL=d1", "/srv/node/d1"}}.String())
}

// TestShellJoinRoundTrip has a real POSIX shell split ShellJoin's output back
// into words and checks that every word comes back byte for byte, including
// hostile and random ones.
func TestShellJoinRoundTrip(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal("no sh in PATH")
	}
	words := []string{"", " ", "'", `\'`, `"'"`, "$(touch /tmp/pwned)", "`id`", "a;b", "a\nb", "${HOME}", "$HOME", "!!", "~", "*",
		"--help", "-n", "a\tb", "\\", "%s", "\u00e9\u4e16", "'$(id)'", "x'; rm -rf / #"}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		b := make([]byte, r.IntN(12))
		for j := range b {
			b[j] = byte(1 + r.IntN(255)) // anything but NUL
		}
		words = append(words, string(b))
	}
	out, err := exec.Command(sh, "-c", `printf '%s\000' `+remote.ShellJoin(words)).Output()
	require.NoError(t, err)
	got := strings.Split(string(out), "\x00")
	require.Equal(t, len(words)+1, len(got))
	for i, w := range words {
		assert.Equal(t, w, got[i], "word %d", i)
	}
}

func TestValidateArgAccepts(t *testing.T) {
	for _, c := range [][2]string{
		{"service", "nova-compute"}, {"service", "openstack-swift-object@1.service"}, {"service", "getty@tty1"},
		{"path", "/srv/node/d1"}, {"path", "/var/log/nova/nova-compute.log"}, {"path", "/etc/swift/object.ring.gz"},
		{"path", "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"}, {"path", "/srv/node/d1_old"}, {"log", "/var/log/syslog"},
		{"device", "sdb"}, {"device", "nvme0n1"}, {"device_path", "/dev/sdb"},
		{"label", "d1"}, {"label", "swift-d12"}, {"number", "100"}, {"lines", "0"}, {"weight", "100"}, {"weight", "12.5"},
		{"port", "6200"}, {"host", "compute1"}, {"host", "compute-1.lab.example.org"}, {"host", "10.0.0.11"},
		{"ip", "10.0.0.11"}, {"ip", "fd00::1"}, {"builder", "/etc/swift/object.builder"},
		{"ring_device", "r1z1-10.0.0.11:6200/d1"}, {"ring_device", "r2z3-storage1:6200/d1"},
		{"ring_search", "d12"}, {"ring_search", "10.0.0.11/d1"}, {"ring_search", "r1z1-10.0.0.11:6200/d1"}, {"ring_search", "z2"},
	} {
		assert.NoError(t, remote.ValidateArg(c[0], c[1]), "%s %q", c[0], c[1])
	}
}

func TestValidateArgRefuses(t *testing.T) {
	long := strings.Repeat("a", 256)
	for _, c := range []struct{ kind, value, reason string }{
		{"service", "", "is empty"},
		{"service", "nova;reboot", "';'"},
		{"service", "x$(reboot)", "command substitution"},
		{"service", "x`reboot`", "backtick"},
		{"service", "nova\nreboot", "newline"},
		{"service", "nova compute", "whitespace"},
		{"service", "nova\x00x", "NUL"},
		{"service", "Nova", "systemd unit"},
		{"service", "-f", "option"},
		{"service", long, "too long"},
		{"service", "nova|x", "metacharacter"},
		{"service", "nova&", "metacharacter"},
		{"service", "növa", "non-ASCII"},
		{"service", "a\x1bb", "control"},
		{"path", "relative/path", "absolute"},
		{"path", "/srv/../etc/shadow", "'..'"},
		{"path", "../etc", "'..'"},
		{"path", "/srv/node/", "clean"},
		{"path", "/srv//node", "clean"},
		{"path", "/srv/./node", "clean"},
		{"path", "/", "root"},
		{"path", "/srv/node d1", "whitespace"},
		{"path", "/srv/$HOME", "metacharacter"},
		{"path", "/srv/a,b", "may only contain"},
		{"path", "/" + strings.Repeat("a", 4096), "too long"},
		{"device", "/dev/sdb", "no slashes"},
		{"device", "sdb1;x", "';'"},
		{"device", "s", "block device"},
		{"device_path", "/etc/passwd", "/dev/"},
		{"number", "12a", "digits"},
		{"number", "-1", "option"},
		{"lines", "1e9", "digits"},
		{"weight", "1.2.3", "decimal"},
		{"port", "70000", "1-65535"},
		{"host", "bad_host", "RFC 1123"},
		{"host", "-lead", "option"},
		{"host", "a..b", "RFC 1123"},
		{"ip", "10.0.0.256", "IPv4 or IPv6"},
		{"label", "thirteen-char", "at most 12"},
		{"builder", "/etc/swift/object.ring.gz", "*.builder"},
		{"ring_device", "r1z1-10.0.0.1/d1", "r<region>"},
		{"ring_device", "r1z1-10.0.0.1:99999/d1", "port"},
		{"ring_search", "d1 d2", "whitespace"},
		{"ring_device", "r1z2-[fd00::11]:6200/sdb", "metacharacter '['"},
		{"nosuchkind", "x", "unknown argument kind"},
	} {
		err := remote.ValidateArg(c.kind, c.value)
		if assert.Error(t, err, "%s %q", c.kind, c.value) {
			assert.ErrorIs(t, err, remote.ErrInvalidArgument)
			assert.Contains(t, err.Error(), c.reason, "%s %q", c.kind, c.value)
			assert.Contains(t, err.Error(), c.kind)
			var ae *remote.ArgError
			assert.True(t, errors.As(err, &ae))
			assert.False(t, remote.Retryable(err))
			assert.Equal(t, remote.TypeInvalidArgument, remote.ErrorType(err))
		}
	}
}

// Every placeholder config accepts must have a validator here, or Build would refuse a template
// that config validated.
func TestEveryPlaceholderKindHasAValidator(t *testing.T) {
	for name, kind := range placeholder.Kinds {
		err := remote.ValidateArg(name, "x")
		if err != nil {
			assert.NotContains(t, err.Error(), "unknown argument kind", "placeholder {%s} of kind %q", name, kind)
		}
	}
}
