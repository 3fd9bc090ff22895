//go:build e2e

package e2e

// Smoke test of the OpenStack lab through gophercloud v2 and x/crypto/ssh: if this passes, the
// lab is fit for the runbooks' end-to-end tests. Run: go test -tags e2e ./e2e/ -run Lab -v

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

var labComputes = []string{"compute1", "compute2", "compute3"}

func TestLabSmoke(t *testing.T) {
	lab := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	compute := lab.Clients.Compute

	t.Run("Token", func(t *testing.T) {
		require.NotEmpty(t, lab.Clients.Provider.Token(), "no Keystone token")
	})

	t.Run("ThreeComputesUp", func(t *testing.T) {
		states := computeStates(ctx, t, compute)
		for _, h := range labComputes {
			require.Equal(t, "up", states[h].State, "%s: %+v (all: %v)", h, states[h], states)
			require.False(t, states[h].ForcedDown, "%s is forced down (a test left it so?)", h)
		}
	})

	t.Run("BootOnCompute1AndLiveMigrate", func(t *testing.T) {
		flavorID := flavorByName(ctx, t, compute, "m1.tiny")
		imageID := imageByName(ctx, t, lab.Clients.Image, "lab-tiny")
		prefix := fmt.Sprintf("lab-smoke-%d", time.Now().UnixNano())
		var ids []string
		t.Cleanup(func() { deleteServers(t, compute, ids) })
		for i := 0; i < 2; i++ {
			s, err := servers.Create(ctx, compute, servers.CreateOpts{
				Name:             fmt.Sprintf("%s-%d", prefix, i),
				FlavorRef:        flavorID,
				ImageRef:         imageID,
				Networks:         "none", // microversion >= 2.37 (the clients use 2.90)
				AvailabilityZone: "nova:compute1",
			}, nil).Extract()
			require.NoError(t, err, "boot %s-%d", prefix, i)
			ids = append(ids, s.ID)
		}
		for _, id := range ids {
			s := waitServer(ctx, t, compute, id, 2*time.Minute, func(s *servers.Server) bool {
				return s.Status == "ACTIVE"
			})
			require.Equal(t, "compute1", s.Host, "server %s booted on the wrong host", id)
		}

		moved := ids[0]
		err := servers.LiveMigrate(ctx, compute, moved, liveMigrateAuto{}).ExtractErr()
		require.NoError(t, err, "live-migrate %s", moved)
		s := waitServer(ctx, t, compute, moved, 3*time.Minute, func(s *servers.Server) bool {
			return s.Host != "compute1" && s.Status == "ACTIVE" && s.TaskState == ""
		})
		t.Logf("server %s live-migrated compute1 -> %s", moved, s.Host)
		require.Contains(t, labComputes, s.Host)
	})

	t.Run("ForceDownAndBack", func(t *testing.T) {
		const host = "compute3"
		t.Cleanup(func() {
			if out, err := lab.Exec(lab.Labfail, "force-up", host); err != nil {
				t.Errorf("cleanup: labfail force-up %s: %v\n%s", host, err, out)
			}
		})
		lab.Run(t, lab.Labfail, "force-down", host)
		st := computeStates(ctx, t, compute)[host]
		require.True(t, st.ForcedDown, "%s not forced down: %+v", host, st)
		require.Equal(t, "down", st.State)
		lab.Run(t, lab.Labfail, "force-up", host)
		waitFor(t, 60*time.Second, host+" up again", func() bool {
			st := computeStates(ctx, t, compute)[host]
			return !st.ForcedDown && st.State == "up"
		})
	})

	t.Run("SwiftPutGet", func(t *testing.T) {
		require.NotNil(t, lab.Clients.ObjectStore, "object-store: %v", lab.Clients.ServiceError("object-store"))
		store := lab.Clients.ObjectStore
		container := fmt.Sprintf("lab-smoke-%d", time.Now().UnixNano())
		data := make([]byte, 64<<10)
		_, _ = rand.Read(data)
		_, err := containers.Create(ctx, store, container, nil).Extract()
		require.NoError(t, err)
		t.Cleanup(func() {
			_, _ = objects.Delete(context.Background(), store, container, "blob", nil).Extract()
			_, _ = containers.Delete(context.Background(), store, container).Extract()
		})
		_, err = objects.Create(ctx, store, container, "blob", objects.CreateOpts{Content: bytes.NewReader(data)}).Extract()
		require.NoError(t, err)
		res := objects.Download(ctx, store, container, "blob", nil)
		got, err := res.ExtractContent()
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, got), "object read back differs (%d bytes vs %d)", len(got), len(data))
	})

	t.Run("SSHHostKeys", func(t *testing.T) {
		signer := loadSigner(t, lab.KeyFile)
		checkKnown, err := knownhosts.New(lab.KnownHosts)
		require.NoError(t, err)
		keys := map[string]ssh.PublicKey{}
		for _, h := range lab.HostNames() {
			addr := net.JoinHostPort(lab.Hosts[h], strconv.Itoa(lab.SSHPort))
			var presented ssh.PublicKey
			client, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
				User: "root",
				Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
				HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
					presented = key
					return checkKnown(hostname, remote, key)
				},
				Timeout: 10 * time.Second,
			})
			require.NoError(t, err, "ssh %s (%s)", h, addr)
			keys[h] = presented
			// the session lands on that host: labctl knows it and refuses to act on another one
			require.Equal(t, h, strings.TrimSpace(runSSH(t, client, "echo $LAB_HOST", true)))
			runSSH(t, client, lab.Labctl+" status "+h+" sshd", true)
			other := "controller"
			if h == other {
				other = "compute1"
			}
			out := runSSH(t, client, lab.Labctl+" status "+other+" sshd", false)
			require.Contains(t, out, "refusing", "labctl on %s acted on %s", h, other)
			client.Close()
		}
		// every host has its own key
		seen := map[string]string{}
		for h, k := range keys {
			fp := ssh.FingerprintSHA256(k)
			require.NotContains(t, seen, fp, "%s and %s share a host key", h, seen[fp])
			seen[fp] = h
		}

		// compute1's address presenting compute1's key is refused when known_hosts expects compute2's
		wrongKnown := filepath.Join(t.TempDir(), "known_hosts")
		line := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(lab.Hosts["compute1"], strconv.Itoa(lab.SSHPort)))}, keys["compute2"])
		require.NoError(t, os.WriteFile(wrongKnown, []byte(line+"\n"), 0o600))
		checkWrong, err := knownhosts.New(wrongKnown)
		require.NoError(t, err)
		_, err = ssh.Dial("tcp", net.JoinHostPort(lab.Hosts["compute1"], strconv.Itoa(lab.SSHPort)), &ssh.ClientConfig{
			User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: checkWrong, Timeout: 10 * time.Second,
		})
		var keyErr *knownhosts.KeyError
		require.ErrorAs(t, err, &keyErr, "a host key that is not compute1's was accepted")
		require.NotEmpty(t, keyErr.Want, "want a key mismatch, not an unknown host")

		// a user key that is not the lab's is refused by every sshd
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		stranger, err := ssh.NewSignerFromKey(priv)
		require.NoError(t, err)
		for _, h := range lab.HostNames() {
			_, err := ssh.Dial("tcp", net.JoinHostPort(lab.Hosts[h], strconv.Itoa(lab.SSHPort)), &ssh.ClientConfig{
				User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(stranger)}, HostKeyCallback: checkKnown, Timeout: 10 * time.Second,
			})
			require.Error(t, err, "%s accepted a stranger's key", h)
			require.Contains(t, err.Error(), "unable to authenticate", "%s", h)
		}
	})
}

