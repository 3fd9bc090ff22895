package diagnose

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The rules that turn each kind of fact into evidence (see the weights in analyze.go).

func (a *analysis) resource() {
	r := a.f.Resource
	if r == nil {
		return
	}
	name := r.Kind + " " + label(r.Name, r.ID)
	switch {
	case r.Kind == "instance" && r.Status == "ERROR":
		comp, node := "nova-conductor", ""
		switch {
		case strings.Contains(strings.ToLower(r.Fault), "no valid host"):
			comp = "nova-scheduler"
		case r.Host != "":
			comp, node = "nova-compute", r.Host
		}
		fault := r.Fault
		if fault == "" {
			fault = "no fault recorded"
		}
		a.add(Evidence{Component: comp, Node: node, Weight: wFault, Source: r.Source,
			Message: fmt.Sprintf("%s is ERROR (task %s, host %s): fault %q (code %d) at %s", name, dash(r.TaskState), dash(r.Host), fault, r.FaultCode, stamp(r.FaultAt))})
	case r.Kind == "instance" && a.f.Symptom == InstanceUnreachable && r.Status != "ACTIVE":
		a.add(Evidence{Component: "instance", Node: r.Host, Weight: wNotRunning, Source: r.Source,
			Message: fmt.Sprintf("%s is %s (vm state %s, task %s): a guest that does not run answers nothing", name, r.Status, dash(r.VMState), dash(r.TaskState))})
	case r.Kind == "instance" && r.Status == "BUILD":
		a.add(Evidence{Component: "nova-conductor", Weight: wLogTimeout, Source: r.Source,
			Message: fmt.Sprintf("%s is still BUILD (task %s) since %s", name, dash(r.TaskState), stamp(r.Created))})
	case r.Kind == "volume" && r.Status != "available" && r.Status != "in-use":
		a.add(Evidence{Component: "cinder-volume", Node: r.Host, Weight: wFault, Source: r.Source,
			Message: fmt.Sprintf("%s is %s (host %s) since %s", name, r.Status, dash(r.Host), stamp(r.Updated))})
	default:
		a.note(Evidence{Component: r.Kind, Node: r.Host, Weight: wContext, Source: r.Source,
			Message: fmt.Sprintf("%s is %s (vm state %s, task %s, host %s)", name, r.Status, dash(r.VMState), dash(r.TaskState), dash(r.Host))})
	}
	if r.TaskState != "" && r.Status != "BUILD" && r.Status != "ERROR" {
		a.add(Evidence{Component: "instance", Node: r.Host, Weight: wLogTimeout, Source: r.Source,
			Message: fmt.Sprintf("%s has task state %s: an operation is under way or stuck", name, r.TaskState)})
	}
}

func (a *analysis) processes() {
	for _, p := range a.f.Processes {
		if p.Running {
			if a.core(p.Service) {
				a.note(Evidence{Component: p.Service, Node: p.Host, Weight: wContext, Source: p.Source, Message: fmt.Sprintf("%s runs on %s", p.Service, p.Host)})
			}
			continue
		}
		w := wOtherDown
		if a.core(p.Service) {
			w = wCoreDown
		}
		a.add(Evidence{Component: p.Service, Node: p.Host, Weight: w, Source: p.Source,
			Message: fmt.Sprintf("%s is not running on %s: %s", p.Service, p.Host, dash(p.Output))})
	}
}

