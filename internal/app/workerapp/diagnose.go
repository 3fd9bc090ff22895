package workerapp

import (
	"context"

	"github.com/go-sql-driver/mysql"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// diagnoseActivities builds the Diagnose runbook's collectors: a read-only view of hosts'
// catalogue (activities.NewDiagnose), the cloud, and the read-only database endpoints the worker
// may try (never databases.nova_rw_dsn).
func diagnoseActivities(cfg *config.Config, hosts *activities.Hosts, clients func(context.Context) (*openstack.Clients, error)) *activities.Diagnose {
	d := activities.NewDiagnose(hosts, clients)
	for _, db := range []struct{ key, dsn string }{
		{"databases.nova_dsn", cfg.Databases.NovaDSN},
		{"databases.nova_api_dsn", cfg.Databases.NovaAPIDSN},
		{"databases.cinder_dsn", cfg.Databases.CinderDSN},
	} {
		if db.dsn == "" {
			continue
		}
		c, err := mysql.ParseDSN(db.dsn)
		if err != nil || c.Net != "tcp" || c.Addr == "" {
			continue // config validation reports bad DSNs; a socket DSN has no address to try
		}
		d.DB = append(d.DB, activities.DBTarget{Name: db.key, Addr: c.Addr, DSN: db.dsn})
	}
	return d
}
