package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// bootRunner is a host that reboots: uptime answers from its boot time, host_reboot takes it
// down for a few uptime questions (they fail like a refused connection) and gives it a new boot
// time. dropSession makes the reboot command itself fail, as a session does when the host goes down.
type bootRunner struct {
	mu          sync.Mutex
	boot        time.Time
	down        int
	reboots     int
	dropSession bool
	ran         []string
}

func (b *bootRunner) Run(_ context.Context, h remote.Host, cmd remote.Command) (remote.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ran = append(b.ran, strings.Join(cmd.Argv, " "))
	switch strings.Join(cmd.Argv, " ") {
	case "cat /proc/uptime":
		if b.down > 0 {
			b.down--
			if b.down == 0 {
				b.boot = time.Now()
			}
			return remote.Result{}, errors.New("dial tcp: connection refused")
		}
		return remote.Result{Stdout: fmt.Sprintf("%.2f 0.00\n", time.Since(b.boot).Seconds())}, nil
	case "systemctl reboot":
		b.reboots++
		b.down = 3
		if b.dropSession {
			return remote.Result{}, errors.New("wait: remote command exited without exit status or exit signal")
		}
		return remote.Result{}, nil
	}
	return remote.Result{ExitCode: 127}, nil
}

func runActivity[T any](t *testing.T, h *Hosts, fn any, arg any) (T, error) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(h)
	var out T
	v, err := env.ExecuteActivity(fn, arg)
	if err == nil {
		err = v.Get(&out)
	}
	return out, err
}

func TestRebootHostChecksTheBootTimeFirstAndWaitForBootProvesIt(t *testing.T) {
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("session-dropped=%v", drop), func(t *testing.T) {
			b := &bootRunner{boot: time.Now().Add(-48 * time.Hour), dropSession: drop}
			h := newHosts(t, b)
			asked := time.Now()
			res, err := runActivity[RebootResult](t, h, h.RebootHost, RebootRequest{Host: "compute1", After: asked})
			require.NoError(t, err)
			assert.True(t, res.Issued)
			assert.False(t, res.Already)
			assert.Equal(t, 1, b.reboots)
			if drop {
				assert.Contains(t, res.Detail, "the session ended as the host went down")
			}

			boot, err := runActivity[time.Time](t, h, h.WaitForBoot, BootWait{Host: "compute1", After: asked, Timeout: 5 * time.Second, Interval: 10 * time.Millisecond})
			require.NoError(t, err)
			assert.False(t, boot.Before(asked.Truncate(time.Second)), "boot %s after %s", boot, asked)

			// A retried or replayed reboot finds the new boot time: no second reboot.
			res, err = runActivity[RebootResult](t, h, h.RebootHost, RebootRequest{Host: "compute1", After: asked})
			require.NoError(t, err)
			assert.True(t, res.Already)
			assert.Equal(t, 1, b.reboots, "rebooted once")
		})
	}
}

func TestRebootHostThatStillAnswersAfterAFailedCommandIsAnError(t *testing.T) {
	b := &bootRunner{boot: time.Now().Add(-time.Hour)}
	h := newHosts(t, b)
	h.Catalogue = mustCatalogue(t, map[string][]string{"host_reboot": {"false"}})
	_, err := runActivity[RebootResult](t, h, h.RebootHost, RebootRequest{Host: "compute1", After: time.Now()})
	require.ErrorContains(t, err, "host_reboot on compute1: exit 127")
}

func TestWaitForBootTimesOutOnAHostThatDidNotReboot(t *testing.T) {
	b := &bootRunner{boot: time.Now().Add(-time.Hour)}
	h := newHosts(t, b)
	_, err := runActivity[time.Time](t, h, h.WaitForBoot, BootWait{Host: "compute1", After: time.Now(), Timeout: 50 * time.Millisecond, Interval: 10 * time.Millisecond})
	require.ErrorContains(t, err, "compute1 did not come back within 50ms after the reboot: answers, boot time")
}

func TestHostsWithRole(t *testing.T) {
	h := newHosts(t, &fakeRunner{running: map[string]bool{}})
	h.Inventory["compute0"] = InventoryHost{Roles: []string{"compute"}, Labels: map[string]string{"rack": "r0"}}
	h.Inventory["controller"] = InventoryHost{Roles: []string{"controller"}}
	got, err := h.HostsWithRole(context.Background(), "compute")
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "compute0", got[0].Name)
	assert.Equal(t, "r0", got[0].Labels["rack"])
	assert.Equal(t, "compute1", got[1].Name)
	assert.Equal(t, "nova-compute", got[1].Services[0].Name)
}

func mustCatalogue(t *testing.T, over map[string][]string) *remote.Catalogue {
	cat, err := remote.NewCatalogue(nil, over, nil)
	require.NoError(t, err)
	return cat
}
