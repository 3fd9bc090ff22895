package activities

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/placeholder"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// Upgrade does the host-side steps of a staged upgrade (RUNBOOKS.md §6) over SSH: package facts
// and apt transactions, backups and restores (upgrade_backup.go), the schema commands, Nova's
// upgrade check, online data migrations and the [upgrade_levels] pin (upgrade_levels.go). Every
// command comes from the catalogue with validated arguments, and every activity checks the world
// before it acts, so a retried or replayed step does not act twice.
type Upgrade struct {
	Hosts *Hosts
	// Files reads and writes configuration files over SFTP (*remote.Pool).
	Files FileTransfer
	// Services are the upgradable services by name (DefaultUpgradeServices merged with config).
	Services map[string]UpgradeService
	// BackupDir is where backups go on each host ({host} replaced), one directory per service.
	BackupDir string
	// DatabaseHost is the inventory host where mariadb-dump and restores run, with the client
	// defaults file DatabaseDefaultsFile (credentials never appear in a command line).
	DatabaseHost         string
	DatabaseDefaultsFile string
	// Order is the default order of the services (DefaultUpgradeOrder when empty).
	Order []string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// DefaultBackupDir is where backups go when the configuration names no directory.
const DefaultBackupDir = "/var/backups/stackrun"

func (u *Upgrade) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

// invalidField is the non-retryable error of a refused input, naming the field.
func invalidField(field, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(field+": "+fmt.Sprintf(format, args...), ErrTypeInvalidInput, nil)
}

func expandHost(s, host string) string { return strings.ReplaceAll(s, "{host}", host) }

// service returns the named service or an error naming the field and the known services.
func (u *Upgrade) service(field, name string) (UpgradeService, error) {
	if s, ok := u.Services[name]; ok {
		return s, nil
	}
	known := make([]string, 0, len(u.Services))
	for k := range u.Services {
		known = append(known, k)
	}
	slices.Sort(known)
	return UpgradeService{}, invalidField(field, "unknown service %q (known: %s)", name, strings.Join(known, ", "))
}

// role is the host's first role, for role_commands overrides.
func (u *Upgrade) role(host string) string {
	if inv, ok := u.Hosts.Inventory[host]; ok && len(inv.Roles) > 0 {
		return inv.Roles[0]
	}
	return ""
}

// exec builds a catalogue command for host and runs it; a non-zero exit is a Result.
func (u *Upgrade) exec(ctx context.Context, host, name string, args map[string]string, list ...string) (remote.Result, remote.Command, error) {
	_, rh, err := u.Hosts.lookup(host)
	if err != nil {
		return remote.Result{}, remote.Command{}, err
	}
	if args == nil {
		args = map[string]string{}
	}
	args["host"] = host
	cmd, err := u.Hosts.Catalogue.Build(name, u.role(host), args, list...)
	if err != nil {
		return remote.Result{}, cmd, RemoteError(err)
	}
	// Heartbeat while the command runs (apt, dumps, schema syncs take a while): a worker that
	// dies is noticed after the heartbeat timeout, not after the whole start-to-close timeout.
	defer beatEvery(func() { heartbeat(ctx, name+" on "+host) })()
	res, err := u.Hosts.Runner.Run(ctx, rh, cmd)
	if err != nil {
		return res, cmd, RemoteError(fmt.Errorf("%s on %s: %w", name, host, err))
	}
	if err := res.Whole(); err != nil { // as in Hosts.run: cut output is never parsed
		return res, cmd, RemoteError(fmt.Errorf("%s on %s: exit %d: %w", name, host, res.ExitCode, err))
	}
	return res, cmd, nil
}

// mustExec is exec that turns a non-zero exit into an error.
func (u *Upgrade) mustExec(ctx context.Context, host, name string, args map[string]string, list ...string) (remote.Result, error) {
	res, _, err := u.exec(ctx, host, name, args, list...)
	if err != nil {
		return res, err
	}
	if !res.OK() {
		return res, fmt.Errorf("%s on %s: exit %d: %s", name, host, res.ExitCode, lastLines(res.Stderr+res.Stdout, 5))
	}
	return res, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// DescribeUpgrade returns every configured service with the hosts whose roles run one of its
// processes (in the service's restart order), and where the databases are dumped.
func (u *Upgrade) DescribeUpgrade(ctx context.Context) (UpgradeFacts, error) {
	out := UpgradeFacts{Services: map[string]UpgradeServiceFacts{}, DatabaseHost: u.DatabaseHost, Order: slices.Clone(u.Order)}
	if len(out.Order) == 0 {
		out.Order = slices.Clone(DefaultUpgradeOrder)
	}
	hosts := make([]string, 0, len(u.Hosts.Inventory))
	for h := range u.Hosts.Inventory {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for name, s := range u.Services {
		f := UpgradeServiceFacts{UpgradeService: s}
		for _, h := range hosts {
			var procs []ServiceFacts
			for _, p := range s.Processes {
				for _, role := range u.Hosts.Inventory[h].Roles {
					for _, sf := range u.Hosts.Services[role] {
						if sf.Name == p && !slices.ContainsFunc(procs, func(x ServiceFacts) bool { return x.Name == p }) {
							sf.Role = role
							procs = append(procs, sf)
						}
					}
				}
			}
			if len(procs) > 0 {
				f.Hosts = append(f.Hosts, UpgradeHost{Host: h, Processes: procs})
			}
		}
		out.Services[name] = f
	}
	return out, nil
}

// --- packages ----------------------------------------------------------------------------

// PackageFacts reports, for each package, the installed version and dpkg status (dpkg-query) and
// apt's candidate and installable versions (apt-cache policy). It changes nothing.
func (u *Upgrade) PackageFacts(ctx context.Context, req PackageFactsRequest) ([]PackageFact, error) {
	if _, _, err := u.Hosts.lookup(req.Host); err != nil {
		return nil, err
	}
	pkgs := req.Packages
	if len(pkgs) == 0 {
		s, err := u.service("service", req.Service)
		if err != nil {
			return nil, err
		}
		pkgs = s.Packages
	}
	for i, p := range pkgs {
		if err := remote.ValidateArg(placeholder.KindPackage, p); err != nil {
			return nil, invalidField(fmt.Sprintf("packages[%d]", i), "%v", err)
		}
	}
	// dpkg-query exits 1 when one of the packages is unknown to dpkg, and still describes the others.
	res, _, err := u.exec(ctx, req.Host, "package_status", nil, pkgs...)
	if err != nil {
		return nil, err
	}
	if res.ExitCode > 1 {
		return nil, fmt.Errorf("dpkg-query on %s: exit %d: %s", req.Host, res.ExitCode, lastLines(res.Stderr, 3))
	}
	status := ParseDpkgStatus(res.Stdout)
	res, err = u.mustExec(ctx, req.Host, "package_policy", nil, pkgs...)
	if err != nil {
		return nil, err
	}
	policy := ParseAptPolicy(res.Stdout)
	out := make([]PackageFact, len(pkgs))
	for i, p := range pkgs {
		f := policy[p]
		f.Package = p
		f.Installed, f.Status = "", ""
		if st, ok := status[p]; ok {
			f.Status = st.Status
			if strings.HasSuffix(st.Status, " installed") || strings.HasSuffix(st.Status, " half-configured") || strings.HasSuffix(st.Status, " unpacked") {
				f.Installed = st.Installed
			}
		}
		out[i] = f
	}
	return out, nil
}

// ParseDpkgStatus reads `dpkg-query -s` paragraphs: package -> (Status, Version).
func ParseDpkgStatus(out string) map[string]PackageFact {
	facts := map[string]PackageFact{}
	var cur PackageFact
	flush := func() {
		if cur.Package != "" {
			facts[cur.Package] = cur
		}
		cur = PackageFact{}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if k, v, ok := strings.Cut(line, ": "); ok {
			switch k {
			case "Package":
				cur.Package = v
			case "Status":
				cur.Status = v
			case "Version":
				cur.Installed = v
			}
		}
	}
	flush()
	return facts
}

// ParseAptPolicy reads `apt-cache policy` output: package -> candidate and the versions that
// come from an archive (a version known only from /var/lib/dpkg/status cannot be reinstalled).
func ParseAptPolicy(out string) map[string]PackageFact {
	facts := map[string]PackageFact{}
	var cur *PackageFact
	inTable, version := false, ""
	for _, line := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
		case !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":"):
			cur = &PackageFact{Package: strings.TrimSuffix(line, ":")}
			inTable, version = false, ""
		case cur == nil:
		case strings.HasPrefix(trimmed, "Installed:"):
			cur.Installed = noneToEmpty(strings.TrimSpace(strings.TrimPrefix(trimmed, "Installed:")))
		case strings.HasPrefix(trimmed, "Candidate:"):
			cur.Candidate = noneToEmpty(strings.TrimSpace(strings.TrimPrefix(trimmed, "Candidate:")))
		case trimmed == "Version table:":
			inTable = true
		case inTable && indent(line) <= 5: // " *** 2:22.0.2-0+deb12u6 500" or "     2:22.0.2-0+deb12u3 500"
			version = strings.Fields(strings.TrimPrefix(trimmed, "*** "))[0]
		case inTable && version != "": // "        500 http://deb.debian.org/debian bookworm/main amd64 Packages"
			f := strings.Fields(trimmed)
			if len(f) >= 2 && f[1] != "/var/lib/dpkg/status" && !slices.Contains(cur.Available, version) {
				cur.Available = append(cur.Available, version)
			}
		}
		if cur != nil {
			facts[cur.Package] = *cur
		}
	}
	return facts
}