func (a *analysis) services() {
	var computes, computesUp int
	src := ""
	for _, s := range a.f.Services {
		if s.Binary == "nova-compute" {
			computes++
			src = s.Source
			if s.State == "up" && s.Status == "enabled" {
				computesUp++
			}
		}
		if s.State != "down" {
			if s.Status == "disabled" {
				a.note(Evidence{Component: s.Binary, Node: s.Host, Weight: wContext, Source: s.Source,
					Message: fmt.Sprintf("%s on %s is disabled: %s", s.Binary, s.Host, dash(s.Reason))})
			}
			continue
		}
		w := wOtherDown
		if a.core(s.Binary) {
			w = wServiceDown
		}
		if r := a.f.Resource; r != nil && r.Host == s.Host && s.Binary == "nova-compute" {
			w = wServiceDown
		}
		why := ""
		if s.Forced {
			why = " (forced down)"
		}
		a.add(Evidence{Component: s.Binary, Node: s.Host, Weight: w, Source: s.Source,
			Message: fmt.Sprintf("%s %s on %s is down%s, last report %s", s.Component, s.Binary, s.Host, why, stamp(s.Updated))})
	}
	if computes > 0 && computesUp == 0 && (a.f.Symptom == InstanceWontBoot) {
		a.add(Evidence{Component: "nova-compute", Weight: wComputesGone, Source: src,
			Message: fmt.Sprintf("none of %d nova-compute services is up and enabled: nothing can take an instance", computes)})
	}
}

func (a *analysis) connects() {
	for _, c := range a.f.Connects {
		node := a.hostOfTarget(c.Target)
		if c.OK {
			a.note(Evidence{Component: c.Component, Node: node, Weight: wContext, Source: c.Source,
				Message: fmt.Sprintf("%s at %s accepts connections (%s)", c.Component, c.Target, c.Took.Round(time.Millisecond))})
			continue
		}
		w := wIntermittent
		if strings.Contains(c.Error, "refused") {
			w = wRefused
		}
		a.add(Evidence{Component: c.Component, Node: node, Weight: w, Source: c.Source,
			Message: fmt.Sprintf("connecting to %s at %s failed: %s", c.Component, c.Target, c.Error)})
	}
}

func (a *analysis) network() {
	for _, p := range a.f.Network {
		where := p.Host
		if p.Netns != "" {
			where += " netns " + p.Netns
		}
		if p.Interface != "" {
			where += " dev " + p.Interface
		}
		src := strings.Join(p.Sources, "; ")
		arp, ping, neigh := or(p.ARPSource, src), or(p.PingSource, src), or(p.NeighSource, src)
		if p.Error != "" {
			a.note(Evidence{Component: "network", Node: p.Host, Weight: wBlind, Source: src, Message: fmt.Sprintf("probing %s from %s: %s", p.Address, where, p.Error)})
		}
		if len(p.MACs) >= 2 {
			var who []string
			for _, m := range p.MACs {
				switch k := p.Known[m]; {
				case k != "":
					who = append(who, m+" ("+k+")")
				case p.NeutronAsked:
					who = append(who, m+" (unknown to Neutron)")
				default:
					who = append(who, m)
				}
			}
			a.add(Evidence{Component: "duplicate address " + p.Address, Node: p.Host, Weight: wDuplicate, Source: arp,
				Message: fmt.Sprintf("%s answers ARP from %d MAC addresses on %s: %s — two machines hold the address, and each peer talks to whichever answered last, so it works only sometimes (%d replies to %d requests)",
					p.Address, len(p.MACs), where, strings.Join(who, " and "), p.ARPReplies, p.ARPSent)})
		}
		if p.OnLink && len(p.MACs) == 0 && p.ARPSent > 0 {
			a.add(Evidence{Component: "address " + p.Address, Node: p.Host, Weight: wNoARP, Source: arp,
				Message: fmt.Sprintf("nothing answers ARP for %s on %s (%d requests): the machine is down or not on this segment", p.Address, where, p.ARPSent)})
		}
		if len(p.MACs) == 1 && p.NeutronAsked && len(p.Known) > 0 && p.Known[p.MACs[0]] == "" {
			a.add(Evidence{Component: "duplicate address " + p.Address, Node: p.Host, Weight: wNeighMismatch, Source: arp,
				Message: fmt.Sprintf("%s answers ARP on %s from %s, which is not the MAC Neutron gave it: another machine took the address", p.Address, where, p.MACs[0])})
		}
		if p.NeighMAC != "" && len(p.MACs) == 1 && p.NeighMAC != p.MACs[0] {
			a.add(Evidence{Component: "duplicate address " + p.Address, Node: p.Host, Weight: wNeighMismatch, Source: neigh + "; " + arp,
				Message: fmt.Sprintf("the neighbour table on %s has %s for %s but ARP answered from %s: the address moved between machines", where, p.NeighMAC, p.Address, p.MACs[0])})
		}
		switch {
		case p.PingSent > 0 && p.PingRecv == 0:
			a.add(Evidence{Component: "address " + p.Address, Node: p.Host, Weight: wNoPing, Source: ping,
				Message: fmt.Sprintf("no ping reply from %s on %s (%d sent)", p.Address, where, p.PingSent)})
		case p.PingSent > 0 && p.PingRecv < p.PingSent:
			a.add(Evidence{Component: "address " + p.Address, Node: p.Host, Weight: wIntermittent, Source: ping,
				Message: fmt.Sprintf("%s answers ping only sometimes from %s: %d of %d", p.Address, where, p.PingRecv, p.PingSent)})
		case p.PingSent > 0:
			a.note(Evidence{Component: "address " + p.Address, Node: p.Host, Weight: wContext, Source: ping,
				Message: fmt.Sprintf("%s answers ping from %s: %d of %d", p.Address, where, p.PingRecv, p.PingSent)})
		}
		if !p.OnLink && p.Error == "" {
			a.note(Evidence{Component: "network", Node: p.Host, Weight: wContext, Source: src,
				Message: fmt.Sprintf("%s is not on a segment of %s: ARP cannot be seen from there, only reachability", p.Address, where)})
		}
		if len(p.Holders) > 0 {
			a.note(Evidence{Component: "network", Node: p.Host, Weight: wContext, Source: src,
				Message: fmt.Sprintf("on %s, namespace(s) %s hold %s themselves", p.Host, strings.Join(p.Holders, ", "), p.Address)})
		}
	}
}

