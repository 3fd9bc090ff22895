// Package store keeps the recurring checks' reports in a MySQL or MariaDB database (through
// go-sql-driver/mysql), so that trends and "new since last time" work. It creates its own
// schema (CREATE TABLE IF NOT EXISTS) at first use.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/stackrun/stackrun/internal/infra/checks"
)

// Schema is the tables the store creates.
var Schema = []string{
	`CREATE TABLE IF NOT EXISTS check_runs (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		cadence VARCHAR(16) NOT NULL,
		workflow_id VARCHAR(255) NOT NULL,
		run_id VARCHAR(64) NOT NULL,
		requested_by VARCHAR(64) NOT NULL,
		started DATETIME(6) NOT NULL,
		ended DATETIME(6) NOT NULL,
		critical INT NOT NULL,
		warning INT NOT NULL,
		info INT NOT NULL,
		summary TEXT NOT NULL,
		report_json MEDIUMTEXT NOT NULL,
		report_md MEDIUMTEXT NOT NULL,
		UNIQUE KEY uq_run (run_id),
		KEY ix_cadence_ended (cadence, ended)
	) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS check_findings (
		run BIGINT NOT NULL,
		severity VARCHAR(16) NOT NULL,
		probe VARCHAR(64) NOT NULL,
		subject VARCHAR(255) NOT NULL,
		message TEXT NOT NULL,
		fkey CHAR(32) NOT NULL,
		is_new BOOL NOT NULL,
		KEY ix_run (run),
		KEY ix_key (fkey)
	) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE IF NOT EXISTS check_metrics (
		run BIGINT NOT NULL,
		cadence VARCHAR(16) NOT NULL,
		at DATETIME(6) NOT NULL,
		name VARCHAR(128) NOT NULL,
		subject VARCHAR(255) NOT NULL,
		value DOUBLE NOT NULL,
		unit VARCHAR(32) NOT NULL,
		period VARCHAR(64) NOT NULL,
		KEY ix_metric (name, subject, at),
		KEY ix_run (run)
	) DEFAULT CHARSET=utf8mb4`,
}

// Store is the reports database.
type Store struct {
	db     *sql.DB
	mu     sync.Mutex
	schema bool
}