func indent(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }

func noneToEmpty(s string) string {
	if s == "(none)" {
		return ""
	}
	return s
}

var unpackRE = regexp.MustCompile(`(?m)^Unpacking ([a-z0-9][a-z0-9+.-]+)(?::[a-z0-9]+)? \(([^)]+)\)(?: over \(([^)]+)\))?`)

// ParseAptUnpacked lists what dpkg unpacked during an apt-get install, in order.
func ParseAptUnpacked(out string) []PackageChange {
	var ch []PackageChange
	for _, m := range unpackRE.FindAllStringSubmatch(out, -1) {
		ch = append(ch, PackageChange{Package: m[1], To: m[2], From: m[3]})
	}
	return ch
}

// InstallPackages moves the service's packages to the target versions in one apt transaction:
// non-interactive, keeping local configuration files. It checks the world first: targets already
// installed are left alone (all of them: the step is skipped and says so), a version apt cannot
// install is refused, and without Downgrade a target older than the installed version is
// refused, all before anything changes.
func (u *Upgrade) InstallPackages(ctx context.Context, req PackageInstallRequest) (PackageTransaction, error) {
	tx := PackageTransaction{Host: req.Host, Service: req.Service, At: u.now()}
	if _, _, err := u.Hosts.lookup(req.Host); err != nil {
		return tx, err
	}
	svc, err := u.service("service", req.Service)
	if err != nil {
		return tx, err
	}
	if len(req.Targets) == 0 {
		return tx, invalidField("targets", "no package to install")
	}
	pkgs := make([]string, len(req.Targets))
	for i, t := range req.Targets {
		if err := remote.ValidateArg(placeholder.KindPackage, t.Package); err != nil {
			return tx, invalidField(fmt.Sprintf("targets[%d].package", i), "%v", err)
		}
		if err := remote.ValidateArg(placeholder.KindDebVersion, t.Version); err != nil {
			return tx, invalidField(fmt.Sprintf("targets[%d].version", i), "%v", err)
		}
		if !req.Downgrade && !slices.Contains(svc.Packages, t.Package) {
			return tx, invalidField(fmt.Sprintf("targets[%d].package", i), "%s is not a package of %s (its packages: %s)", t.Package, svc.Name, strings.Join(svc.Packages, ", "))
		}
		pkgs[i] = t.Package
	}
	before, err := u.PackageFacts(ctx, PackageFactsRequest{Host: req.Host, Packages: pkgs})
	if err != nil {
		return tx, err
	}
	var pending []string
	var at []string
	for i, t := range req.Targets {
		f := before[i]
		if f.Installed == t.Version && f.Status == "install ok installed" {
			at = append(at, t.Package+" "+t.Version)
			continue
		}
		if !f.Has(t.Version) {
			return tx, invalidField(fmt.Sprintf("targets[%d].version", i), "version %s of %s does not exist on %s (apt offers: %s)",
				t.Version, t.Package, req.Host, strings.Join(f.Available, ", "))
		}
		if req.Downgrade && f.Installed == "" {
			return tx, invalidField(fmt.Sprintf("targets[%d].package", i), "%s is not installed on %s: a rollback only returns installed packages to a recorded version", t.Package, req.Host)
		}
		if !req.Downgrade && f.Installed != "" {
			res, _, err := u.exec(ctx, req.Host, "version_lt", map[string]string{"version": t.Version, "version_b": f.Installed})
			if err != nil {
				return tx, err
			}
			if res.OK() {
				return tx, invalidField(fmt.Sprintf("targets[%d].version", i), "%s %s is older than the installed %s: only a rollback downgrades", t.Package, t.Version, f.Installed)
			}
		}
		pending = append(pending, t.Package+"="+t.Version)
	}
	if len(pending) == 0 {
		tx.Skipped = true
		tx.Note = "already at the target version (" + strings.Join(at, ", ") + "): another host sharing the package set, or an earlier attempt, installed it; nothing ran"
		return tx, nil
	}
	name := "package_install"
	if req.Downgrade {
		name = "package_downgrade"
	}
	res, cmd, err := u.exec(ctx, req.Host, name, nil, pending...)
	tx.Command = cmd.String()
	if err != nil {
		return tx, err
	}
	tx.Changes = ParseAptUnpacked(res.Stdout)
	if !res.OK() {
		// apt may have changed some packages before it failed: the error says which, and a retry
		// starts from the world as it is.
		return tx, fmt.Errorf("%s on %s: exit %d (unpacked: %v): %s", name, req.Host, res.ExitCode, tx.Changes, lastLines(res.Stderr+res.Stdout, 8))
	}
	after, err := u.PackageFacts(ctx, PackageFactsRequest{Host: req.Host, Packages: pkgs})
	if err != nil {
		return tx, err
	}
	for i, t := range req.Targets {
		if after[i].Installed != t.Version || after[i].Status != "install ok installed" {
			return tx, fmt.Errorf("%s on %s: apt-get succeeded but %s is %q (%s), want %s", name, req.Host, t.Package, after[i].Installed, after[i].Status, t.Version)
		}
		if !slices.ContainsFunc(tx.Changes, func(c PackageChange) bool { return c.Package == t.Package }) {
			tx.Changes = append(tx.Changes, PackageChange{Package: t.Package, From: before[i].Installed, To: t.Version})
		}
	}
	if len(at) > 0 {
		tx.Note = "already at the target: " + strings.Join(at, ", ")
	}
	return tx, nil
}

