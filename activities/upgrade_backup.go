package activities

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/placeholder"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// Backups of the staged upgrade. Files are written as <name>.partial and published with a hard
// link, which never replaces an existing name: a backup, once there, is never overwritten. A
// configuration archive is named by its content (the same content is archived once); a database
// dump is named by the run's tag (a dump, once taken, is the one a rollback restores, even if the
// step runs again after a crash).

// ErrTypeBackupChanged: a backup's checksum is not the recorded one; nothing is restored from it.
const ErrTypeBackupChanged = "BackupChanged"

var (
	reConfigArchive = regexp.MustCompile(`^etc-[0-9a-f]{16}\.tar$`)
	reDumpFile      = regexp.MustCompile(`^db-[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.sql$`)
)

func (u *Upgrade) backupDir(host, service string) string {
	d := u.BackupDir
	if d == "" {
		d = DefaultBackupDir
	}
	return path.Join(expandHost(d, host), service)
}

// fileSize is the size of p on host; ok is false when p does not exist.
func (u *Upgrade) fileSize(ctx context.Context, host, p string) (size int64, ok bool, err error) {
	res, _, err := u.exec(ctx, host, "file_size", map[string]string{"path": p})
	if err != nil {
		return 0, false, err
	}
	if !res.OK() {
		if strings.Contains(res.Stderr, "No such file") {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("stat %s on %s: exit %d: %s", p, host, res.ExitCode, lastLines(res.Stderr, 2))
	}
	size, err = strconv.ParseInt(strings.TrimSpace(res.Stdout), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("stat %s on %s: %q: %w", p, host, res.Stdout, err)
	}
	return size, true, nil
}

func (u *Upgrade) sha256(ctx context.Context, host, p string) (string, error) {
	res, err := u.mustExec(ctx, host, "sha256sum", nil, p)
	if err != nil {
		return "", err
	}
	f := strings.Fields(res.Stdout)
	if len(f) == 0 || len(f[0]) != 64 {
		return "", fmt.Errorf("sha256sum %s on %s: unexpected output %q", p, host, res.Stdout)
	}
	return f[0], nil
}

// publish links partial to final (refusing to replace an existing final) and removes partial.
func (u *Upgrade) publish(ctx context.Context, host, partial, final string) error {
	if _, err := u.mustExec(ctx, host, "file_publish", map[string]string{"partial": partial, "dest": final}); err != nil {
		return err
	}
	_, err := u.mustExec(ctx, host, "partial_remove", map[string]string{"partial": partial})
	return err
}

// archiveDir writes a sorted tar of dir to partial on host and returns its SHA-256.
func (u *Upgrade) archiveDir(ctx context.Context, host, dir, partial string) (string, error) {
	if _, err := u.mustExec(ctx, host, "archive_create", map[string]string{"partial": partial, "dir": path.Dir(dir), "entry": path.Base(dir)}); err != nil {
		return "", err
	}
	return u.sha256(ctx, host, partial)
}

func (u *Upgrade) configDir(svc UpgradeService, host string) (string, error) {
	dir := expandHost(svc.ConfigDir, host)
	if err := remote.ValidateArg(placeholder.KindPath, dir); err != nil {
		return "", invalidField("upgrade.services."+svc.Name+".config_dir", "%v", err)
	}
	return dir, nil
}

// BackupConfig archives the service's configuration directory on host (a sorted tar, so the same
// files give the same bytes) and records its SHA-256. When an archive with that content exists
// already, it is reused and nothing is written.
func (u *Upgrade) BackupConfig(ctx context.Context, req UpgradeBackupRequest) (ConfigBackup, error) {
	out := ConfigBackup{Host: req.Host, Service: req.Service}
	if _, _, err := u.Hosts.lookup(req.Host); err != nil {
		return out, err
	}
	svc, err := u.service("service", req.Service)
	if err != nil {
		return out, err
	}
	if out.Dir, err = u.configDir(svc, req.Host); err != nil {
		return out, err
	}
	if _, ok, err := u.fileSize(ctx, req.Host, out.Dir); err != nil {
		return out, err
	} else if !ok {
		return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("configuration directory %s of %s does not exist on %s", out.Dir, svc.Name, req.Host), ErrTypeNotFound, nil)
	}
	bdir := u.backupDir(req.Host, svc.Name)
	if _, err := u.mustExec(ctx, req.Host, "mkdir", map[string]string{"path": bdir}); err != nil {
		return out, err
	}
	partial := path.Join(bdir, "etc.tar.partial")
	if out.SHA256, err = u.archiveDir(ctx, req.Host, out.Dir, partial); err != nil {
		return out, err
	}
	out.Archive = path.Join(bdir, "etc-"+out.SHA256[:16]+".tar")
	size, exists, err := u.fileSize(ctx, req.Host, out.Archive)
	if err != nil {
		return out, err
	}
	if exists {
		sum, err := u.sha256(ctx, req.Host, out.Archive)
		if err != nil {
			return out, err
		}
		if sum != out.SHA256 {
			return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s on %s has SHA-256 %s, not the %s its name says: look at it before any backup is trusted", out.Archive, req.Host, sum, out.SHA256), ErrTypeBackupChanged, nil)
		}
		out.Reused, out.Size = true, size
		_, err = u.mustExec(ctx, req.Host, "partial_remove", map[string]string{"partial": partial})
		return out, err
	}
	if err := u.publish(ctx, req.Host, partial, out.Archive); err != nil {
		return out, err
	}
	out.Size, _, err = u.fileSize(ctx, req.Host, out.Archive)
	return out, err
}