// liveMigrateAuto asks for "block_migration": "auto" (microversion >= 2.25), which gophercloud's
// LiveMigrateOpts (a *bool) cannot express; the scheduler picks the destination.
type liveMigrateAuto struct{}

func (liveMigrateAuto) ToLiveMigrateMap() (map[string]any, error) {
	return map[string]any{"os-migrateLive": map[string]any{"host": nil, "block_migration": "auto"}}, nil
}

func computeStates(ctx context.Context, t *testing.T, compute *gophercloud.ServiceClient) map[string]services.Service {
	t.Helper()
	pages, err := services.List(compute, services.ListOpts{Binary: "nova-compute"}).AllPages(ctx)
	require.NoError(t, err)
	list, err := services.ExtractServices(pages)
	require.NoError(t, err)
	out := map[string]services.Service{}
	for _, s := range list {
		out[s.Host] = s
	}
	return out
}

func flavorByName(ctx context.Context, t *testing.T, compute *gophercloud.ServiceClient, name string) string {
	t.Helper()
	pages, err := flavors.ListDetail(compute, nil).AllPages(ctx)
	require.NoError(t, err)
	list, err := flavors.ExtractFlavors(pages)
	require.NoError(t, err)
	for _, f := range list {
		if f.Name == name {
			return f.ID
		}
	}
	t.Fatalf("no flavor %q in the lab", name)
	return ""
}

func imageByName(ctx context.Context, t *testing.T, image *gophercloud.ServiceClient, name string) string {
	t.Helper()
	require.NotNil(t, image, "no image service in the catalog")
	pages, err := images.List(image, images.ListOpts{Name: name}).AllPages(ctx)
	require.NoError(t, err)
	list, err := images.ExtractImages(pages)
	require.NoError(t, err)
	require.NotEmpty(t, list, "no image %q in the lab", name)
	return list[0].ID
}

