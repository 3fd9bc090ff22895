package activities

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// exitRunner answers every command with exit code rc and records what ran.
type exitRunner struct {
	ran []string
	rc  int
}

func (e *exitRunner) Run(_ context.Context, h remote.Host, cmd remote.Command) (remote.Result, error) {
	e.ran = append(e.ran, cmd.String())
	return remote.Result{ExitCode: e.rc, Stderr: "Unit nova-compute.service not found."}, nil
}

func TestConfigManagementRunsTheCataloguedCommandsInOrder(t *testing.T) {
	r := &exitRunner{}
	h := newHosts(t, r)
	req := ConfigManagementRequest{ServiceRequest: ServiceRequest{Host: "compute1", Role: "compute", Service: "nova-compute"},
		Action: "hold", Commands: []string{"systemd_mask", "puppet_disable"}}
	res, err := h.ConfigManagement(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, []string{"'systemctl' 'mask' 'nova-compute'", "'puppet' 'agent' '--disable' 'stackrun maintenance (evacuate)'"}, r.ran)
	assert.Equal(t, []string{"systemctl mask nova-compute", "puppet agent --disable stackrun maintenance (evacuate)"}, res.Ran)

	r2 := &exitRunner{rc: 1}
	_, err = newHosts(t, r2).ConfigManagement(context.Background(), req)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "systemd_mask (policy.config_hold) on compute1: exit 1")
	assert.Len(t, r2.ran, 1, "the first failure stops the hold")

	req.Commands = []string{"no_such_command"}
	_, err = newHosts(t, &exitRunner{}).ConfigManagement(context.Background(), req)
	assert.ErrorContains(t, err, "unknown command")
	req.Action = "maybe"
	_, err = newHosts(t, &exitRunner{}).ConfigManagement(context.Background(), req)
	assert.ErrorContains(t, err, "must be hold or release")
}

func TestPingAddressUsesTheManagementAddress(t *testing.T) {
	h := newHosts(t, &exitRunner{})
	var pinged []string
	h.Ping = func(_ context.Context, addr string) (bool, string, error) {
		pinged = append(pinged, addr)
		return addr == "10.9.0.11", "answered", nil
	}
	r, err := h.PingAddress(context.Background(), "compute1")
	require.NoError(t, err)
	assert.False(t, r.Reachable)
	inv := h.Inventory["compute1"]
	inv.Labels = map[string]string{"management_address": "10.9.0.11"}
	h.Inventory["compute1"] = inv
	r, err = h.PingAddress(context.Background(), "compute1")
	require.NoError(t, err)
	assert.True(t, r.Reachable)
	assert.Equal(t, []string{"10.0.0.11", "10.9.0.11"}, pinged)
	inv.Labels["management_address"] = "-f"
	_, err = h.PingAddress(context.Background(), "compute1")
	assert.ErrorContains(t, err, "neither an IP address nor a host name")
}

// The system's ping, for real: the loopback answers.
func TestICMPPingLoopback(t *testing.T) {
	ok, detail, err := icmpPing(context.Background(), "127.0.0.1")
	require.NoError(t, err)
	assert.True(t, ok, detail)
}