// dumpFile is where the dump of tag goes on the database host.
func (u *Upgrade) dumpFile(svc UpgradeService, tag string) string {
	return path.Join(u.backupDir(u.DatabaseHost, svc.Name), "db-"+tag+".sql")
}

// dumpTo dumps dbs into partial on the database host and checks the dump: complete (the
// "Dump completed" trailer), one CREATE DATABASE per database, at least one table.
func (u *Upgrade) dumpTo(ctx context.Context, dbs []string, partial string) (sha string, size int64, tables int, err error) {
	host := u.DatabaseHost
	if _, err := u.mustExec(ctx, host, "db_dump", map[string]string{"defaults_file": u.DatabaseDefaultsFile, "partial": partial}, dbs...); err != nil {
		return "", 0, 0, err
	}
	size, _, err = u.fileSize(ctx, host, partial)
	if err != nil {
		return "", 0, 0, err
	}
	if size == 0 {
		return "", 0, 0, fmt.Errorf("dump of %v on %s is empty", dbs, host)
	}
	res, err := u.mustExec(ctx, host, "file_tail", map[string]string{"count": "64", "path": partial})
	if err != nil {
		return "", 0, 0, err
	}
	if !strings.Contains(res.Stdout, "-- Dump completed") {
		return "", 0, 0, fmt.Errorf("dump of %v on %s has no 'Dump completed' trailer: incomplete", dbs, host)
	}
	count := func(name string) (int, error) {
		res, _, err := u.exec(ctx, host, name, map[string]string{"path": partial})
		if err != nil {
			return 0, err
		}
		if res.ExitCode > 1 { // grep -c: exit 1 = no line matched
			return 0, fmt.Errorf("%s on %s: exit %d: %s", name, host, res.ExitCode, lastLines(res.Stderr, 2))
		}
		return strconv.Atoi(strings.TrimSpace(res.Stdout))
	}
	ndb, err := count("dump_count_databases")
	if err != nil {
		return "", 0, 0, err
	}
	if tables, err = count("dump_count_tables"); err != nil {
		return "", 0, 0, err
	}
	if ndb != len(dbs) || tables == 0 {
		return "", 0, 0, fmt.Errorf("dump of %v on %s has %d databases and %d tables: want %d databases and some tables", dbs, host, ndb, tables, len(dbs))
	}
	sha, err = u.sha256(ctx, host, partial)
	return sha, size, tables, err
}

func (u *Upgrade) dbReady(svc UpgradeService) error {
	if u.DatabaseHost == "" {
		return temporal.NewNonRetryableApplicationError("upgrade.database_host: not configured on this worker", ErrTypeInvalidInput, nil)
	}
	if len(svc.Databases) == 0 {
		return invalidField("service", "%s has no database (upgrade.services.%s.databases)", svc.Name, svc.Name)
	}
	if _, ok := u.Hosts.Inventory[u.DatabaseHost]; !ok {
		return invalidField("upgrade.database_host", "%q is not in the inventory", u.DatabaseHost)
	}
	return nil
}

