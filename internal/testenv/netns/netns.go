// Package netns builds, for tests, a real duplicate IPv4 address: a Linux bridge and three
// network namespaces joined to it by veth pairs; two of them ("holders") hold the same private
// address, the third ("probe") holds another address of the same /24 and is where a diagnosis
// looks from. The addresses exist only inside the namespaces (the bridge has none, the host's
// own namespace gets no address and no route), and everything is removed on t.Cleanup, also
// when the test fails. Needs root and iproute2; the probe needs arping (iputils-arping).
//
//	d := netns.Duplicate(t)
//	// d.Address answers ARP from d.MACs[0] and d.MACs[1]; look from d.Probe.
package netns

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Dup is a duplicate address set up in namespaces.
type Dup struct {
	Prefix  string    // name prefix of every namespace and link (unique per call)
	Bridge  string    // the bridge in the host's namespace (no address)
	Holders [2]string // the namespaces that both hold Address
	MACs    [2]string // their interfaces' MACs (lower case), in Holders' order
	Probe   string    // the namespace to look from
	ProbeIf string    // its interface
	Address string    // the duplicated address, e.g. 10.213.77.7
	ProbeIP string    // the probe's own address
}

// Duplicate creates the bridge, the namespaces and the addresses, and registers their removal.
func Duplicate(t testing.TB) *Dup {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("netns: needs root (ip netns, veth, bridge)")
	}
	for _, tool := range []string{"ip", "arping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("netns: %s is not installed: run `make deps` (iproute2, iputils-arping)", tool)
		}
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	// Interface names have at most 15 bytes: "srd" + 4 hex + role + "x".
	p := fmt.Sprintf("srd%02x%02x", b[0], b[1])
	net := fmt.Sprintf("10.213.%d", int(b[0])%250+1)
	d := &Dup{Prefix: p, Bridge: p + "br", Holders: [2]string{p + "a", p + "b"}, Probe: p + "p", ProbeIf: p + "p",
		Address: net + ".7", ProbeIP: net + ".1"}
	t.Cleanup(func() { d.remove(t) })

	run(t, "ip", "link", "add", d.Bridge, "type", "bridge")
	run(t, "ip", "link", "set", d.Bridge, "up")
	for _, ns := range []string{d.Holders[0], d.Holders[1], d.Probe} {
		run(t, "ip", "netns", "add", ns)
		// veth: <ns> goes into the namespace, <ns>x stays on the bridge.
		run(t, "ip", "link", "add", ns, "type", "veth", "peer", "name", ns+"x")
		run(t, "ip", "link", "set", ns+"x", "master", d.Bridge, "up")
		run(t, "ip", "link", "set", ns, "netns", ns)
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", ns, "link", "set", ns, "up")
	}
	for i, ns := range d.Holders {
		run(t, "ip", "-n", ns, "addr", "add", d.Address+"/24", "dev", ns)
		var links []struct {
			Address string `json:"address"`
		}
		out := run(t, "ip", "-n", ns, "-j", "link", "show", ns)
		if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
			t.Fatalf("netns: link of %s: %v in %q", ns, err, out)
		}
		d.MACs[i] = strings.ToLower(links[0].Address)
	}
	run(t, "ip", "-n", d.Probe, "addr", "add", d.ProbeIP+"/24", "dev", d.ProbeIf)
	// The bridge forwards once its ports leave the learning states (no STP: at once); wait
	// until the probe sees one holder answer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("ip", "netns", "exec", d.Probe, "arping", "-c", "1", "-w", "1", "-I", d.ProbeIf, d.Address).CombinedOutput()
		if strings.Contains(string(out), "reply from") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("netns: %s never answered ARP in %s: %s", d.Address, d.Probe, out)
		}
	}
	return d
}

// remove deletes the links and namespaces and checks that none is left.
func (d *Dup) remove(t testing.TB) {
	for _, ns := range []string{d.Holders[0], d.Holders[1], d.Probe} {
		_ = exec.Command("ip", "link", "del", ns+"x").Run() // deletes both ends of the pair
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	_ = exec.Command("ip", "link", "del", d.Bridge).Run()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := d.Leftovers()
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("netns: not removed: %s", left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Leftovers lists the namespaces and links of d that still exist ("" when none).
func (d *Dup) Leftovers() string {
	var left []string
	nss, _ := exec.Command("ip", "netns", "list").Output()
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(nss), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], d.Prefix) {
			left = append(left, "netns "+f[0])
		}
	}
	for _, line := range strings.Split(string(links), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], d.Prefix) {
			left = append(left, "link "+strings.TrimSuffix(f[1], ":"))
		}
	}
	return strings.Join(left, ", ")
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("netns: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