func (a *analysis) capacity() {
	c := a.f.Capacity
	if c == nil {
		return
	}
	var parts []string
	full := false
	for _, u := range c.Classes {
		pct := 0.0
		if u.Total > 0 {
			pct = u.Used / u.Total * 100
		}
		parts = append(parts, fmt.Sprintf("%s %.0f/%.0f (%.0f%%)", u.Class, u.Used, u.Total, pct))
		if pct >= 90 {
			full = true
			a.add(Evidence{Component: "capacity", Weight: wClassFull, Source: c.Source,
				Message: fmt.Sprintf("%s is %.0f%% allocated (%.0f of %.0f)", u.Class, pct, u.Used, u.Total)})
		}
	}
	pic := fmt.Sprintf("capacity: %s; %d of %d compute services up and enabled; largest free: %s", strings.Join(parts, ", "), c.ComputesUp, c.Computes, dash(c.LargestFree))
	if c.FlavorNeeds != "" && !c.FitsSomewhere {
		a.add(Evidence{Component: "capacity", Weight: wNoRoom, Source: c.Source,
			Message: fmt.Sprintf("no compute has room for %s — %s", c.FlavorNeeds, pic)})
		return
	}
	if !full {
		if c.FlavorNeeds != "" {
			pic = fmt.Sprintf("%s fits (%s)", c.FlavorNeeds, pic)
		}
		a.note(Evidence{Component: "capacity", Weight: wContext, Source: c.Source, Message: pic})
	}
}

