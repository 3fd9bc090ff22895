//go:build e2e

package e2e

// The Nova-database activities against real MariaDB tables with real rows, on the lab's MariaDB:
// Nova's own tables (CREATE TABLE ... LIKE nova.*, so the schema is the lab's Nova) and Cinder's
// (the lab has no Cinder: testdata/cinder-21.3.1-volumes.sql is what Cinder 21's migrations
// create), in scratch databases read through a SELECT-only account, dropped afterwards.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/workflows"
)

// scratch is a pair of scratch databases on the lab's MariaDB and a SELECT-only account on them.
type scratch struct {
	t              *testing.T
	admin          *sql.DB // MariaDB's root, no default database
	nova, cinder   string  // database names
	roUser, roPass string
	dsn            *mysql.Config // the lab's writable Nova DSN: address and parameters of the others
}

func newScratch(t *testing.T) *scratch {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{Path: labConfig(t)})
	require.NoError(t, err)
	require.NotEmpty(t, cfg.Databases.NovaRWDSN, "the lab's stackrun.yaml has no databases.nova_rw_dsn: re-run lab/up.sh")
	dsn, err := mysql.ParseDSN(cfg.Databases.NovaRWDSN)
	require.NoError(t, err)
	// MariaDB's root over the lab's socket: the lab's openstack account may not GRANT.
	admin, err := sql.Open("mysql", "root@unix("+filepath.Join(labDir(t), "hosts", "controller", "run", "mysql", "mysqld.sock")+")/")
	require.NoError(t, err)
	t.Cleanup(func() { admin.Close() })
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	tag := fmt.Sprintf("stackrun_t%d", os.Getpid())
	s := &scratch{t: t, admin: admin, nova: tag + "_nova", cinder: tag + "_cinder", roUser: tag, roPass: hex.EncodeToString(b), dsn: dsn}
	s.drop() // leftovers of an interrupted run
	t.Cleanup(s.drop)
	s.exec("CREATE DATABASE " + s.nova)
	s.exec("CREATE DATABASE " + s.cinder)
	s.exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", s.roUser, s.roPass))
	for _, db := range []string{s.nova, s.cinder} {
		s.exec(fmt.Sprintf("GRANT SELECT ON %s.* TO '%s'@'%%'", db, s.roUser))
	}
	return s
}

func (s *scratch) drop() {
	for _, q := range []string{"DROP DATABASE IF EXISTS " + s.nova, "DROP DATABASE IF EXISTS " + s.cinder,
		fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", s.roUser)} {
		if _, err := s.admin.Exec(q); err != nil {
			s.t.Logf("clean-up: %s: %v", q, err)
		}
	}
}

func (s *scratch) exec(q string, args ...any) {
	s.t.Helper()
	_, err := s.admin.Exec(q, args...)
	require.NoError(s.t, err, q)
}

// roDSN is the SELECT-only account's DSN for db.
func (s *scratch) roDSN(db string) string {
	c := s.dsn.Clone()
	c.User, c.Passwd, c.DBName = s.roUser, s.roPass, db
	return c.FormatDSN()
}

// open opens db through the SELECT-only account.
func (s *scratch) open(db string) *sql.DB {
	s.t.Helper()
	pool, err := sql.Open("mysql", s.roDSN(db))
	require.NoError(s.t, err)
	s.t.Cleanup(func() { pool.Close() })
	return pool
}

// novaTables creates Nova's instances and block_device_mapping in the scratch database, as the
// lab's Nova has them.
func (s *scratch) novaTables() {
	s.exec(fmt.Sprintf("CREATE TABLE %s.instances LIKE nova.instances", s.nova))
	s.exec(fmt.Sprintf("CREATE TABLE %s.block_device_mapping LIKE nova.block_device_mapping", s.nova))
}

// cinderTables creates Cinder 21's volumes and volume_attachment (and their foreign keys' tables).
func (s *scratch) cinderTables() {
	b, err := os.ReadFile("testdata/cinder-21.3.1-volumes.sql")
	require.NoError(s.t, err)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "--") {
			lines = append(lines, l)
		}
	}
	n := 0
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), "\n;") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			s.exec(strings.Replace(stmt, "CREATE TABLE `", "CREATE TABLE "+s.cinder+".`", 1))
			n++
		}
	}
	require.Equal(s.t, 5, n, "tables in the Cinder fixture")
}

// instance inserts an instances row; deleted is 0, or the row's id as Nova's soft delete sets it.
func (s *scratch) instance(uuid, host string, deleted bool) {
	s.exec(fmt.Sprintf("INSERT INTO %s.instances (uuid, host, node, vm_state, deleted, created_at) VALUES (?, ?, ?, 'active', 0, UTC_TIMESTAMP())", s.nova), uuid, host, host)
	if deleted {
		s.exec(fmt.Sprintf("UPDATE %s.instances SET deleted = id, deleted_at = UTC_TIMESTAMP() WHERE uuid = ?", s.nova), uuid)
	}
}

