package remote

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/stackrun/stackrun/internal/infra/placeholder"
)

const (
	maxArgLen  = 255
	maxPathLen = 4096
)

var (
	reService   = regexp.MustCompile(`^[a-z0-9][a-z0-9@._-]{0,63}$`)
	reDevice    = regexp.MustCompile(`^[a-z][a-z0-9]{1,31}$`)
	rePathChars = regexp.MustCompile(`^[A-Za-z0-9._/+@:-]+$`) // plus '_' (see validPath)
	reLabel     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,11}$`)
	reNumber    = regexp.MustCompile(`^[0-9]{1,18}$`)
	reDecimal   = regexp.MustCompile(`^[0-9]{1,9}(\.[0-9]{1,6})?$`)
	reHostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	reRingDev   = regexp.MustCompile(`^r[0-9]{1,4}z[0-9]{1,4}-([A-Za-z0-9.-]{1,253}):([0-9]{1,5})/([A-Za-z0-9._-]{1,64})$`)
	reIface     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,14}$`)
	reNetns     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	reRingFind  = regexp.MustCompile(`^(d[0-9]{1,6}|(r[0-9]{1,4})?(z[0-9]{1,4})?-?([0-9A-Za-z.-]{1,253})?(:[0-9]{1,5})?(/[A-Za-z0-9._-]{1,64})?)$`)
)

var kindValidators = map[string]func(string) error{
	placeholder.KindService: matchRe(reService, "a systemd unit name (lower-case letters, digits, @ . _ -, at most 64)"),
	placeholder.KindPath:    validPath,
	placeholder.KindDevice:  matchRe(reDevice, "a block device name like sdb or nvme0n1 (no /dev/, no slashes)"),
	placeholder.KindDevicePath: func(v string) error {
		if err := validPath(v); err != nil {
			return err
		}
		if !strings.HasPrefix(v, "/dev/") {
			return fmt.Errorf("must be a path under /dev/")
		}
		return nil
	},
	placeholder.KindBuilder: func(v string) error {
		if err := validPath(v); err != nil {
			return err
		}
		if !strings.HasSuffix(v, ".builder") || len(path.Base(v)) <= len(".builder") {
			return fmt.Errorf("must be a swift ring builder file (*.builder)")
		}
		return nil
	},
	placeholder.KindLabel:   matchRe(reLabel, "a filesystem label (letters, digits, . _ -, at most 12)"),
	placeholder.KindNumber:  matchRe(reNumber, "a non-negative integer (digits only)"),
	placeholder.KindDecimal: matchRe(reDecimal, "a non-negative decimal number like 100 or 12.5"),
	placeholder.KindPort: func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || !reNumber.MatchString(v) || n < 1 || n > 65535 {
			return fmt.Errorf("must be a TCP port 1-65535")
		}
		return nil
	},
	placeholder.KindHostname: validHostname,
	placeholder.KindIP: func(v string) error {
		if ip := net.ParseIP(v); ip == nil {
			return fmt.Errorf("must be an IPv4 or IPv6 address")
		}
		return nil
	},
	placeholder.KindRingDevice: func(v string) error {
		m := reRingDev.FindStringSubmatch(v)
		if m == nil {
			return fmt.Errorf("must look like r<region>z<zone>-<ip>:<port>/<device>")
		}
		if validHostname(m[1]) != nil { // IPv4 addresses are valid host names here
			return fmt.Errorf("has an invalid address %q", m[1])
		}
		if p, _ := strconv.Atoi(m[2]); p < 1 || p > 65535 {
			return fmt.Errorf("has an invalid port %q", m[2])
		}
		return nil
	},
	placeholder.KindRingSearch: matchRe(reRingFind, "a swift-ring-builder search value like d12, r1z1-10.0.0.1:6200/d1 or 10.0.0.1/d1"),
	placeholder.KindInterface:  matchRe(reIface, "a network interface name (letters, digits, . _ @ -, at most 15)"),
	placeholder.KindNetns:      matchRe(reNetns, "a network namespace name (letters, digits, . _ -, at most 64)"),
}

func matchRe(re *regexp.Regexp, what string) func(string) error {
	return func(v string) error {
		if !re.MatchString(v) {
			return fmt.Errorf("must be %s", what)
		}
		return nil
	}
}

// validPath: absolute, clean, no "..", restricted charset, not "/".
func validPath(v string) error {
	if !strings.HasPrefix(v, "/") {
		return fmt.Errorf("must be an absolute path (start with '/')")
	}
	if !rePathChars.MatchString(strings.ReplaceAll(v, "_", "-")) {
		return fmt.Errorf("may only contain letters, digits and . _ / + - @ :")
	}
	if path.Clean(v) != v {
		return fmt.Errorf("must be a clean path (no '//', '/./', trailing '/'); clean form is %q", path.Clean(v))
	}
	if v == "/" {
		return fmt.Errorf("must not be the root directory")
	}
	return nil
}