// BackupDatabase dumps the service's databases on the database host (mariadb-dump through the
// catalogue, credentials from the defaults file) into db-<tag>.sql, checked complete and
// non-empty, with its SHA-256. When the dump of this tag exists already (an earlier attempt, or a
// worker that died after taking it) it is returned as it is, never taken again.
func (u *Upgrade) BackupDatabase(ctx context.Context, req UpgradeBackupRequest) (DatabaseBackup, error) {
	out := DatabaseBackup{Host: u.DatabaseHost, Service: req.Service}
	svc, err := u.service("service", req.Service)
	if err != nil {
		return out, err
	}
	if err := remote.ValidateArg(placeholder.KindFileName, req.Tag); err != nil {
		return out, invalidField("tag", "%v", err)
	}
	if err := u.dbReady(svc); err != nil {
		return out, err
	}
	out.Databases = slices.Clone(svc.Databases)
	out.File = u.dumpFile(svc, req.Tag)
	host := u.DatabaseHost
	size, exists, err := u.fileSize(ctx, host, out.File)
	if err != nil {
		return out, err
	}
	if exists {
		if out.SHA256, err = u.sha256(ctx, host, out.File); err != nil {
			return out, err
		}
		res, _, err := u.exec(ctx, host, "dump_count_tables", map[string]string{"path": out.File})
		if err != nil {
			return out, err
		}
		out.Tables, _ = strconv.Atoi(strings.TrimSpace(res.Stdout))
		out.Size, out.Reused = size, true
		return out, nil
	}
	if _, err := u.mustExec(ctx, host, "mkdir", map[string]string{"path": path.Dir(out.File)}); err != nil {
		return out, err
	}
	partial := out.File + ".partial"
	if out.SHA256, out.Size, out.Tables, err = u.dumpTo(ctx, svc.Databases, partial); err != nil {
		return out, err
	}
	return out, u.publish(ctx, host, partial, out.File)
}

// checkBackupFile verifies that file is where the service's backups are, has the expected name,
// and still has the recorded checksum.
func (u *Upgrade) checkBackupFile(ctx context.Context, host, field, file, dir string, name *regexp.Regexp, sha string) error {
	if err := remote.ValidateArg(placeholder.KindPath, file); err != nil {
		return invalidField(field, "%v", err)
	}
	if path.Dir(file) != dir || !name.MatchString(path.Base(file)) {
		return invalidField(field, "%s is not a backup of this service (want %s/%s)", file, dir, name.String())
	}
	sum, err := u.sha256(ctx, host, file)
	if err != nil {
		return err
	}
	if sum != sha {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s on %s has SHA-256 %s, recorded %s: not restoring from it", file, host, sum, sha), ErrTypeBackupChanged, nil)
	}
	return nil
}

