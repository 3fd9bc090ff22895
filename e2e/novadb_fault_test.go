//go:build e2e

package e2e

// The Nova-database activities when the lab's MariaDB connection is dropped mid-statement
// (issue #17), through internal/testenv/dbproxy: a scripted drop, first match only, so the
// test does not depend on timing. Scratch databases as in novadb_test.go; the real nova tables
// are only copied (CREATE TABLE ... LIKE), never touched.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/testenv/dbproxy"
)

// proxied opens a pool on the scratch Nova database as user through a fault proxy with rules.
func (s *scratch) proxied(user, pass string, rules ...dbproxy.Rule) (*sql.DB, *dbproxy.Proxy) {
	s.t.Helper()
	p, err := dbproxy.Start(s.dsn.Addr, rules...)
	require.NoError(s.t, err)
	c := s.dsn.Clone()
	c.Addr, c.User, c.Passwd, c.DBName = p.Addr(), user, pass, s.nova
	pool, err := sql.Open("mysql", c.FormatDSN())
	require.NoError(s.t, err)
	s.t.Cleanup(func() { pool.Close(); p.Close() })
	return pool, p
}

// rewrites counts the committed updates of uuid's instances row (an AFTER UPDATE trigger writes
// one rewrites row per updated row, in the same transaction).
func (s *scratch) rewrites(uuid string) int {
	s.t.Helper()
	var n int
	require.NoError(s.t, s.admin.QueryRow(fmt.Sprintf("SELECT COUNT(*) FROM %s.rewrites WHERE uuid = ?", s.nova), uuid).Scan(&n))
	return n
}

func (s *scratch) placed(uuid string) (host, node string) {
	s.t.Helper()
	require.NoError(s.t, s.admin.QueryRow(fmt.Sprintf("SELECT host, node FROM %s.instances WHERE uuid = ?", s.nova), uuid).Scan(&host, &node))
	return host, node
}

// requireRetryable: the error is one Temporal's retry policy retries (not a non-retryable
// application error), as the lost connection is transient.
func requireRetryable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		require.False(t, ae.NonRetryable(), "non-retryable: %v", err)
	}
}

func TestNovaDBRewriteSurvivesDroppedConnection(t *testing.T) {
	s := newScratch(t)
	s.novaTables()
	s.exec(fmt.Sprintf("CREATE TABLE %s.rewrites (uuid VARCHAR(36) NOT NULL, host VARCHAR(255))", s.nova))
	s.exec(fmt.Sprintf("CREATE TRIGGER %s.count_rewrites AFTER UPDATE ON %s.instances FOR EACH ROW INSERT INTO %s.rewrites (uuid, host) VALUES (NEW.uuid, NEW.host)", s.nova, s.nova, s.nova))
	rwUser, rwPass := s.roUser+"rw", s.roPass
	t.Cleanup(func() { _, _ = s.admin.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", rwUser)) })
	_, _ = s.admin.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", rwUser))
	s.exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", rwUser, rwPass))
	s.exec(fmt.Sprintf("GRANT SELECT, UPDATE ON %s.* TO '%s'@'%%'", s.nova, rwUser))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("commit answer lost", func(t *testing.T) {
		id := uuid(1)
		s.instance(id, "src1", false)
		pool, p := s.proxied(rwUser, rwPass, dbproxy.Rule{Contains: "COMMIT", When: dbproxy.After})
		db := &activities.NovaDB{RW: pool}
		rw := activities.InstanceRewrite{ID: id, FromHost: "src1", FromNode: "src1", ToHost: "dst1", ToNode: "dst1.lab"}
		_, err := db.DBRewriteInstanceHost(ctx, rw)
		t.Logf("first attempt: %v", err)
		requireRetryable(t, err)
		require.Equal(t, []bool{true}, p.Fired())
		h, n := s.placed(id)
		require.Equal(t, []string{"dst1", "dst1.lab"}, []string{h, n}, "the server committed before the answer was lost")
		require.Equal(t, 1, s.rewrites(id))

		// Temporal's retry of the activity.
		res, err := db.DBRewriteInstanceHost(ctx, rw)
		require.NoError(t, err)
		assert.Equal(t, activities.RewriteResult{ID: id, RowsAffected: 0, Already: true}, res)
		assert.Equal(t, 1, s.rewrites(id), "the row was changed exactly once")
	})

	t.Run("update never reached the server", func(t *testing.T) {
		id := uuid(2)
		s.instance(id, "src2", false)
		// go-sql-driver prepares a statement with arguments: COM_STMT_PREPARE carries its text.
		pool, p := s.proxied(rwUser, rwPass, dbproxy.Rule{Contains: "UPDATE instances", When: dbproxy.Before})
		db := &activities.NovaDB{RW: pool}
		rw := activities.InstanceRewrite{ID: id, FromHost: "src2", FromNode: "src2", ToHost: "dst2", ToNode: "dst2.lab"}
		_, err := db.DBRewriteInstanceHost(ctx, rw)
		t.Logf("first attempt: %v", err)
		requireRetryable(t, err)
		require.Equal(t, []bool{true}, p.Fired())
		h, _ := s.placed(id)
		require.Equal(t, "src2", h)
		require.Equal(t, 0, s.rewrites(id))

		res, err := db.DBRewriteInstanceHost(ctx, rw)
		require.NoError(t, err)
		assert.Equal(t, activities.RewriteResult{ID: id, RowsAffected: 1}, res)
		h, n := s.placed(id)
		assert.Equal(t, []string{"dst2", "dst2.lab"}, []string{h, n})
		assert.Equal(t, 1, s.rewrites(id))
	})

	t.Run("reader", func(t *testing.T) {
		s.instance(uuid(3), "rhost", false)
		q := "SELECT uuid FROM instances"
		pool, p := s.proxied(s.roUser, s.roPass, dbproxy.Rule{Contains: q, When: dbproxy.Before}, dbproxy.Rule{Contains: q, When: dbproxy.After})
		db := &activities.NovaDB{DB: pool}
		for i := range 2 { // the query lost, then its answer lost
			_, err := db.DBInstancesOnHost(ctx, "rhost")
			t.Logf("attempt %d: %v", i+1, err)
			requireRetryable(t, err)
		}
		require.Equal(t, []bool{true, true}, p.Fired())
		ids, err := db.DBInstancesOnHost(ctx, "rhost")
		require.NoError(t, err)
		assert.Equal(t, []string{uuid(3)}, ids)
		assert.GreaterOrEqual(t, p.Conns(), 3, "a new connection after each drop")
	})
}