// bdm inserts a block_device_mapping row as Nova writes one for a volume (or, with volume "",
// for the local root disk).
func (s *scratch) bdm(instance, volume, device string, deleted bool) {
	dest, src := "volume", "volume"
	var vol any = volume
	if volume == "" {
		dest, src, vol = "local", "image", nil
	}
	s.exec(fmt.Sprintf(`INSERT INTO %s.block_device_mapping (instance_uuid, volume_id, device_name, source_type, destination_type,
		delete_on_termination, boot_index, deleted, created_at) VALUES (?, ?, ?, ?, ?, 0, NULL, 0, UTC_TIMESTAMP())`, s.nova),
		instance, vol, device, src, dest)
	if deleted {
		s.exec(fmt.Sprintf("UPDATE %s.block_device_mapping SET deleted = id WHERE instance_uuid = ? AND volume_id = ?", s.nova), instance, volume)
	}
}

// volume inserts a Cinder volume; deleted marks it deleted (Cinder's soft delete: deleted = 1).
func (s *scratch) volume(id, status, attach string, deleted bool) {
	s.exec(fmt.Sprintf(`INSERT INTO %s.volumes (id, status, attach_status, volume_type_id, size, deleted, created_at)
		VALUES (?, ?, ?, '00000000-0000-0000-0000-0000000000aa', 1, ?, UTC_TIMESTAMP())`, s.cinder), id, status, attach, deleted)
}

// attachment inserts a Cinder attachment of volume to instance on host.
func (s *scratch) attachment(id, volume, instance, host, status string, deleted bool) {
	s.exec(fmt.Sprintf(`INSERT INTO %s.volume_attachment (id, volume_id, instance_uuid, attached_host, attach_status, attach_mode, deleted, created_at)
		VALUES (?, ?, ?, ?, ?, 'rw', ?, UTC_TIMESTAMP())`, s.cinder), id, volume, instance, host, status, deleted)
}

