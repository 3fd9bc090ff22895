// Command stackrun is the operators' CLI of Stackrun: it starts runbooks, lists and inspects
// runs, decides gates and stalled steps, and prints reports. It only talks to Temporal; the
// worker does the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"go.temporal.io/api/serviceerror"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Version is set at build time: -ldflags "-X main.Version=v1.2.3".
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI and returns the exit code: 0, 1 for errors, 2 for usage errors, and for a
// run's outcome the codes of exitcodes.go.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "Error:", err)
	if h := refusalHint(err); h != "" {
		fmt.Fprintln(stderr, h)
	}
	if isUsage(err) {
		path := "stackrun"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", path)
		return exitUsage
	}
	return exitCode(err)
}

// usageError marks a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

func isUsage(err error) bool {
	var u *usageError
	if errors.As(err, &u) {
		return true
	}
	// cobra's own parse errors for unknown commands and flags.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// refusalHint explains Temporal's own refusal, which says only "Request unauthorized.": the
// frontend grants by the client certificate (docs/production.md, authorization).
func refusalHint(err error) string {
	var pd *serviceerror.PermissionDenied
	if !errors.As(err, &pd) {
		return ""
	}
	return "Temporal refused this client: its frontend grants by the client certificate's name (CN), and this one " +
		"(temporal.tls.cert_file / --temporal-tls-cert) has no role for this call; ask the Temporal admin to add it to the " +
		"roles file (deploy/temporal/tls-roles; docs/production.md, \"TLS and who may call\")."
}
