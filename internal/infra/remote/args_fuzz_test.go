package remote

// Fuzz targets of the SSH argument validation and tokenising (issue 17). Properties:
//   - an accepted value holds nothing a shell or a program could read as more than one plain
//     argument (no metacharacter, control byte, whitespace, non-ASCII, '..' segment, leading '-');
//   - a refused value never reaches a command line: Build fails with an ArgError and no argv;
//   - the string sent to the host (ShellJoin) is split back by a real POSIX shell into exactly
//     the argv it was made from, whatever bytes the elements hold;
//   - any catalogue template config either compiles or is refused, and a compiled template's
//     program is never a placeholder.

import (
	"bytes"
	"errors"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stackrun/stackrun/internal/infra/placeholder"
)

func kindNames() []string {
	ks := make([]string, 0, len(kindValidators))
	for k := range kindValidators {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// assertHarmless checks what every accepted value must be, whatever its kind.
func assertHarmless(t *testing.T, kind, v string) {
	t.Helper()
	if v == "" || strings.HasPrefix(v, "-") {
		t.Fatalf("kind %s accepted %q (empty or an option)", kind, v)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x21 || c > 0x7e {
			t.Fatalf("kind %s accepted %q with byte %#x", kind, v, c)
		}
		if strings.IndexByte("|&;$()<>'\"\\*?[]{}!#`", c) >= 0 || (c == '~' && !tildeKinds[kind]) {
			t.Fatalf("kind %s accepted %q with shell metacharacter %q", kind, v, c)
		}
	}
	if slices.Contains(strings.Split(v, "/"), "..") {
		t.Fatalf("kind %s accepted %q with a '..' segment", kind, v)
	}
	limit := maxArgLen
	if kind == placeholder.KindPath || kind == placeholder.KindDevicePath || kind == placeholder.KindBuilder || kind == placeholder.KindPartialPath {
		limit = maxPathLen
	}
	if len(v) > limit {
		t.Fatalf("kind %s accepted %d bytes", kind, len(v))
	}
}

func FuzzValidateArg(f *testing.F) {
	for _, v := range []string{"nova-compute", "/srv/node/sdb", "sdb", "../etc", "-rf", "a b", "x;id", "$(id)", "`id`",
		"é", "\u0430dmin", "/dev/sdb\n", "1~rc1", "r1z1-10.0.0.1:6200/sdb", strings.Repeat("a", 300), "", "100.5", "65536"} {
		f.Add(uint8(0), v)
		f.Add(uint8(7), v)
	}
	kinds := kindNames()
	cat, err := NewCatalogue(DefaultCommands(), nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, k uint8, v string) {
		kind := kinds[int(k)%len(kinds)]
		err := ValidateArg(kind, v)
		if err == nil {
			assertHarmless(t, kind, v)
			return
		}
		var ae *ArgError
		if !errors.As(err, &ae) || !errors.Is(err, ErrInvalidArgument) || ae.Reason == "" {
			t.Fatalf("refusal of %q as %s is not an ArgError with a reason: %v", v, kind, err)
		}
		// Refused here, refused in every command whose placeholder has this kind.
		for name, argv := range defaultCommands {
			for _, el := range argv {
				m := rePlaceholder.FindStringSubmatch(el)
				if m == nil || placeholder.Kinds[m[1]] != kind || m[2] != "" {
					continue
				}
				args := validArgs()
				args[m[1]] = v
				cmd, err := cat.Build(name, "", args)
				if err == nil || len(cmd.Argv) != 0 {
					t.Fatalf("%s built with refused %s %q: %v", name, m[1], v, cmd.Argv)
				}
			}
		}
	})
}

// validArgs is one valid value for every placeholder.
func validArgs() map[string]string {
	byKind := map[string]string{
		placeholder.KindService: "nova-compute", placeholder.KindPath: "/srv/node/sdb", placeholder.KindDevice: "sdb",
		placeholder.KindDevicePath: "/dev/sdb", placeholder.KindBuilder: "/etc/swift/object.builder", placeholder.KindLabel: "sdb",
		placeholder.KindNumber: "10", placeholder.KindDecimal: "100", placeholder.KindPort: "6200", placeholder.KindHostname: "storage1",
		placeholder.KindIP: "10.0.0.1", placeholder.KindRingDevice: "r1z1-10.0.0.1:6200/sdb", placeholder.KindRingSearch: "d1",
		placeholder.KindInterface: "eth0", placeholder.KindNetns: "qrouter-1", placeholder.KindPackage: "python3-nova",
		placeholder.KindDebVersion: "2:26.2.2-1~deb12u5", placeholder.KindPackageVersion: "python3-nova=2:26.2.2-1~deb12u5",
		placeholder.KindDatabase: "nova_api", placeholder.KindFileName: "keystone", placeholder.KindPartialPath: "/var/backups/x.partial",
		placeholder.KindOwner: "swift:swift",
	}
	args := map[string]string{}
	for ph, k := range placeholder.Kinds {
		args[ph] = byKind[k]
	}
	return args
}

// FuzzBuild fills catalogue commands with fuzzed values: what is built holds only validated
// values, keeps the template's literal program, and its command line splits back into argv.
func FuzzBuild(f *testing.F) {
	f.Add(uint8(3), "log", "/var/log/nova/nova-compute.log")
	f.Add(uint8(9), "builder", "/etc/swift/object.builder;reboot")
	f.Add(uint8(1), "weight", "1e9")
	names := sortedKeys(defaultCommands)
	cat, err := NewCatalogue(DefaultCommands(), nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, n uint8, ph, v string) {
		name := names[int(n)%len(names)]
		args := validArgs()
		args[ph] = v
		var list []string
		if slices.ContainsFunc(defaultCommands[name], func(el string) bool { return strings.HasSuffix(el, "...}") }) {
			list = []string{"/etc/fstab", v}
		}
		cmd, err := cat.Build(name, "", args, list...)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Build error %v does not wrap ErrInvalidArgument", err)
			}
			return
		}
		tmpl := defaultCommands[name]
		if cmd.Argv[0] != tmpl[0] {
			t.Fatalf("program %q is not the template's %q", cmd.Argv[0], tmpl[0])
		}
		for _, a := range cmd.Argv {
			if strings.ContainsAny(a, "\x00\n\r") {
				t.Fatalf("%s: argv element %q holds NUL or a newline", name, a)
			}
		}
		if _, used := args[ph]; used && strings.Contains(strings.Join(tmpl, " "), "{"+ph) && placeholder.Kinds[ph] != "" {
			if err := ValidateArg(ph, v); err != nil && slices.Contains(cmd.Argv, v) {
				t.Fatalf("%s: refused %s %q is on the command line %v", name, ph, v, cmd.Argv)
			}
		}
		if got := posixSplit(t, cmd.String()); !slices.Equal(got, cmd.Argv) {
			t.Fatalf("%s: %q splits into %q, not %q", name, cmd.String(), got, cmd.Argv)
		}
	})
}

