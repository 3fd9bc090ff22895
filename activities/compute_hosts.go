package activities

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
)

// ConfigManagementRequest asks for the configuration-management hold (or its release) of one
// service on one host: the catalogue commands of policy.config_hold (or config_release), in order.
type ConfigManagementRequest struct {
	ServiceRequest
	Action   string   `json:"action"` // hold | release
	Commands []string `json:"commands"`
}

// ConfigManagementResult lists the command lines that ran, for the report.
type ConfigManagementResult struct {
	Ran []string `json:"ran"`
}

// ConfigManagement runs the hold or release commands on the host. Each command must be idempotent
// (systemctl mask/unmask, puppet agent --disable/--enable are): a retried attempt runs them again
// and changes nothing more. A command that exits non-zero fails the attempt (retried, then the
// step stalls), naming the command and its output.
func (h *Hosts) ConfigManagement(ctx context.Context, req ConfigManagementRequest) (ConfigManagementResult, error) {
	var out ConfigManagementResult
	if req.Action != "hold" && req.Action != "release" {
		return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("config management action %q: must be hold or release", req.Action), ErrTypeInvalidInput, nil)
	}
	for _, name := range req.Commands {
		args := map[string]string{"service": req.Service}
		if t, ok := h.Catalogue.Template(name, req.Role); ok {
			out.Ran = append(out.Ran, strings.ReplaceAll(strings.ReplaceAll(strings.Join(t, " "), "{service}", req.Service), "{host}", req.Host))
		}
		res, err := h.run(ctx, req.Host, req.Role, name, args)
		if err != nil {
			return out, err
		}
		if !res.OK() {
			return out, fmt.Errorf("%s (policy.config_%s) on %s: exit %d: %s", name, req.Action, req.Host, res.ExitCode, strings.TrimSpace(res.Stderr+" "+res.Stdout))
		}
	}
	return out, nil
}

// hostnameRE: an RFC 1123 host name (a ping target never starts with '-').
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)

// Pinger sends ICMP echo requests to an address and says whether it answered (PingAddress).
type Pinger func(ctx context.Context, address string) (bool, string, error)

// PingAddress pings the host's management address from the worker: the inventory label
// management_address when set (a BMC or a second network), else the address SSH uses. An
// answer is a result, not an error: fencing decisions need it.
func (h *Hosts) PingAddress(ctx context.Context, host string) (Reachability, error) {
	inv, _, err := h.lookup(host)
	if err != nil {
		return Reachability{}, err
	}
	addr := inv.Address
	if a := inv.Labels["management_address"]; a != "" {
		addr = a
	}
	if net.ParseIP(addr) == nil && !hostnameRE.MatchString(addr) {
		return Reachability{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("management address %q of %s is neither an IP address nor a host name", addr, host), ErrTypeInvalidInput, nil)
	}
	ping := h.Ping
	if ping == nil {
		ping = icmpPing
	}
	ok, detail, err := ping(ctx, addr)
	if err != nil {
		return Reachability{}, err
	}
	return Reachability{Host: host, Reachable: ok, Detail: fmt.Sprintf("ping %s: %s", addr, detail)}, nil
}

// icmpPing runs the system's ping (two echo requests, two seconds each). Exit 1 is "no answer";
// any other failure (no ping binary, exit 2) is an error.
func icmpPing(ctx context.Context, addr string) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ping", "-n", "-q", "-c", "2", "-W", "2", "--", addr).CombinedOutput()
	text := lastLine(string(out))
	if err == nil {
		return true, "answered (" + text + ")", nil
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return false, "no answer (" + text + ")", nil
	}
	return false, "", fmt.Errorf("ping %s: %v: %s", addr, err, text)
}