// --- schema, nova-status, online data migrations -------------------------------------------

// SchemaSync runs the service's schema commands on host, in order (Nova: api_db sync, then db
// sync), and reads the schema versions (alembic heads) of its databases before and after. Between
// patch builds of one release the commands are no-ops: they run all the same, and the result says
// whether anything moved.
func (u *Upgrade) SchemaSync(ctx context.Context, req ServiceHostRequest) (SchemaSyncResult, error) {
	out := SchemaSyncResult{Host: req.Host, Service: req.Service}
	if _, _, err := u.Hosts.lookup(req.Host); err != nil {
		return out, err
	}
	svc, err := u.service("service", req.Service)
	if err != nil {
		return out, err
	}
	if len(svc.Schema) == 0 {
		return out, invalidField("service", "%s has no schema commands (upgrade.services.%s.schema)", svc.Name, svc.Name)
	}
	if out.Before, err = u.schemaVersions(ctx, svc); err != nil {
		return out, err
	}
	for _, name := range svc.Schema {
		start := u.now()
		res, cmd, err := u.exec(ctx, req.Host, name, map[string]string{"config_file": expandHost(svc.ConfigFile, req.Host)})
		if err != nil {
			return out, err
		}
		step := SchemaStep{Command: name, Argv: cmd.Argv, Duration: u.now().Sub(start), Output: lastLines(res.Stdout+res.Stderr, 5)}
		out.Steps = append(out.Steps, step)
		if !res.OK() {
			return out, fmt.Errorf("%s on %s: exit %d: %s", name, req.Host, res.ExitCode, lastLines(res.Stderr+res.Stdout, 8))
		}
	}
	if out.After, err = u.schemaVersions(ctx, svc); err != nil {
		return out, err
	}
	var moved []string
	for _, db := range svc.Databases {
		if !slices.Equal(out.Before[db], out.After[db]) {
			moved = append(moved, fmt.Sprintf("%s %v -> %v", db, out.Before[db], out.After[db]))
		}
	}
	out.Changed = len(moved) > 0
	if out.Changed {
		out.Note = "schema upgraded: " + strings.Join(moved, "; ")
	} else {
		out.Note = fmt.Sprintf("no schema change (alembic heads unchanged: %v): expected between patch builds of one release; the commands ran all the same", out.After)
	}
	return out, nil
}

