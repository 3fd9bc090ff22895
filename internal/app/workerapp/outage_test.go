package workerapp

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
)

// The guide's table resolved against a small cloud: hosts by role, services where a role runs
// them, tiers with nothing of this cloud in them empty (and why), in priority order.
func TestOutageTableResolvesTheGuidesDefaults(t *testing.T) {
	cfg := config.Default()
	cfg.Inventory = map[string]config.Host{
		"ctl": {Address: "10.0.0.1", Roles: []string{"controller"}},
		"c1":  {Address: "10.0.0.11", Roles: []string{"compute"}},
		"s1":  {Address: "10.0.0.21", Roles: []string{"storage"}},
	}
	cfg.Roles = map[string]config.Role{
		"controller": {Services: []config.Service{{Name: "mariadb"}, {Name: "rabbitmq-server"}, {Name: "keystone"}, {Name: "nova-api", Log: "/var/log/nova/api.log"}}},
		"compute":    {Services: []config.Service{{Name: "nova-compute"}}},
		"storage":    {Services: []config.Service{{Name: "swift-object"}}},
	}
	cfg.Upgrade.DatabaseHost = "ctl"
	o := Outage(cfg, &activities.Hosts{}, activities.SwiftCluster{}, nil)
	byPrio := map[int]activities.OutageTier{}
	var prios []int
	for _, tr := range o.Table.Tiers {
		byPrio[tr.Priority] = tr
		prios = append(prios, tr.Priority)
	}
	require.Equal(t, []int{1, 2, 3, 4, 5, 10, 15, 20, 21, 22, 98, 99, 100}, prios)
	assert.Equal(t, []string{"c1", "ctl", "s1"}, byPrio[1].Hosts, "internal network: every host")
	assert.Equal(t, []activities.OutageService{{Host: "s1", Role: "storage", Service: "swift-object", Verify: []string{"process"}}}, byPrio[2].Services)
	assert.ElementsMatch(t, []string{"swift-account", "swift-container"}, byPrio[2].Missing)
	assert.True(t, byPrio[3].Empty(), "no network host")
	assert.True(t, byPrio[20].Empty(), "no cinder-scheduler")
	assert.Equal(t, []string{"cinder-scheduler"}, byPrio[20].Missing)
	assert.False(t, byPrio[5].Empty(), "the instance tier is never empty")
	assert.Equal(t, "/var/log/nova/api.log", byPrio[99].Services[0].Log)
	assert.Equal(t, []string{"hypervisors"}, byPrio[99].Checks)
	assert.Equal(t, "ctl", o.DatabaseHost, "upgrade.database_host by default")
	assert.Equal(t, config.DefaultOutageDatabases, o.Databases)
	assert.Equal(t, "ran-before", o.Table.Instances)
}

// A tier's parallel reaches the resolved table; one out of range is refused by the config.
func TestOutageTierParallel(t *testing.T) {
	cfg := config.Default()
	cfg.Inventory = map[string]config.Host{"s1": {Address: "10.0.0.21", Roles: []string{"storage"}}}
	cfg.Roles = map[string]config.Role{"storage": {Services: []config.Service{{Name: "swift-object"}}}}
	cfg.Outage.Tiers = []config.OutageTier{{Priority: 2, Name: "backend storage", Roles: []string{"storage"}, Parallel: 21,
		Services: []config.OutageService{{Name: "swift-object", Verify: []string{"process"}}}}}
	o := Outage(cfg, &activities.Hosts{}, activities.SwiftCluster{}, nil)
	require.Len(t, o.Table.Tiers, 1)
	assert.Equal(t, 21, o.Table.Tiers[0].Parallel)

	cfg.Outage.Tiers[0].Parallel = config.MaxOutageTierParallel + 1
	assert.ErrorContains(t, cfg.Validate(), "outage.tiers[0].parallel")
}