// Open prepares a store for dsn (no connection yet). parseTime is forced on.
func Open(dsn string) (*Store, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("reports DSN: %w", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("reports DSN: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	db.SetConnMaxLifetime(5 * time.Minute)
	return &Store{db: db}, nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.db.Close() }

// DB is the underlying database (tests).
func (s *Store) DB() *sql.DB { return s.db }

// EnsureSchema creates the tables when they do not exist (once per process).
func (s *Store) EnsureSchema(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.schema {
		return nil
	}
	for _, q := range Schema {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create reports schema: %w", err)
		}
	}
	s.schema = true
	return nil
}

// Previous is what the last stored run of a cadence found.
type Previous struct {
	RunID string
	Ended time.Time
	Keys  map[string]bool
}

// Previous returns the last run of cadence stored before runID (nil when there is none).
func (s *Store) Previous(ctx context.Context, cadence, runID string) (*Previous, error) {
	if err := s.EnsureSchema(ctx); err != nil {
		return nil, err
	}
	var id int64
	p := &Previous{Keys: map[string]bool{}}
	err := s.db.QueryRowContext(ctx,
		`SELECT id, run_id, ended FROM check_runs WHERE cadence = ? AND run_id <> ? ORDER BY ended DESC, id DESC LIMIT 1`,
		cadence, runID).Scan(&id, &p.RunID, &p.Ended)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("previous %s run: %w", cadence, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT fkey FROM check_findings WHERE run = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("previous %s findings: %w", cadence, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		p.Keys[k] = true
	}
	return p, rows.Err()
}

// Samples returns the stored values of one metric since a time, oldest first, excluding runID.
func (s *Store) Samples(ctx context.Context, name, subject string, since time.Time, runID string) ([]checks.Sample, error) {
	if err := s.EnsureSchema(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT m.at, m.value, m.period FROM check_metrics m JOIN check_runs r ON r.id = m.run
		WHERE m.name = ? AND m.subject = ? AND m.at >= ? AND r.run_id <> ? ORDER BY m.at`, name, subject, since.UTC(), runID)
	if err != nil {
		return nil, fmt.Errorf("samples of %s/%s: %w", name, subject, err)
	}
	defer rows.Close()
	var out []checks.Sample
	for rows.Next() {
		var smp checks.Sample
		if err := rows.Scan(&smp.At, &smp.Value, &smp.Period); err != nil {
			return nil, err
		}
		out = append(out, smp)
	}
	return out, rows.Err()
}

// Save stores a report with its findings and metrics. It is idempotent per run ID: a retried
// save replaces what an earlier attempt stored.
func (s *Store) Save(ctx context.Context, rep *checks.Report) error {
	if err := s.EnsureSchema(ctx); err != nil {
		return err
	}
	js, err := rep.JSON()
	if err != nil {
		return err
	}
	md := rep.Markdown()
	crit, warn, info := rep.Counts()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save report: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var old int64
	switch err := tx.QueryRowContext(ctx, `SELECT id FROM check_runs WHERE run_id = ? FOR UPDATE`, rep.RunID).Scan(&old); {
	case err == nil:
		for _, q := range []string{`DELETE FROM check_findings WHERE run = ?`, `DELETE FROM check_metrics WHERE run = ?`, `DELETE FROM check_runs WHERE id = ?`} {
			if _, err := tx.ExecContext(ctx, q, old); err != nil {
				return fmt.Errorf("save report: replace earlier attempt: %w", err)
			}
		}
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("save report: %w", err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO check_runs (cadence, workflow_id, run_id, requested_by, started, ended, critical, warning, info, summary, report_json, report_md)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		rep.Cadence, rep.WorkflowID, rep.RunID, rep.RequestedBy, rep.Started.UTC(), rep.Ended.UTC(), crit, warn, info, rep.Summary, string(js), md)
	if err != nil {
		return fmt.Errorf("save report: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	for _, f := range rep.Findings {
		if _, err := tx.ExecContext(ctx, `INSERT INTO check_findings (run, severity, probe, subject, message, fkey, is_new) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			id, f.Severity, f.Probe, trunc(f.Subject, 255), f.Message, f.Key, f.New); err != nil {
			return fmt.Errorf("save finding: %w", err)
		}
	}
	for _, m := range rep.Metrics {
		if _, err := tx.ExecContext(ctx, `INSERT INTO check_metrics (run, cadence, at, name, subject, value, unit, period) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			id, rep.Cadence, rep.Ended.UTC(), m.Name, trunc(m.Subject, 255), m.Value, m.Unit, m.Period); err != nil {
			return fmt.Errorf("save metric: %w", err)
		}
	}
	return tx.Commit()
}

// Run is a stored run, as listed.
type Run struct {
	ID       int64     `json:"id"`
	Cadence  string    `json:"cadence"`
	RunID    string    `json:"run_id"`
	Ended    time.Time `json:"ended"`
	Critical int       `json:"critical"`
	Warning  int       `json:"warning"`
	Info     int       `json:"info"`
	Summary  string    `json:"summary"`
	Markdown string    `json:"-"`
	JSON     string    `json:"-"`
}

// Runs lists the latest stored runs of a cadence, newest first.
func (s *Store) Runs(ctx context.Context, cadence string, limit int) ([]Run, error) {
	if err := s.EnsureSchema(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, cadence, run_id, ended, critical, warning, info, summary, report_md, report_json
		FROM check_runs WHERE cadence = ? ORDER BY ended DESC, id DESC LIMIT ?`, cadence, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		var r Run
		if err := rows.Scan(&r.ID, &r.Cadence, &r.RunID, &r.Ended, &r.Critical, &r.Warning, &r.Info, &r.Summary, &r.Markdown, &r.JSON); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
