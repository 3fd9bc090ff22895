package remote

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strconv"
	"time"
)

// A command that times out must not live on at the host: sshd does not deliver signals to root
// sessions, and a worker that dies closes its connection without any signal, so the process
// would run on while the activity retries (two mkfs on one device, two swift-ring-builder runs on
// one builder). Therefore every command runs under a deadline enforced on the host:
//
//	timeout -s KILL <seconds> <argv...>
//
// GNU timeout kills the command's whole process group at the deadline, and otherwise passes the
// command's exit status (or the signal that killed it) through unchanged, so exit codes keep their
// meaning. The host's deadline is a little shorter than ours, so that its kill is what ends the
// command and we still read the exit status; a kill at the deadline is reported as ErrTimeout.
//
// Mutating commands also take a lock on the host for the resource they change (Command.Lock: the
// device, builder, path or service), without waiting:
//
//	flock -n -o -E 75 /run/lock/stackrun-<hash>.lock timeout -s KILL <seconds> <argv...>
//
// A predecessor that still runs (a retry after a lost connection, another worker) holds the lock;
// the new command does not start and Run returns ErrBusy (retryable: the predecessor ends by its
// own deadline at the latest). -o keeps the lock's descriptor from the command: flock itself
// holds the lock until the command exits, and a daemon the command leaves behind
// (qemu-storage-daemon --daemonize for inspect-disk) does not hold it for its whole life.

// DefaultLockDir is where the locks of mutating commands live on the hosts.
const DefaultLockDir = "/run/lock"

// busyExit is flock's exit status when the lock is held (-E); flock prints nothing then.
const busyExit = 75

// ErrBusy: a previous mutating command on the same resource still runs on the host (its lock is
// held). Nothing was started. Retryable.
var ErrBusy = errors.New("a previous command on the same resource still runs on the host")

// errRemoteDeadline is exec's report of a command killed by its deadline on the host.
var errRemoteDeadline = errors.New("killed on the host at its deadline")

// TypeBusy is ErrBusy's stable type name.
const TypeBusy = "RemoteBusy"

// remoteDeadline is the deadline the host enforces for a command that may run for remaining:
// shorter by a margin (a fifth, between 500 ms and 5 s) for the session to start on the host and
// the exit status to come back. Should the host be slower still, our own timeout fires first and
// the host's deadline ends the command moments later.
func remoteDeadline(remaining time.Duration) time.Duration {
	margin := min(max(remaining/5, 500*time.Millisecond), 5*time.Second)
	return max(remaining-margin, 100*time.Millisecond)
}

// lockFile is the host's lock file of a resource.
func (p *Pool) lockFile(lock string) string {
	sum := sha256.Sum256([]byte(lock))
	dir := p.opts.LockDir
	if dir == "" {
		dir = DefaultLockDir
	}
	return path.Join(dir, "stackrun-"+hex.EncodeToString(sum[:10])+".lock")
}

// wire is the argv sent to the host: the command under its host deadline d (none when
// Options.NoRemoteDeadline) and, for a command with a Lock, under its lock.
func (p *Pool) wire(cmd Command, d time.Duration) []string {
	var argv []string
	if cmd.Lock != "" {
		argv = append(argv, "flock", "-n", "-o", "-E", strconv.Itoa(busyExit), p.lockFile(cmd.Lock))
	}
	if !p.opts.NoRemoteDeadline {
		argv = append(argv, "timeout", "-s", "KILL", strconv.FormatFloat(d.Seconds(), 'f', 3, 64))
	}
	return append(argv, cmd.Argv...)
}

// killedAtDeadline reports a result that the host's deadline ended: killed by SIGKILL (timeout
// kills its own process group, itself included) no earlier than the deadline.
func killedAtDeadline(res *Result, elapsed, d time.Duration) bool {
	killed := res.Signal == "KILL" || res.ExitCode == 128+9
	return killed && elapsed >= d-20*time.Millisecond
}

// busy reports flock's refusal: its exit status and nothing printed.
func busy(cmd Command, res *Result) bool {
	return cmd.Lock != "" && res.ExitCode == busyExit && res.Signal == "" && res.Stdout == "" && res.Stderr == ""
}

// lockPlaceholders name the resource a mutating command changes, in order of preference: the
// first one its arguments have is its lock (with the command's name when none).
var lockPlaceholders = []string{"builder", "device_path", "device", "database", "path", "dest", "service", "image"}

// lockKey is the lock of a mutating command built from args, with the host it is for when args
// name one: on separate machines that changes nothing (each has its own lock directory), but
// hosts that share one (the lab's, on one kernel) no longer refuse each other's commands on a
// resource of the same name (rsync started on storage1 and storage2 at once).
func lockKey(name string, args map[string]string) string {
	key := "command=" + name
	for _, ph := range lockPlaceholders {
		if v, ok := args[ph]; ok && v != "" {
			key = ph + "=" + v
			break
		}
	}
	if h := args["host"]; h != "" {
		key += " host=" + h
	}
	return key
}

func busyErr(cmd Command, h Host, lock string) error {
	return fmt.Errorf("remote: %s on %s: %w (lock %s held): not started", cmd.Name, h.label(), ErrBusy, lock)
}