func validHostname(v string) error {
	if len(v) > 253 {
		return fmt.Errorf("must be a host name of at most 253 bytes")
	}
	for _, l := range strings.Split(v, ".") {
		if !reHostLabel.MatchString(l) {
			return fmt.Errorf("must be an RFC 1123 host name (labels of letters, digits and '-', 1-63 bytes, separated by '.')")
		}
	}
	return nil
}

// ValidateArg checks value against an argument kind (one of the Kind*
// constants) or a placeholder name (a key of placeholder.Kinds, e.g. "log", which
// stands for its kind). Runbooks call it to refuse user input before they start
// a workflow; Catalogue.Build calls it for every placeholder.
//
// Every kind refuses: empty values, NUL, newlines and other control
// characters, non-ASCII, whitespace, shell metacharacters (; | & $ ` ( ) < > '
// " \ * ? [ ] { } ~ ! # and $(...)), '..' path segments, a leading '-' (which
// a program would read as an option), and values over 255 bytes (4096 for
// paths). Then the kind's own pattern applies. The error is an *ArgError
// wrapping ErrInvalidArgument that says why.
func ValidateArg(kind, value string) error {
	if err := validateArg(kind, value); err != nil {
		err.Kind = resolveKind(kind)
		err.Arg = kind
		return err
	}
	return nil
}

func resolveKind(kind string) string {
	if k, ok := placeholder.Kinds[kind]; ok {
		return k
	}
	return kind
}

func validateArg(kind, value string) *ArgError {
	k := resolveKind(kind)
	check, ok := kindValidators[k]
	if !ok {
		return &ArgError{Reason: fmt.Sprintf("unknown argument kind %q (known: %s)", kind, strings.Join(knownKinds(), ", "))}
	}
	fail := func(reason string) *ArgError {
		return &ArgError{Value: displayValue(value), Reason: reason}
	}
	checked := value
	if tildeKinds[k] {
		checked = strings.ReplaceAll(value, "~", "")
	}
	if reason := genericReason(checked); reason != "" {
		return fail(reason)
	}
	limit := maxArgLen
	if k == placeholder.KindPath || k == placeholder.KindDevicePath || k == placeholder.KindBuilder || k == placeholder.KindPartialPath {
		limit = maxPathLen
	}
	if len(value) > limit {
		return fail(fmt.Sprintf("is too long (%d bytes, at most %d)", len(value), limit))
	}
	if err := check(value); err != nil {
		return fail(err.Error())
	}
	return nil
}

// genericReason returns why value is refused whatever its kind, or "".
func genericReason(v string) string {
	if v == "" {
		return "is empty"
	}
	if strings.IndexByte(v, 0) >= 0 {
		return "contains a NUL byte"
	}
	if strings.ContainsAny(v, "\n\r") {
		return "contains a newline"
	}
	if strings.Contains(v, "$(") {
		return "contains command substitution $(...)"
	}
	if strings.Contains(v, "`") {
		return "contains a backtick (command substitution)"
	}
	if strings.Contains(v, ";") {
		return "contains ';' (command separator)"
	}
	for _, r := range v {
		switch {
		case r == ' ' || r == '\t' || r == '\v' || r == '\f':
			return "contains whitespace"
		case r < 0x20 || r == 0x7f:
			return fmt.Sprintf("contains control character %U", r)
		case r > 0x7e:
			return fmt.Sprintf("contains non-ASCII character %U", r)
		case strings.ContainsRune(`|&$()<>'"\*?[]{}~!#`, r):
			return fmt.Sprintf("contains shell metacharacter %q", r)
		}
	}
	for _, seg := range strings.Split(v, "/") {
		if seg == ".." {
			return "contains a '..' path segment"
		}
	}
	if strings.HasPrefix(v, "-") {
		return "starts with '-' (would be read as an option)"
	}
	return ""
}

func knownKinds() []string {
	ks := make([]string, 0, len(kindValidators))
	for k := range kindValidators {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ShellQuote quotes s for a POSIX shell with single quotes: the result is
// always enclosed in single quotes, and every single quote inside s is replaced
// by close-quote, backslash-quote, reopen-quote:
//
//	it's  ->  'it'\''s'
//
// Nothing is special inside single quotes, so the shell passes s through
// unchanged (a NUL byte cannot be passed at all; Run refuses it).
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellJoin quotes every element with ShellQuote and joins them with spaces:
// the string sent in the SSH "exec" request, which the remote user's login
// shell splits back into exactly argv.
func ShellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = ShellQuote(a)
	}
	return strings.Join(q, " ")
}