// schemaVersions reads alembic_version of every database of the service on the database host.
func (u *Upgrade) schemaVersions(ctx context.Context, svc UpgradeService) (map[string][]string, error) {
	v := map[string][]string{}
	if u.DatabaseHost == "" || len(svc.Databases) == 0 {
		return v, nil
	}
	for _, db := range svc.Databases {
		res, _, err := u.exec(ctx, u.DatabaseHost, "db_schema_version", map[string]string{"defaults_file": u.DatabaseDefaultsFile, "database": db})
		if err != nil {
			return nil, err
		}
		if !res.OK() { // no alembic_version table (not created yet, or an older migration tool)
			v[db] = nil
			continue
		}
		heads := strings.Fields(res.Stdout)
		slices.Sort(heads)
		v[db] = heads
	}
	return v, nil
}

// NovaUpgradeCheck runs `nova-status upgrade check` on host and maps its exit status to a level:
// 0 ok, 1 warning (people decide), 2 failure (the upgrade must not go on). Any other exit is an
// error.
func (u *Upgrade) NovaUpgradeCheck(ctx context.Context, req ServiceHostRequest) (NovaCheckResult, error) {
	out := NovaCheckResult{Host: req.Host}
	if _, _, err := u.Hosts.lookup(req.Host); err != nil {
		return out, err
	}
	svc, err := u.service("service", "nova")
	if err != nil {
		return out, err
	}
	res, _, err := u.exec(ctx, req.Host, "nova_upgrade_check", map[string]string{"config_file": expandHost(svc.ConfigFile, req.Host)})
	if err != nil {
		return out, err
	}
	out.Code, out.Output = res.ExitCode, strings.TrimSpace(res.Stdout)
	switch res.ExitCode {
	case 0:
		out.Level = CheckOK
	case 1:
		out.Level = CheckWarning
	case 2:
		out.Level = CheckFailure
	default:
		return out, fmt.Errorf("nova-status upgrade check on %s: exit %d: %s", req.Host, res.ExitCode, lastLines(res.Stderr+res.Stdout, 8))
	}
	return out, nil
}