func (a *analysis) apis() {
	if len(a.f.APIs) == 0 {
		return
	}
	const slow = 2 * time.Second
	nslow := 0
	for _, t := range a.f.APIs {
		bad := t.Error != "" || t.Status >= 500 || t.Took >= slow
		if !bad {
			a.note(Evidence{Component: apiService(t.API), Weight: wContext, Source: t.Source,
				Message: fmt.Sprintf("%s answered HTTP %d in %s", t.API, t.Status, t.Took.Round(time.Millisecond))})
			continue
		}
		nslow++
		msg := fmt.Sprintf("%s took %s (HTTP %d)", t.API, t.Took.Round(time.Millisecond), t.Status)
		if t.Error != "" {
			msg = fmt.Sprintf("%s failed after %s: %s", t.API, t.Took.Round(time.Millisecond), t.Error)
		}
		a.add(Evidence{Component: apiService(t.API), Weight: wAPISlow, Source: t.Source, Message: msg})
	}
	if nslow >= 2 && nslow == len(a.f.APIs) {
		a.add(Evidence{Component: "keystone", Weight: wAPISlow + 5, Source: "the API timings above",
			Message: fmt.Sprintf("all %d APIs are slow: look at what they share — Keystone's token validation, memcached, the database, the controller's load", nslow)})
	}
}

func apiService(api string) string {
	switch api {
	case "identity":
		return "keystone"
	case "compute":
		return "nova-api"
	case "image":
		return "glance-api"
	case "placement":
		return "placement-api"
	case "network":
		return "neutron-server"
	case "block-storage":
		return "cinder-api"
	case "object-store":
		return "swift-proxy"
	}
	return api
}

func (a *analysis) logs() {
	dbComp, dbNode := a.dbComponent()
	for _, ex := range a.f.Logs {
		who := ex.Service + " on " + ex.Host
		for _, k := range ex.Kinds {
			span := fmt.Sprintf("%d line(s) between %s and %s", k.Count, stamp(k.First), stamp(k.Last))
			bonus := min(10, k.Count/2) // more lines corroborate, a little
			switch k.Kind {
			case LogDB:
				if slices.Contains(dbServices, ex.Service) {
					a.add(Evidence{Component: ex.Service, Node: ex.Host, Weight: wLogDB, Source: ex.Source,
						Message: fmt.Sprintf("%s logged connection errors itself, %s, newest: %s", who, span, k.Sample)})
					continue
				}
				a.add(Evidence{Component: dbComp, Node: dbNode, Weight: wLogDB + bonus, Source: ex.Source,
					Message: fmt.Sprintf("%s logged database connection errors, %s, newest: %s", who, span, k.Sample)})
			case LogNoValidHost:
				a.add(Evidence{Component: "nova-scheduler", Weight: wNoValidHost, Source: ex.Source,
					Message: fmt.Sprintf("%s: the scheduler found no valid host, %s, newest: %s", who, span, k.Sample)})
			case LogAMQP:
				a.add(Evidence{Component: "rabbitmq-server", Weight: wLogAMQP + bonus/3, Source: ex.Source,
					Message: fmt.Sprintf("%s logged message-queue errors or RPC timeouts, %s, newest: %s", who, span, k.Sample)})
			case LogTimeout:
				a.add(Evidence{Component: ex.Service, Node: ex.Host, Weight: wLogTimeout, Source: ex.Source,
					Message: fmt.Sprintf("%s logged timeouts, %s, newest: %s", who, span, k.Sample)})
			case LogError:
				a.add(Evidence{Component: ex.Service, Node: ex.Host, Weight: wLogError + bonus/2, Source: ex.Source,
					Message: fmt.Sprintf("%s logged errors, %s, newest: %s", who, span, k.Sample)})
			}
		}
		if len(ex.Kinds) == 0 {
			a.note(Evidence{Component: ex.Service, Node: ex.Host, Weight: wContext, Source: ex.Source,
				Message: fmt.Sprintf("%s: nothing relevant in %d line(s) read%s", who, ex.Scanned, reach(ex, a.f.Since))})
		}
	}
}

func reach(ex LogExcerpt, since time.Time) string {
	if !ex.Oldest.IsZero() && ex.Oldest.After(since) {
		return fmt.Sprintf(" (they reach back to %s only)", stamp(ex.Oldest))
	}
	return ""
}

