package remote

import (
	"fmt"
	"strings"
)

// TruncatedError says that a command's output was cut at MaxOutputBytes. It wraps ErrTruncated.
type TruncatedError struct {
	Host    string
	Command []string
	Stdout  int // bytes of stdout kept
	Stderr  int // bytes of stderr kept
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("remote: output of %q on %s was cut at the output limit (%d bytes of stdout, %d of stderr kept): "+
		"a part is not read as the whole; raise ssh.max_output_bytes", strings.Join(e.Command, " "), e.Host, e.Stdout, e.Stderr)
}

func (e *TruncatedError) Unwrap() error { return ErrTruncated }

// Whole returns nil when the command's whole output was kept, or a *TruncatedError when stdout
// or stderr was cut at MaxOutputBytes (Truncated). Whoever reads the output as data (a ring's
// device table, a mount table, df, a log tail) checks it first: a part read as the whole is
// wrong data, such as a ring with too few devices.
func (r Result) Whole() error {
	if !r.Truncated {
		return nil
	}
	return &TruncatedError{Host: r.Host, Command: r.Command, Stdout: len(r.Stdout), Stderr: len(r.Stderr)}
}
