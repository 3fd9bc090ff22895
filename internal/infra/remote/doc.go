// Package remote runs catalogued commands and copies files on OpenStack hosts
// over SSH (golang.org/x/crypto/ssh and github.com/pkg/sftp).
//
// Safety rules, enforced here rather than left to callers:
//
//   - Host keys are always verified against a known_hosts file (the target's
//     and the jump host's). Unknown, changed or revoked keys are refused with
//     a *HostKeyError naming the host, the address and the offered key's
//     fingerprint. There is no way to skip the check.
//   - Commands are argument lists built from a Catalogue of named templates
//     (defaults, overridden by config `commands` and `role_commands`). Every
//     placeholder value is validated by its kind (ValidateArg) in
//     Catalogue.Build, before any connection. Over SSH the argv is sent with
//     every element single-quoted (ShellJoin), so the remote shell only splits
//     it back into words.
//   - A non-zero exit status is a Result, not an error. Errors are classified
//     (ErrHostKeyUnknown, ErrHostKeyMismatch, ErrAuth, ErrInvalidArgument,
//     ErrTimeout, ErrConnect, ErrClosed); ErrorType and Retryable map them to
//     Temporal application errors.
//
// A Pool keeps one connection per host (user@address), bounded sessions per
// connection, and replaces dead connections (keepalive probe when idle, one
// retry when a session cannot be opened). A command that times out is
// signalled and its session closed; because sshd does not deliver signals to
// root sessions, the process may run on, so its connection is retired (closed
// once its other sessions end) and later commands use a fresh one.
//
// Typical use in an activity:
//
//	cat, err := remote.NewCatalogue(nil, cfg.Commands, cfg.RoleCommands)
//	pool, err := remote.NewPool(remote.Options{User: "root", KeyFile: key, KnownHostsFile: kh})
//	defer pool.Close()
//	cmd, err := cat.Build("service_stop", "compute", map[string]string{"service": "nova-compute", "host": "compute1"})
//	if err != nil { /* ErrInvalidArgument: non-retryable */ }
//	res, err := pool.Run(ctx, remote.Host{Name: "compute1", Address: "10.0.0.11"}, cmd)
//	if err != nil {
//		if !remote.Retryable(err) {
//			return temporal.NewNonRetryableApplicationError(err.Error(), remote.ErrorType(err), err)
//		}
//		return temporal.NewApplicationError(err.Error(), remote.ErrorType(err), err)
//	}
//	if res.ExitCode != 0 { /* the command failed: decide per step */ }
//
// Tests run against a real OpenSSH server started by
// internal/testenv/sshd.
package remote