func uuid(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// The join of recover-host's volume check (DBVolumeAttachments): Nova's block-device mappings of
// the instances on a host, with what Cinder says of each volume.
func TestNovaDBVolumeJoinOnMariaDB(t *testing.T) {
	s := newScratch(t)
	s.novaTables()
	s.cinderTables()
	host := "volhost1"
	i1, i2, gone, elsewhere, other := uuid(1), uuid(2), uuid(3), uuid(4), uuid(9)
	s.instance(i1, host, false)
	s.instance(i2, host, false)
	s.instance(gone, host, true) // deleted instance: its mappings do not count
	s.instance(elsewhere, "volhost2", false)
	vOK, vOther, vMulti, vAvail, vMissing, vDeleted, vDetached := uuid(101), uuid(102), uuid(103), uuid(104), uuid(105), uuid(106), uuid(107)
	s.bdm(i1, "", "/dev/vda", false) // the local root disk: not a volume
	s.bdm(i1, vOK, "/dev/vdb", false)
	s.bdm(i1, vOther, "/dev/vdc", false)
	s.bdm(i1, vMulti, "/dev/vdd", false)
	s.bdm(i2, vAvail, "/dev/vdb", false)
	s.bdm(i2, vMissing, "/dev/vdc", false)
	s.bdm(i2, vDeleted, "/dev/vdd", false)
	s.bdm(i2, vDetached, "/dev/vde", false)
	s.bdm(i2, uuid(108), "/dev/vdf", true) // a mapping Nova deleted (volume detached in Nova)
	s.bdm(gone, uuid(109), "/dev/vdb", false)
	s.bdm(elsewhere, uuid(110), "/dev/vdb", false)

	s.volume(vOK, "in-use", "attached", false)
	s.attachment(uuid(201), vOK, i1, host, "attached", false)
	s.volume(vOther, "in-use", "attached", false) // attached, but to another instance
	s.attachment(uuid(202), vOther, other, "volhost3", "attached", false)
	s.volume(vMulti, "in-use", "attached", false) // multi-attach: the other attachment first
	s.attachment(uuid(203), vMulti, other, "volhost3", "attached", false)
	s.attachment(uuid(204), vMulti, i1, host, "attached", false)
	s.volume(vAvail, "available", "detached", false) // Cinder says available although an attachment row is left
	s.attachment(uuid(205), vAvail, i2, host, "detached", false)
	s.volume(vDeleted, "deleted", "detached", true) // deleted in Cinder
	s.volume(vDetached, "in-use", "attached", false)
	s.attachment(uuid(206), vDetached, i2, host, "detached", true) // the attachment was deleted

	db := &activities.NovaDB{DB: s.open(s.nova), Cinder: s.open(s.cinder)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ids, err := db.DBInstancesOnHost(ctx, host)
	require.NoError(t, err)
	assert.Equal(t, []string{i1, i2}, ids)

	got, err := db.DBVolumeAttachments(ctx, host)
	require.NoError(t, err)
	assert.Equal(t, []activities.VolumeAttachment{
		{InstanceID: i1, VolumeID: vOK, Device: "/dev/vdb", Status: "in-use", AttachStatus: "attached", AttachedHost: host},
		{InstanceID: i1, VolumeID: vOther, Device: "/dev/vdc", Status: "in-use", AttachStatus: "attached", Problem: "Cinder has no attachment of this volume to the instance"},
		{InstanceID: i1, VolumeID: vMulti, Device: "/dev/vdd", Status: "in-use", AttachStatus: "attached", AttachedHost: host},
		{InstanceID: i2, VolumeID: vAvail, Device: "/dev/vdb", Status: "available", AttachStatus: "detached", AttachedHost: host, Problem: "Cinder says the volume is available"},
		{InstanceID: i2, VolumeID: vMissing, Device: "/dev/vdc", Problem: "volume not found in Cinder"},
		{InstanceID: i2, VolumeID: vDeleted, Device: "/dev/vdd", Problem: "volume not found in Cinder"},
		{InstanceID: i2, VolumeID: vDetached, Device: "/dev/vde", Status: "in-use", AttachStatus: "attached", Problem: "Cinder has no attachment of this volume to the instance"},
	}, got)

	// No volumes on a host: an empty list, not nil (the report prints "none").
	none, err := db.DBVolumeAttachments(ctx, "volhost9")
	require.NoError(t, err)
	assert.NotNil(t, none)
	assert.Empty(t, none)

	// Without the Cinder database the mappings are listed, each saying it was not checked.
	got, err = (&activities.NovaDB{DB: db.DB}).DBVolumeAttachments(ctx, host)
	require.NoError(t, err)
	require.Len(t, got, 7)
	for _, a := range got {
		assert.Equal(t, "Cinder database not configured (databases.cinder_dsn): attachment not checked", a.Problem, a.VolumeID)
	}

	// The account really is read-only: what passed above needs SELECT only.
	_, err = db.DB.ExecContext(ctx, "UPDATE instances SET host = 'x'")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "UPDATE command denied")
}

// Evacuation's cross-check of the API against the Nova database (crossCheck): an instance row on
// the host that the API does not list is a warning finding, and the instances both list are not.
// The worker reads a scratch copy of the lab's instances rows (through databases.nova_dsn) with
// one row more; the API side is the lab's real Nova. A dry run: nothing moves.
func TestEvacuateCrossCheckFindsDatabaseOnlyInstance(t *testing.T) {
	s := newScratch(t)
	s.exec(fmt.Sprintf("CREATE TABLE %s.instances LIKE nova.instances", s.nova))
	t.Setenv("STACKRUN_DATABASES_NOVA_DSN", s.roDSN(s.nova)) // the worker below reads the copy
	l := newNovaLab(t)
	l.deleteNamed("xchk-")
	ids := l.boot("xchk", "compute1", 1)
	s.exec(fmt.Sprintf("INSERT INTO %s.instances SELECT * FROM nova.instances WHERE host = 'compute1' AND deleted = 0", s.nova))
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	ghost := "0000dead-0000-4000-8000-" + hex.EncodeToString(b)
	s.instance(ghost, "compute1", false)
	var inCopy int
	require.NoError(t, s.admin.QueryRow(fmt.Sprintf("SELECT COUNT(*) FROM %s.instances WHERE uuid = ?", s.nova), ids[0]).Scan(&inCopy))
	require.Equal(t, 1, inCopy, "the booted server's row is in the copy")

	id := l.start("evacuate", &workflows.EvacuateInput{Meta: workflows.Meta{RequestedBy: "alice", DryRun: true}, Host: "compute1"})
	rep := l.report(id, 3*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v", rep.Summary, rep.Steps)
	var ghostFinding *activities.Finding
	for i, f := range rep.Findings {
		switch f.Subject {
		case "compute1/" + ghost:
			ghostFinding = &rep.Findings[i]
		case "compute1/" + ids[0]:
			t.Errorf("an instance both list has a finding: %+v", f)
		}
	}
	require.NotNil(t, ghostFinding, "no finding for the database-only instance: %+v", rep.Findings)
	assert.Equal(t, activities.SeverityWarning, ghostFinding.Severity)
	assert.Equal(t, "instance "+ghost+" is on compute1 in the Nova database but not in the API's list", ghostFinding.Message)
	assert.Regexp(t, `^API (\d+) instance\(s\), database \d+$`, rep.Details["crosscheck"])
	var api, db int
	_, err := fmt.Sscanf(fmt.Sprint(rep.Details["crosscheck"]), "API %d instance(s), database %d", &api, &db)
	require.NoError(t, err)
	assert.Equal(t, api+1, db, "the database lists the ghost row more than the API")
}
