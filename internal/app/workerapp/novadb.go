package workerapp

import (
	"database/sql"
	"fmt"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
)

// openNovaDB builds the NovaDB activities from databases.nova_dsn, databases.cinder_dsn and the
// separate writable databases.nova_rw_dsn (only the gated db-rewrite fallback uses it).
// sql.Open does not connect: the pools connect on first use, so a worker starts while the
// databases are down. An empty DSN leaves that pool nil (the activities then refuse clearly).
func openNovaDB(cfg *config.Config) (*activities.NovaDB, func(), error) {
	open := func(key, dsn string) (*sql.DB, error) {
		if dsn == "" {
			return nil, nil
		}
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		db.SetMaxOpenConns(4)
		db.SetMaxIdleConns(2)
		db.SetConnMaxIdleTime(5 * time.Minute)
		return db, nil
	}
	nova, err := open("databases.nova_dsn", cfg.Databases.NovaDSN)
	if err != nil {
		return nil, nil, err
	}
	cinder, err := open("databases.cinder_dsn", cfg.Databases.CinderDSN)
	if err != nil {
		if nova != nil {
			_ = nova.Close()
		}
		return nil, nil, err
	}
	rw, err := open("databases.nova_rw_dsn", cfg.Databases.NovaRWDSN)
	if err != nil {
		for _, db := range []*sql.DB{nova, cinder} {
			if db != nil {
				_ = db.Close()
			}
		}
		return nil, nil, err
	}
	closeAll := func() {
		for _, db := range []*sql.DB{nova, cinder, rw} {
			if db != nil {
				_ = db.Close()
			}
		}
	}
	return &activities.NovaDB{DB: nova, Cinder: cinder, RW: rw}, closeAll, nil
}
