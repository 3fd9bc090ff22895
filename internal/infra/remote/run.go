package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Result is the outcome of a command that ran. A non-zero exit is a Result, not
// an error.
type Result struct {
	Host      string        // inventory name (or address)
	Command   []string      // argv as sent
	ExitCode  int           // exit status; 128+n when killed by signal n
	Signal    string        // signal name (e.g. "KILL") if the command was killed
	Stdout    string        // at most MaxOutputBytes
	Stderr    string        // at most MaxOutputBytes
	Truncated bool          // stdout or stderr was cut at MaxOutputBytes
	Duration  time.Duration // from the call to the end (including connecting)
}

// OK reports a zero exit status.
func (r Result) OK() bool { return r.ExitCode == 0 && r.Signal == "" }

// Run runs cmd on h over the pooled connection (connecting if needed) and
// waits for it, for at most CommandTimeout and the life of ctx. Errors: ErrTimeout
// (the session was killed and closed; the partial Result is returned with it),
// ErrConnect, ErrHostKeyUnknown, ErrHostKeyMismatch, ErrAuth,
// ErrInvalidArgument (empty argv or a NUL byte; raised before connecting),
// ErrClosed. A session that cannot be opened on a pooled connection is retried
// once on a new connection.
func (p *Pool) Run(ctx context.Context, h Host, cmd Command) (res Result, err error) {
	start := time.Now()
	res = Result{Host: h.label(), Command: slices.Clone(cmd.Argv)}
	if err := checkCommand(cmd); err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.CommandTimeout)
	defer cancel()
	defer func() { res.Duration = time.Since(start) }()

	c, err := p.entry(h, p.opts.User, false)
	if err != nil {
		return res, err
	}
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return res, p.timeoutErr(ctx, h, cmd, start)
	}

	for attempt := 0; ; attempt++ {
		l, err := p.client(ctx, c)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, ErrHostKeyUnknown) && !errors.Is(err, ErrHostKeyMismatch) && !errors.Is(err, ErrAuth) {
				return res, fmt.Errorf("%w (while connecting: %v)", p.timeoutErr(ctx, h, cmd, start), err)
			}
			return res, err
		}
		sess, err := l.NewSession()
		if err != nil {
			l.release()
			var oce *ssh.OpenChannelError
			if errors.As(err, &oce) || attempt > 0 {
				// The server refused a session on a live connection (e.g.
				// MaxSessions), or a fresh connection failed too.
				return res, fmt.Errorf("remote: %s on %s: open session: %w: %v", cmd.Name, h.label(), ErrConnect, err)
			}
			p.discard(c, l) // dead connection: reconnect once
			continue
		}
		err = p.exec(ctx, sess, cmd, &res, l.release)
		switch {
		case errors.Is(err, errRemoteDeadline):
			// The host killed it: nothing lives on, the connection is fine.
			return res, fmt.Errorf("remote: %s on %s: %w after %s: %w (command timeout %s): %w",
				cmd.Name, h.label(), ErrTimeout, time.Since(start).Round(time.Millisecond), err, p.opts.CommandTimeout, context.DeadlineExceeded)
		case errors.Is(err, ErrBusy):
			return res, busyErr(cmd, h, cmd.Lock)
		case errors.Is(err, ErrTimeout):
			// The session may live on at the server (sshd refuses signals
			// to root sessions): take no new work on this connection.
			p.retire(c, l)
			return res, p.timeoutErr(ctx, h, cmd, start)
		case errors.Is(err, ErrConnect):
			p.discard(c, l)
		}
		if err != nil {
			return res, fmt.Errorf("remote: %s on %s: %w", cmd.Name, h.label(), err)
		}
		return res, nil
	}
}

func (p *Pool) timeoutErr(ctx context.Context, h Host, cmd Command, start time.Time) error {
	return fmt.Errorf("remote: %s on %s: %w after %s (command timeout %s): %w",
		cmd.Name, h.label(), ErrTimeout, time.Since(start).Round(time.Millisecond), p.opts.CommandTimeout, context.Cause(ctx))
}

func checkCommand(cmd Command) error {
	if len(cmd.Argv) == 0 {
		return &ArgError{Command: cmd.Name, Reason: "empty command"}
	}
	for i, a := range cmd.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return &ArgError{Command: cmd.Name, Arg: fmt.Sprintf("argv[%d]", i), Value: displayValue(a), Reason: "contains a NUL byte"}
		}
	}
	return nil
}

// exec runs cmd in sess and fills res; release is called once the session is
// over (for a timed-out session that may be after exec returns). It returns
// nil for any exit status, a bare ErrTimeout when ctx ended (the session is
// signalled and closed), and an ErrConnect-wrapped error when the session
// broke.
func (p *Pool) exec(ctx context.Context, sess *ssh.Session, cmd Command, res *Result, release func()) error {
	stdout := &capped{max: p.opts.MaxOutputBytes}
	stderr := &capped{max: p.opts.MaxOutputBytes}
	sess.Stdout, sess.Stderr = stdout, stderr
	collect := func() {
		res.Stdout, res.Stderr = stdout.String(), stderr.String()
		res.Truncated = stdout.Truncated() || stderr.Truncated()
	}
	defer collect()
	d := p.opts.CommandTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	d = remoteDeadline(d)
	started := time.Now()
	if err := sess.Start(ShellJoin(p.wire(cmd, d))); err != nil {
		sess.Close()
		release()
		return fmt.Errorf("start: %w: %v", ErrConnect, err)
	}
	done := make(chan error, 1)
	go func() {
		err := sess.Wait()
		release()
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL) // honoured by sshd except for root logins
		_ = sess.Close()
		select { // a short grace for the exit status; never block on a hung host
		case <-done:
		case <-time.After(100 * time.Millisecond):
		}
		return ErrTimeout
	}
	sess.Close()
	var ee *ssh.ExitError
	switch {
	case err == nil:
		res.ExitCode = 0
	case errors.As(err, &ee):
		res.ExitCode, res.Signal = ee.ExitStatus(), ee.Signal()
	default: // includes *ssh.ExitMissingError: the channel went away
		return fmt.Errorf("%w: %v", ErrConnect, err)
	}
	collect()
	if !p.opts.NoRemoteDeadline && killedAtDeadline(res, time.Since(started), d) {
		return fmt.Errorf("%w of %s", errRemoteDeadline, d.Round(time.Millisecond))
	}
	if busy(cmd, res) {
		return ErrBusy
	}
	return nil
}

// capped keeps the first max bytes written and discards the rest (so that the
// remote command is never blocked by a full pipe).
type capped struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (w *capped) Write(b []byte) (int, error) {
	n := len(b) // report everything as written, keep what fits
	w.mu.Lock()
	defer w.mu.Unlock()
	room := w.max - w.buf.Len()
	if len(b) > room {
		w.truncated = true
		b = b[:max(room, 0)]
	}
	w.buf.Write(b)
	return n, nil
}

func (w *capped) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *capped) Truncated() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.truncated
}