// waitServer polls the server until done(server) or the timeout; ERROR fails at once.
func waitServer(ctx context.Context, t *testing.T, compute *gophercloud.ServiceClient, id string, timeout time.Duration, done func(*servers.Server) bool) *servers.Server {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *servers.Server
	for time.Now().Before(deadline) {
		s, err := servers.Get(ctx, compute, id).Extract()
		require.NoError(t, err, "get server %s", id)
		last = s
		if s.Status == "ERROR" {
			t.Fatalf("server %s is in ERROR on %s: %+v", id, s.Host, s.Fault)
		}
		if done(s) {
			return s
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("server %s: timed out after %s (status %s, task %q, host %s)", id, timeout, last.Status, last.TaskState, last.Host)
	return nil
}

func deleteServers(t *testing.T, compute *gophercloud.ServiceClient, ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, id := range ids {
		if err := servers.Delete(ctx, compute, id).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, 404) {
			t.Errorf("cleanup: delete server %s: %v", id, err)
		}
	}
	for _, id := range ids {
		for ctx.Err() == nil {
			_, err := servers.Get(ctx, compute, id).Extract()
			if gophercloud.ResponseCodeIs(err, 404) {
				break
			}
			time.Sleep(time.Second)
		}
	}
	if ctx.Err() != nil {
		t.Errorf("cleanup: servers %v not gone after 2 minutes", ids)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Second)
	}
}

func loadSigner(t *testing.T, keyFile string) ssh.Signer {
	t.Helper()
	pem, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	signer, err := ssh.ParsePrivateKey(pem)
	require.NoError(t, err)
	return signer
}

// runSSH runs cmd in a new session; ok says whether it must succeed or fail.
func runSSH(t *testing.T, client *ssh.Client, cmd string, ok bool) string {
	t.Helper()
	sess, err := client.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	var exitErr *ssh.ExitError
	if ok {
		require.NoError(t, err, "%s: %s", cmd, out)
	} else {
		require.True(t, errors.As(err, &exitErr), "%s: want a non-zero exit, got %v: %s", cmd, err, out)
	}
	return string(out)
}

// TestLabFailureTools checks that the lab's failure tools do what the runbooks' e2e tests rely
// on, and that each one can be undone: a failed disk gives EIO and is replaced by an empty one, a
// killed host refuses SSH and comes back, a compute forced down is down at once and back up.
func TestLabFailureTools(t *testing.T) {
	lab := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	info := func(node, dev string) map[string]string {
		out := lab.Run(t, lab.Labfail, "disk-info", node, dev)
		kv := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				kv[k] = v
			}
		}
		return kv
	}

	t.Run("DiskFailAndReplace", func(t *testing.T) {
		const node, dev = "storage3", "sdg"
		t.Cleanup(func() {
			if info(node, dev)["state"] != "mounted" {
				_, _ = lab.Exec(lab.Labfail, "disk-replace", node, dev)
			}
		})
		require.Equal(t, "mounted", info(node, dev)["state"])
		lab.Run(t, lab.Labfail, "disk-fail", node, dev)
		d := info(node, dev)
		require.Equal(t, "failed", d["state"])
		_, err := os.ReadDir(d["mountpoint"])
		require.Error(t, err, "a shut-down XFS must give I/O errors")
		lab.Run(t, lab.Labfail, "disk-replace", node, dev)
		d = info(node, dev)
		require.Equal(t, "mounted", d["state"])
		link, err := os.Readlink("/dev/" + dev)
		require.NoError(t, err)
		require.Equal(t, d["device"], link)
	})

	t.Run("HostKillAndStart", func(t *testing.T) {
		const host = "storage3"
		t.Cleanup(func() { _, _ = lab.Exec(lab.Labfail, "host-start", host) })
		lab.Run(t, lab.Labfail, "host-kill", host)
		_, err := net.DialTimeout("tcp", net.JoinHostPort(lab.Hosts[host], strconv.Itoa(lab.SSHPort)), 2*time.Second)
		require.Error(t, err, "%s's sshd still answers after host-kill", host)
		out, err := lab.Exec(lab.Labctl, "status", host, "all")
		require.Error(t, err, "services of %s still running:\n%s", host, out)
		lab.Run(t, lab.Labfail, "host-start", host)
		lab.Run(t, lab.Labctl, "status", host, "all")
		lab.Run(t, lab.Labctl, "status", host, "sshd")
	})

	t.Run("ComputeDownAndUp", func(t *testing.T) {
		const host = "compute3"
		compute := lab.Clients.Compute
		t.Cleanup(func() { _, _ = lab.Exec(lab.Labfail, "compute-up", host) })
		lab.Run(t, lab.Labfail, "compute-down", host)
		st := computeStates(ctx, t, compute)[host]
		require.True(t, st.ForcedDown)
		require.Equal(t, "down", st.State)
		_, err := lab.Exec(lab.Labctl, "status", host, "nova-compute")
		require.Error(t, err, "nova-compute still runs on %s", host)
		lab.Run(t, lab.Labfail, "compute-up", host)
		waitFor(t, 90*time.Second, host+" up again", func() bool {
			st := computeStates(ctx, t, compute)[host]
			return !st.ForcedDown && st.State == "up"
		})
	})
}