// NovaOnlineDataMigrations runs one batch of `nova-manage db online_data_migrations` and maps its
// exit status: 0 done, 1 more to do (run another batch), 2 error (a migration failed).
func (u *Upgrade) NovaOnlineDataMigrations(ctx context.Context, req OnlineMigrationsRequest) (OnlineMigrationsResult, error) {
	out := OnlineMigrationsResult{Host: req.Host}
	if _, _, err := u.Hosts.lookup(req.Host); err != nil {
		return out, err
	}
	svc, err := u.service("service", "nova")
	if err != nil {
		return out, err
	}
	n := req.MaxCount
	if n == 0 {
		n = 1000
	}
	if n < 0 {
		return out, invalidField("max_count", "%d: must be positive", n)
	}
	res, _, err := u.exec(ctx, req.Host, "nova_online_data_migrations", map[string]string{"config_file": expandHost(svc.ConfigFile, req.Host), "count": strconv.Itoa(n)})
	if err != nil {
		return out, err
	}
	out.Code, out.Output = res.ExitCode, lastLines(res.Stdout+res.Stderr, 30)
	switch res.ExitCode {
	case 0:
		out.State = MigrationsDone
	case 1:
		out.State = MigrationsMore
	case 2:
		out.State = MigrationsError
	default:
		return out, fmt.Errorf("nova-manage db online_data_migrations on %s: exit %d: %s", req.Host, res.ExitCode, lastLines(res.Stderr+res.Stdout, 8))
	}
	return out, nil
}
