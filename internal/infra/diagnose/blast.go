package diagnose

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The blast radius: how many instances, volumes, services, hosts and projects share the
// symptom, and so how far it reaches.

func (a *analysis) blastRadius() BlastRadius {
	f := a.f
	switch f.Symptom {
	case InstanceWontBoot:
		return a.instancesRadius(true)
	case InstanceUnreachable:
		for _, p := range f.Network {
			if len(p.MACs) >= 2 {
				return BlastRadius{Scope: ScopeInstance, Instances: 1, Hosts: 1, Source: or(p.ARPSource, strings.Join(p.Sources, "; ")),
					Detail: fmt.Sprintf("one address, %s, held by %d machines; nothing else shares the symptom from what was probed", p.Address, len(p.MACs))}
			}
		}
		if r := f.Resource; r != nil && r.Host != "" {
			for _, s := range f.Services {
				if s.Binary == "nova-compute" && s.Host == r.Host && s.State == "down" {
					br := a.instancesRadius(false)
					br.Scope = ScopeHost
					br.Detail = fmt.Sprintf("the instance's host %s is down: every instance on it (%d) is likely unreachable; %s", r.Host, br.Instances, br.Detail)
					return br
				}
			}
		}
		return a.instancesRadius(false)
	case DBConnectionErrors:
		return a.servicesRadius(LogDB, "database connection errors", dbServices)
	case VolumeCreateTimeout:
		br := a.instancesRadius(true)
		br.Volumes, br.Instances = br.Instances, 0
		if br.Scope == ScopeInstance {
			br.Scope = ScopeVolume
		}
		return br
	case APISlow:
		var slow []string
		for _, t := range f.APIs {
			if t.Error != "" || t.Status >= 500 || t.Took >= 2*time.Second {
				slow = append(slow, t.API)
			}
		}
		br := BlastRadius{Services: len(slow), Source: "timed GETs to each API", Hosts: 1}
		switch {
		case len(f.APIs) == 0:
			br.Scope, br.Detail = ScopeUnknown, "no API could be timed"
		case len(slow) == 0:
			br.Scope, br.Detail = ScopeService, fmt.Sprintf("none of %d APIs is slow now", len(f.APIs))
		case len(slow) == len(f.APIs) && len(slow) > 1:
			br.Scope, br.Detail = ScopeEverything, fmt.Sprintf("all %d APIs timed are slow: %s", len(slow), strings.Join(slow, ", "))
		default:
			br.Scope, br.Detail = ScopeService, fmt.Sprintf("%d of %d APIs slow: %s", len(slow), len(f.APIs), strings.Join(slow, ", "))
		}
		return br
	}
	return BlastRadius{Scope: ScopeUnknown, Detail: "unknown symptom"}
}

// instancesRadius counts the subject and the related resources: with sameFault, only those whose
// fault (or status) matches the subject's.
func (a *analysis) instancesRadius(sameFault bool) BlastRadius {
	f := a.f
	var set []Resource
	src := ""
	if f.Resource != nil {
		set = append(set, *f.Resource)
		src = f.Resource.Source
	}
	key := ""
	if f.Resource != nil {
		key = faultKey(*f.Resource)
	}
	for _, r := range f.Related {
		if f.Resource != nil && r.ID == f.Resource.ID {
			continue
		}
		if sameFault && key != "" && faultKey(r) != key {
			continue
		}
		set = append(set, r)
		if src == "" {
			src = r.Source
		}
	}
	var hosts, projects, racks []string
	noHost := 0
	for _, r := range set {
		if r.Host == "" {
			noHost++
		} else if !slices.Contains(hosts, r.Host) {
			hosts = append(hosts, r.Host)
			if rk := a.rackOf(r.Host); rk != "" && !slices.Contains(racks, rk) {
				racks = append(racks, rk)
			}
		}
		if r.Project != "" && !slices.Contains(projects, r.Project) {
			projects = append(projects, r.Project)
		}
	}
	slices.Sort(hosts)
	slices.Sort(racks)
	br := BlastRadius{Instances: len(set), Hosts: len(hosts), Projects: len(projects), Racks: racks, Source: src}
	what := "instance(s)"
	if f.Symptom == VolumeCreateTimeout {
		what = "volume(s)"
	}
	like := ""
	if sameFault && key != "" {
		like = fmt.Sprintf(" with the same fault (%s)", key)
	}
	var where string
	switch {
	case len(hosts) == 0 && noHost > 0:
		where = "none placed on a host"
	default:
		where = fmt.Sprintf("on %d host(s) (%s)", len(hosts), strings.Join(hosts, ", "))
		if noHost > 0 {
			where += fmt.Sprintf(", %d never placed on a host", noHost)
		}
	}
	br.Detail = fmt.Sprintf("%d %s%s since %s, %s, in %d project(s)", len(set), what, like, stamp(f.Since), where, len(projects))
	switch {
	case len(set) == 0:
		br.Scope, br.Detail = ScopeUnknown, "the subject was not found and nothing else shows the symptom"
	case len(set) == 1:
		br.Scope = ScopeInstance
	case len(hosts) == 1 && noHost == 0:
		br.Scope = ScopeHost
	case len(racks) == 1 && len(hosts) > 1 && noHost == 0 && len(racks) > 0 && a.allRacked(hosts):
		br.Scope = ScopeRack
	default:
		br.Scope = ScopeEverything
	}
	return br
}

