package remote

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package that falls into one of
// these classes wraps the sentinel, so callers test with errors.Is. Activities
// map them to Temporal errors with ErrorType and Retryable.
var (
	// ErrHostKeyUnknown: the host offered a key and known_hosts has no entry
	// for the host. Non-retryable: a person has to verify and add the key.
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrHostKeyMismatch: known_hosts has keys for the host and the offered
	// one is not among them (or is revoked). Non-retryable: possible
	// man-in-the-middle or a reinstalled host.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrAuth: the server refused every key offered (key file or agent).
	// Non-retryable.
	ErrAuth = errors.New("authentication failed")
	// ErrInvalidArgument: a command name, template or argument failed
	// validation. Raised before any connection is made. Non-retryable.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrTimeout: the per-command timeout (or the caller's context deadline)
	// expired; the session was closed. Retryable.
	ErrTimeout = errors.New("command timed out")
	// ErrConnect: the connection could not be made or was lost (dial,
	// handshake, session open, lost channel). Retryable.
	ErrConnect = errors.New("connection failed")
	// ErrClosed: the Pool was closed. Non-retryable.
	ErrClosed = errors.New("pool closed")
	// ErrTruncated: a command's output was cut at MaxOutputBytes and someone needed all of
	// it (Result.Whole). Non-retryable: the same command prints as much again.
	ErrTruncated = errors.New("output truncated")
)

// Stable error type names for temporal.NewApplicationError /
// NewNonRetryableApplicationError (see ErrorType).
const (
	TypeHostKeyUnknown  = "RemoteHostKeyUnknown"
	TypeHostKeyMismatch = "RemoteHostKeyMismatch"
	TypeAuth            = "RemoteAuthFailed"
	TypeInvalidArgument = "RemoteInvalidArgument"
	TypeTimeout         = "RemoteTimeout"
	TypeConnect         = "RemoteConnectFailed"
	TypeClosed          = "RemotePoolClosed"
	TypeTruncated       = "RemoteOutputTruncated"
	TypeOther           = "RemoteError"
)

// ErrorType returns a stable type name for err (one of the Type* constants).
func ErrorType(err error) string {
	switch {
	case errors.Is(err, ErrHostKeyUnknown):
		return TypeHostKeyUnknown
	case errors.Is(err, ErrHostKeyMismatch):
		return TypeHostKeyMismatch
	case errors.Is(err, ErrAuth):
		return TypeAuth
	case errors.Is(err, ErrInvalidArgument):
		return TypeInvalidArgument
	case errors.Is(err, ErrTimeout):
		return TypeTimeout
	case errors.Is(err, ErrConnect):
		return TypeConnect
	case errors.Is(err, ErrClosed):
		return TypeClosed
	case errors.Is(err, ErrBusy):
		return TypeBusy
	case errors.Is(err, ErrTruncated):
		return TypeTruncated
	}
	return TypeOther
}

// Retryable reports whether retrying the same call may succeed: false for host
// key problems, authentication failures, invalid arguments, a closed pool and
// truncated output; true otherwise (connection failures, timeouts, unclassified
// errors).
func Retryable(err error) bool {
	switch ErrorType(err) {
	case TypeHostKeyUnknown, TypeHostKeyMismatch, TypeAuth, TypeInvalidArgument, TypeClosed, TypeTruncated:
		return false
	}
	return true
}

// HostKeyError describes a refused host key. It wraps ErrHostKeyUnknown or
// ErrHostKeyMismatch.
type HostKeyError struct {
	Host        string   // inventory name
	Address     string   // host:port that was checked against known_hosts
	KeyType     string   // type of the offered key, e.g. ssh-ed25519
	Fingerprint string   // SHA256 fingerprint of the offered key
	Known       []string // known_hosts entries for the address: "file:line type fingerprint"
	Revoked     bool     // the offered key is marked @revoked
	File        string   // the known_hosts file
	kind        error
}

func (e *HostKeyError) Error() string {
	var b strings.Builder
	switch {
	case e.Revoked:
		fmt.Fprintf(&b, "remote: host key of %s (%s) is REVOKED in %s: offered %s %s", e.Host, e.Address, e.File, e.KeyType, e.Fingerprint)
	case e.kind == ErrHostKeyUnknown:
		fmt.Fprintf(&b, "remote: host key of %s (%s) is unknown: offered %s %s is not in %s; verify the fingerprint out of band and add the host to known_hosts",
			e.Host, e.Address, e.KeyType, e.Fingerprint, e.File)
	default:
		fmt.Fprintf(&b, "remote: host key of %s (%s) has CHANGED: offered %s %s, known_hosts has %s; possible man-in-the-middle attack or reinstalled host: verify before updating %s",
			e.Host, e.Address, e.KeyType, e.Fingerprint, strings.Join(e.Known, ", "), e.File)
	}
	return b.String()
}

func (e *HostKeyError) Unwrap() error { return e.kind }

// ArgError describes a refused command argument or template. It wraps
// ErrInvalidArgument.
type ArgError struct {
	Command string // catalogue name, if known
	Arg     string // placeholder or argument name
	Kind    string // argument kind, e.g. "path"
	Value   string // the refused value, quoted and shortened for display
	Reason  string
}

func (e *ArgError) Error() string {
	var b strings.Builder
	b.WriteString("remote: invalid argument")
	if e.Command != "" {
		fmt.Fprintf(&b, " for command %q", e.Command)
	}
	if e.Arg != "" {
		fmt.Fprintf(&b, ": %s", e.Arg)
	}
	if e.Kind != "" && e.Kind != e.Arg {
		fmt.Fprintf(&b, " (%s)", e.Kind)
	}
	if e.Value != "" {
		fmt.Fprintf(&b, " = %s", e.Value)
	}
	fmt.Fprintf(&b, ": %s", e.Reason)
	return b.String()
}

func (e *ArgError) Unwrap() error { return ErrInvalidArgument }

// displayValue quotes v for error messages and cuts it to 64 bytes.
func displayValue(v string) string {
	const max = 64
	if len(v) > max {
		return fmt.Sprintf("%q…(%d bytes)", v[:max], len(v))
	}
	return fmt.Sprintf("%q", v)
}
