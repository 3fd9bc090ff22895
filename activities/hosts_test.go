package activities

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// fakeRunner answers catalogue commands from a table and records what ran (unit tests only; the
// real SSH path is tested against sshd in internal/infra/remote and worker/).
type fakeRunner struct {
	ran     []string
	running map[string]bool
	err     error
}

func (f *fakeRunner) Run(_ context.Context, h remote.Host, cmd remote.Command) (remote.Result, error) {
	line := h.Name + ": " + strings.Join(cmd.Argv, " ")
	f.ran = append(f.ran, line)
	if f.err != nil {
		return remote.Result{}, f.err
	}
	svc := cmd.Argv[len(cmd.Argv)-1]
	switch cmd.Argv[1] {
	case "is-active":
		if f.running[svc] {
			return remote.Result{Stdout: "active"}, nil
		}
		return remote.Result{ExitCode: 3, Stdout: "inactive"}, nil
	case "start":
		f.running[svc] = true
	case "stop":
		f.running[svc] = false
	}
	return remote.Result{}, nil
}

func newHosts(t *testing.T, r Runner) *Hosts {
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	return &Hosts{
		Inventory: map[string]InventoryHost{"compute1": {Address: "10.0.0.11", Roles: []string{"compute"}}},
		Services:  map[string][]ServiceFacts{"compute": {{Name: "nova-compute", Log: "/var/log/nova/nova-compute.log", AMQP: true}}},
		Runner:    r, Catalogue: cat,
	}
}

func TestSetServiceChecksBeforeActing(t *testing.T) {
	f := &fakeRunner{running: map[string]bool{"nova-compute": true}}
	h := newHosts(t, f)
	req := ServiceAction{ServiceRequest: ServiceRequest{Host: "compute1", Role: "compute", Service: "nova-compute"}, Action: "start"}
	require.NoError(t, h.SetService(context.Background(), req))
	require.Equal(t, []string{"compute1: systemctl is-active nova-compute"}, f.ran, "already running: no start")

	f.ran = nil
	req.Action = "stop"
	require.NoError(t, h.SetService(context.Background(), req))
	require.Equal(t, []string{"compute1: systemctl is-active nova-compute", "compute1: systemctl stop nova-compute", "compute1: systemctl is-active nova-compute"}, f.ran)

	f.ran = nil
	require.NoError(t, h.SetService(context.Background(), req), "a replayed stop")
	require.Len(t, f.ran, 1, "stopped already: only the check ran")
}

func TestHostErrorsAreTyped(t *testing.T) {
	h := newHosts(t, &fakeRunner{running: map[string]bool{}})
	_, err := h.DescribeHost(context.Background(), "compute9")
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	require.Equal(t, ErrTypeNotFound, app.Type())
	require.True(t, app.NonRetryable())
	require.Contains(t, err.Error(), "known: compute1")

	_, err = h.ServiceStatus(context.Background(), ServiceRequest{Host: "compute1", Role: "compute", Service: "nova;reboot"})
	require.ErrorAs(t, err, &app)
	require.Equal(t, ErrTypeInvalidInput, app.Type())

	f := &fakeRunner{err: errors.Join(remote.ErrHostKeyMismatch, errors.New("offered ssh-ed25519 SHA256:x"))}
	_, err = newHosts(t, f).ServiceStatus(context.Background(), ServiceRequest{Host: "compute1", Role: "compute", Service: "nova-compute"})
	require.ErrorAs(t, err, &app)
	require.Equal(t, ErrTypeHostKey, app.Type())
	require.True(t, app.NonRetryable())

	f = &fakeRunner{err: remote.ErrConnect}
	_, err = newHosts(t, f).ServiceStatus(context.Background(), ServiceRequest{Host: "compute1", Role: "compute", Service: "nova-compute"})
	require.ErrorAs(t, err, &app)
	require.False(t, app.NonRetryable(), "connection trouble is retried")
}

func TestFindAMQPConnection(t *testing.T) {
	log := `2026-11-22 09:59:59.100 42 INFO oslo.messaging._drivers.impl_rabbit [-] [abc] Reconnected to AMQP server on 127.0.0.1:5672 via [amqp] client with port 1.
2026-11-22 10:00:01.500 42 DEBUG oslo.messaging._drivers.impl_rabbit [-] [abc] Connected to AMQP server on 127.0.0.1:5672 via [amqp] client with port 2.
2026-11-22 10:00:02.000 42 INFO nova.compute.manager [-] Looking for unclaimed instances
garbage line about AMQP server without a time
`
	since := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	res := FindAMQPConnection(log, since)
	require.True(t, res.Connected)
	require.Equal(t, time.Date(2026, 11, 22, 10, 0, 1, 500_000_000, time.UTC), res.At)
	require.False(t, FindAMQPConnection(log, since.Add(time.Minute)).Connected, "lines before since do not count")
}

func TestFindAMQPSocket(t *testing.T) {
	ss := `0      0       127.0.0.10:5672    127.0.0.1:60908 users:(("beam.smp",pid=26189,fd=109))
0      0       127.0.0.1:54668 127.0.0.10:9696  users:(("python3",pid=3263,fd=17))
0      0       127.0.0.1:41822 127.0.0.10:5672  users:(("python3",pid=3263,fd=18))
0      0       [::1]:41000 [::1]:5671  users:(("nova-api",pid=77,fd=3),("nova-api",pid=78,fd=3))
`
	now := time.Now()
	res := FindAMQPSocket(ss, "3263", now)
	require.True(t, res.Connected)
	require.Contains(t, res.Line, "127.0.0.1:41822 -> 127.0.0.10:5672")
	require.True(t, FindAMQPSocket(ss, "78", now).Connected, "TLS port, second process of the socket")
	require.False(t, FindAMQPSocket(ss, "26189", now).Connected, "the broker's own listening side is not a client connection")
	require.False(t, FindAMQPSocket(ss, "3", now).Connected)
	child := FindAMQPSocket(ss, "3000", now, "3100", "3263")
	require.True(t, child.Connected, "a worker child's connection (cinder-volume's sockets are its child's)")
	require.Contains(t, child.Line, "pid 3000 (its child 3263)")
}