func (a *analysis) allRacked(hosts []string) bool {
	for _, h := range hosts {
		if a.rackOf(h) == "" {
			return false
		}
	}
	return true
}

// faultKey groups faults: "no valid host" however worded, else the fault's first words, else the
// status.
func faultKey(r Resource) string {
	l := strings.ToLower(r.Fault)
	switch {
	case strings.Contains(l, "no valid host"):
		return "no valid host"
	case l != "":
		w := strings.Fields(l)
		return strings.Join(w[:min(6, len(w))], " ")
	}
	return strings.ToLower(r.Status)
}

// servicesRadius counts the services whose logs show kind; a core service down or refusing
// connections makes it everything that depends on it.
func (a *analysis) servicesRadius(kind, what string, core []string) BlastRadius {
	f := a.f
	var svcs, hosts []string
	src := ""
	for _, ex := range f.Logs {
		if _, ok := ex.Count(kind); !ok {
			continue
		}
		id := ex.Service + "@" + ex.Host
		if !slices.Contains(svcs, id) {
			svcs = append(svcs, id)
		}
		if !slices.Contains(hosts, ex.Host) {
			hosts = append(hosts, ex.Host)
		}
		if src == "" {
			src = "log lines: " + ex.Source
		}
	}
	slices.Sort(svcs)
	br := BlastRadius{Services: len(svcs), Hosts: len(hosts), Source: src,
		Detail: fmt.Sprintf("%d service(s) on %d host(s) logged %s since %s: %s", len(svcs), len(hosts), what, stamp(f.Since), dashList(svcs))}
	down := ""
	for _, p := range f.Processes {
		if !p.Running && slices.Contains(core, p.Service) {
			down, br.Source = fmt.Sprintf("%s is not running on %s", p.Service, p.Host), p.Source
		}
	}
	for _, c := range f.Connects {
		if !c.OK && slices.Contains(core, c.Component) && down == "" {
			down, br.Source = fmt.Sprintf("%s at %s refuses or drops connections", c.Component, c.Target), c.Source
		}
	}
	switch {
	case down != "":
		br.Scope = ScopeEverything
		br.Detail = down + ": every service that uses it is affected; " + br.Detail
	case len(svcs) == 0:
		br.Scope = ScopeUnknown
	case len(svcs) == 1:
		br.Scope = ScopeService
	case len(hosts) == 1:
		br.Scope = ScopeHost
	default:
		br.Scope = ScopeEverything
	}
	return br
}

func label(name, id string) string {
	switch {
	case name != "" && id != "":
		return name + " (" + id + ")"
	case name != "":
		return name
	}
	return id
}

// pick joins the sources that contain one of the words (all of them when none does).
func pick(sources []string, all string, words ...string) string {
	var out []string
	for _, s := range sources {
		for _, w := range words {
			if strings.Contains(s, w) {
				out = append(out, s)
				break
			}
		}
	}
	if len(out) == 0 {
		return all
	}
	return strings.Join(out, "; ")
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashList(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func human(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
