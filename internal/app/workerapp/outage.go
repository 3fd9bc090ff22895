package workerapp

import (
	"database/sql"
	"fmt"
	"slices"
	"sort"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
)

// Outage builds outage-recovery's activities: the priority table (outage.tiers, or the guide's)
// resolved against the inventory and the roles' services, in priority order.
func Outage(cfg *config.Config, hosts *activities.Hosts, swift activities.SwiftCluster, novaDB *sql.DB) *activities.Outage {
	o := cfg.Outage
	tiers := o.Tiers
	if len(tiers) == 0 {
		tiers = config.DefaultOutageTiers()
	}
	tiers = slices.Clone(tiers)
	sort.SliceStable(tiers, func(i, j int) bool { return tiers[i].Priority < tiers[j].Priority })
	table := activities.OutageTable{Instances: cmpOr(o.Instances, config.OutageInstancesRanBefore), Gate: o.InstancesGate}
	names := make([]string, 0, len(cfg.Inventory))
	for n := range cfg.Inventory {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, t := range tiers {
		rt := activities.OutageTier{Priority: t.Priority, Name: t.Name, HostVerify: t.HostVerify, Checks: t.Checks, Instances: t.Instances,
			Parallel: t.Parallel}
		var chosen []string
		for _, n := range names {
			h := cfg.Inventory[n]
			if slices.Contains(t.Hosts, n) || slices.Contains(t.Roles, "*") || slices.ContainsFunc(h.Roles, func(r string) bool { return slices.Contains(t.Roles, r) }) {
				chosen = append(chosen, n)
			}
		}
		rt.Hosts = chosen
		for _, s := range t.Services {
			found := false
			for _, n := range chosen {
				for _, role := range cfg.Inventory[n].Roles {
					i := slices.IndexFunc(cfg.Roles[role].Services, func(rs config.Service) bool { return rs.Name == s.Name })
					if i < 0 {
						continue
					}
					rt.Services = append(rt.Services, activities.OutageService{Host: n, Role: role, Service: s.Name,
						Log: cfg.Roles[role].Services[i].Log, Verify: slices.Clone(s.Verify)})
					found = true
					break
				}
			}
			if !found {
				rt.Missing = append(rt.Missing, s.Name)
			}
		}
		if len(chosen) == 0 && len(t.Roles)+len(t.Hosts) > 0 {
			rt.Missing = append(rt.Missing, fmt.Sprintf("hosts of role %v", t.Roles))
		}
		table.Tiers = append(table.Tiers, rt)
	}
	dbHost := cmpOr(o.DatabaseHost, cfg.Upgrade.DatabaseHost)
	defaults := cmpOr(o.DatabaseDefaultsFile, cfg.Upgrade.DatabaseDefaultsFile)
	dbs := o.Databases
	if len(dbs) == 0 {
		dbs = config.DefaultOutageDatabases
	}
	return &activities.Outage{Hosts: hosts, Table: table, Swift: swift, NovaDB: novaDB,
		DatabaseHost: dbHost, DefaultsFile: defaults, Databases: slices.Clone(dbs)}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