// posixSplit splits s as a POSIX shell would for the quoting ShellJoin emits (single quotes and
// backslash outside them); it refuses anything else, so a stray unquoted byte fails the test.
func posixSplit(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	in, word := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in:
			if c == '\'' {
				in = false
			} else {
				cur.WriteByte(c)
			}
		case c == '\'':
			in, word = true, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			word = true
		case c == ' ':
			if word {
				out = append(out, cur.String())
				cur.Reset()
				word = false
			}
		default:
			t.Fatalf("unquoted byte %q at %d in %q", c, i, s)
		}
	}
	if in {
		t.Fatalf("unterminated quote in %q", s)
	}
	if word {
		out = append(out, cur.String())
	}
	return out
}

// FuzzShellJoin sends the joined command line to a real /bin/sh (as the remote login shell gets
// it), which must hand the program exactly the argv it was made from.
func FuzzShellJoin(f *testing.F) {
	f.Add("it's", "$(id)", "a b\tc")
	f.Add("'", "''", "\\'")
	f.Add("-n", "*", "~root")
	f.Add("\n", "`id`", "é\u202e")
	sh, err := exec.LookPath("sh")
	if err != nil {
		f.Fatal("sh is needed to check the quoting against a real shell")
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		argv := []string{a, b, c}
		for _, x := range argv {
			if strings.IndexByte(x, 0) >= 0 {
				return // Run refuses NUL (checkCommand): no shell can carry it
			}
		}
		line := ShellJoin(argv)
		if got := posixSplit(t, line); !slices.Equal(got, argv) {
			t.Fatalf("%q splits into %q", line, got)
		}
		out, err := exec.Command(sh, "-c", `printf '%s\0' `+line).Output()
		if err != nil {
			t.Fatalf("sh -c %q: %v", line, err)
		}
		got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		if !slices.Equal(got, argv) || !bytes.HasSuffix(out, []byte{0}) {
			t.Fatalf("sh split %q into %q, want %q", line, got, argv)
		}
	})
}

// FuzzCatalogueConfig compiles fuzzed `commands:` overrides: never a panic; what compiles has a
// literal program and at most one variadic element.
func FuzzCatalogueConfig(f *testing.F) {
	f.Add("my_cmd", "systemctl\x1fstatus\x1f{service}")
	f.Add("evil", "{path}\x1f-rf")
	f.Add("two", "ls\x1f{path...}\x1f{dir...}")
	f.Add("brace", "echo\x1f{service")
	f.Add("Bad-Name", "ls")
	f.Fuzz(func(t *testing.T, name, tmpl string) {
		argv := strings.Split(tmpl, "\x1f")
		c, err := NewCatalogue(DefaultCommands(), map[string][]string{name: argv}, nil)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("refusal %v does not wrap ErrInvalidArgument", err)
			}
			return
		}
		got, ok := c.Template(name, "")
		if !ok || !slices.Equal(got, argv) {
			t.Fatalf("template %q compiled as %q", argv, got)
		}
		if rePlaceholder.MatchString(argv[0]) {
			t.Fatalf("program %q is a placeholder", argv[0])
		}
		variadic := 0
		for _, el := range argv {
			if strings.Contains(el, "...}") && rePlaceholder.MatchString(el) {
				variadic++
			}
		}
		if variadic > 1 {
			t.Fatalf("%q compiled with %d variadic elements", argv, variadic)
		}
	})
}