// RestoreConfig puts the archived configuration back. It checks the world first: when the
// directory already equals the archive nothing changes. Otherwise the current directory is moved
// aside (kept as <dir>.before-restore-<checksum>, never deleted) and the archive extracted; the
// result is verified against the archive's checksum.
func (u *Upgrade) RestoreConfig(ctx context.Context, b ConfigBackup) (RestoreResult, error) {
	out := RestoreResult{Host: b.Host, Service: b.Service, What: "configuration", From: b.Archive, SHA256: b.SHA256}
	if _, _, err := u.Hosts.lookup(b.Host); err != nil {
		return out, err
	}
	svc, err := u.service("service", b.Service)
	if err != nil {
		return out, err
	}
	dir, err := u.configDir(svc, b.Host)
	if err != nil {
		return out, err
	}
	if b.Dir != dir {
		return out, invalidField("dir", "%s is not the configuration directory of %s on %s (%s)", b.Dir, svc.Name, b.Host, dir)
	}
	bdir := u.backupDir(b.Host, svc.Name)
	if err := u.checkBackupFile(ctx, b.Host, "archive", b.Archive, bdir, reConfigArchive, b.SHA256); err != nil {
		return out, err
	}
	partial := path.Join(bdir, "current.tar.partial")
	current := func() (string, bool, error) {
		if _, ok, err := u.fileSize(ctx, b.Host, dir); err != nil || !ok {
			return "", false, err
		}
		sum, err := u.archiveDir(ctx, b.Host, dir, partial)
		return sum, true, err
	}
	sum, exists, err := current()
	if err != nil {
		return out, err
	}
	if exists && sum == b.SHA256 {
		out.Already, out.Verified = true, true
		out.Note = "the configuration already equals the backup: nothing changed"
		_, err := u.mustExec(ctx, b.Host, "partial_remove", map[string]string{"partial": partial})
		return out, err
	}
	if exists {
		out.SetAside = dir + ".before-restore-" + sum[:16]
		if _, ok, err := u.fileSize(ctx, b.Host, out.SetAside); err != nil {
			return out, err
		} else if ok {
			return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s exists on %s (the same configuration was set aside before): move it away, then retry", out.SetAside, b.Host), ErrTypeRefused, nil)
		}
		if _, err := u.mustExec(ctx, b.Host, "dir_move_aside", map[string]string{"path": dir, "dest": out.SetAside}); err != nil {
			return out, err
		}
	}
	if _, err := u.mustExec(ctx, b.Host, "archive_extract", map[string]string{"path": b.Archive, "dir": path.Dir(dir)}); err != nil {
		return out, err
	}
	sum, _, err = current()
	if err != nil {
		return out, err
	}
	out.Verified = sum == b.SHA256
	if !out.Verified {
		out.Note = fmt.Sprintf("restored, but the directory archives to %s, not %s", sum, b.SHA256)
	}
	_, err = u.mustExec(ctx, b.Host, "partial_remove", map[string]string{"partial": partial})
	return out, err
}

// RestoreDatabase loads a dump back (the dump drops and recreates its databases). It checks the
// world first: when a fresh dump equals the backup nothing changes. The result is verified by
// dumping again. Stop the service's processes first: a service that writes meanwhile makes the
// verification fail.
func (u *Upgrade) RestoreDatabase(ctx context.Context, b DatabaseBackup) (RestoreResult, error) {
	out := RestoreResult{Host: b.Host, Service: b.Service, What: "database", From: b.File, SHA256: b.SHA256}
	svc, err := u.service("service", b.Service)
	if err != nil {
		return out, err
	}
	if err := u.dbReady(svc); err != nil {
		return out, err
	}
	if b.Host != u.DatabaseHost {
		return out, invalidField("host", "%q: dumps are on the database host %s", b.Host, u.DatabaseHost)
	}
	for i, db := range b.Databases {
		if !slices.Contains(svc.Databases, db) {
			return out, invalidField(fmt.Sprintf("databases[%d]", i), "%q is not a database of %s (%s)", db, svc.Name, strings.Join(svc.Databases, ", "))
		}
	}
	if len(b.Databases) == 0 {
		return out, invalidField("databases", "empty")
	}
	host := u.DatabaseHost
	if err := u.checkBackupFile(ctx, host, "file", b.File, u.backupDir(host, svc.Name), reDumpFile, b.SHA256); err != nil {
		return out, err
	}
	partial := path.Join(u.backupDir(host, svc.Name), "current.sql.partial")
	sum, _, _, err := u.dumpTo(ctx, b.Databases, partial)
	if err != nil {
		return out, err
	}
	if sum == b.SHA256 {
		out.Already, out.Verified = true, true
		out.Note = "the databases already equal the dump: nothing changed"
		_, err := u.mustExec(ctx, host, "partial_remove", map[string]string{"partial": partial})
		return out, err
	}
	if _, err := u.mustExec(ctx, host, "db_restore", map[string]string{"defaults_file": u.DatabaseDefaultsFile, "path": b.File}); err != nil {
		return out, err
	}
	if sum, _, _, err = u.dumpTo(ctx, b.Databases, partial); err != nil {
		return out, err
	}
	out.Verified = sum == b.SHA256
	if !out.Verified {
		out.Note = "restored, but a fresh dump differs from the backup (did a service write meanwhile?)"
	}
	_, err = u.mustExec(ctx, host, "partial_remove", map[string]string{"partial": partial})
	return out, err
}