func (a *analysis) nodes() {
	dbSvc, dbNode := a.dbComponent()
	_ = dbSvc
	for _, n := range a.f.Nodes {
		src := strings.Join(n.Sources, "; ")
		srcLoad, srcMem, srcIO, srcDF := pick(n.Sources, src, "loadavg", "nproc"), pick(n.Sources, src, "meminfo"), pick(n.Sources, src, "vmstat"), pick(n.Sources, src, "df ")
		var normal []string
		if n.CPUs > 0 {
			per := n.Load1 / float64(n.CPUs)
			desc := fmt.Sprintf("load %.2f %.2f %.2f on %d CPU(s)", n.Load1, n.Load5, n.Load15, n.CPUs)
			if per >= 2 {
				a.add(Evidence{Component: "node", Node: n.Host, Weight: wLoad, Source: srcLoad, Message: n.Host + ": " + desc + ": more runnable work than CPUs"})
			} else {
				normal = append(normal, desc)
			}
		}
		if n.MemTotal > 0 {
			pct := float64(n.MemAvail) / float64(n.MemTotal) * 100
			desc := fmt.Sprintf("%.0f%% of %s memory available", pct, human(n.MemTotal))
			switch {
			case pct < 5:
				a.add(Evidence{Component: "node", Node: n.Host, Weight: wMemLow, Source: srcMem, Message: n.Host + ": only " + desc})
			case pct < 10:
				a.add(Evidence{Component: "node", Node: n.Host, Weight: wMemLow - 15, Source: srcMem, Message: n.Host + ": only " + desc})
			default:
				normal = append(normal, desc)
			}
			if n.SwapTot > 0 && float64(n.SwapTot-n.SwapFree)/float64(n.SwapTot) > 0.5 {
				a.add(Evidence{Component: "node", Node: n.Host, Weight: wDiskBusy - 5, Source: srcMem,
					Message: fmt.Sprintf("%s: %s of %s swap in use", n.Host, human(n.SwapTot-n.SwapFree), human(n.SwapTot))})
			}
		}
		busy := []string{}
		for _, d := range n.Disks {
			if d.InFlight >= 8 {
				busy = append(busy, fmt.Sprintf("%s (%d IOs in flight)", d.Name, d.InFlight))
			}
		}
		if len(busy) > 0 {
			a.add(Evidence{Component: "node", Node: n.Host, Weight: wDiskBusy, Source: srcIO, Message: n.Host + ": disks busy: " + strings.Join(busy, ", ")})
		} else if len(n.Disks) > 0 {
			normal = append(normal, fmt.Sprintf("%d disk(s) with no IO queue", len(n.Disks)))
		}
		fullest := ""
		maxPct := 0.0
		for _, fs := range n.FS {
			pct := float64(fs.Used) / float64(fs.Size) * 100
			if pct > maxPct {
				maxPct, fullest = pct, fs.Mount
			}
			if pct >= 90 {
				w := wFSFull - 20
				if pct >= 95 {
					w = wFSFull
				}
				if n.Host == dbNode && a.f.Symptom == DBConnectionErrors {
					w += 15
				}
				a.add(Evidence{Component: "node", Node: n.Host, Weight: w, Source: srcDF,
					Message: fmt.Sprintf("%s: %s is %.0f%% full (%s of %s)", n.Host, fs.Mount, pct, human(fs.Used), human(fs.Size))})
			}
		}
		for _, e := range n.FSErrors {
			a.add(Evidence{Component: "node", Node: n.Host, Weight: wFSFull, Source: srcDF, Message: n.Host + ": df could not read a file system: " + e})
		}
		if fullest != "" && maxPct < 90 {
			normal = append(normal, fmt.Sprintf("fullest file system %s at %.0f%%", fullest, maxPct))
		}
		if len(normal) > 0 {
			a.note(Evidence{Component: "node", Node: n.Host, Weight: wContext, Source: src, Message: n.Host + ": " + strings.Join(normal, ", ")})
		}
	}
}
