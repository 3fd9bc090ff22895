package config

import (
	cryptotls "crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/stackrun/stackrun/config/policy"
)

// Purpose selects the checks that depend on the machine the process runs on.
type Purpose int

const (
	// ForCLI: the operator's CLI and the chat gateway, which only talk to
	// Temporal. Local files of the worker (SSH key, known_hosts) are not
	// checked, so a laptop without the worker's key passes.
	ForCLI Purpose = iota
	// ForWorker: everything, including the SSH key file (or use_agent), the
	// known_hosts file and the audit log's directory.
	ForWorker
	// ForChat: the chat gateway (stackrun chat serve): as ForCLI, and the chat
	// section must let it verify requests and know its users.
	ForChat
)

func (p Purpose) String() string {
	switch p {
	case ForCLI:
		return "cli"
	case ForWorker:
		return "worker"
	case ForChat:
		return "chat"
	}
	return "Purpose(" + strconv.Itoa(int(p)) + ")"
}

// Validate checks everything that does not depend on the local machine and
// returns every problem at once (a Problems), each naming its key. It is
// ValidateFor(ForCLI).
func (c *Config) Validate() error { return c.ValidateFor(ForCLI) }

// ValidateFor checks the configuration for a purpose and returns every
// problem at once (a Problems), each naming its key, or nil.
func (c *Config) ValidateFor(p Purpose) error {
	var ps Problems
	c.validateTemporal(&ps)
	c.validateOpenStack(&ps)
	c.validateDatabases(&ps)
	c.validateSSH(&ps, p == ForWorker)
	c.validateInventory(&ps)
	c.validateRoles(&ps)
	c.validateCommands(&ps)
	c.validatePolicy(&ps)
	c.validateSwift(&ps)
	c.validateWorker(&ps, p == ForWorker)
	c.validateChat(&ps, p == ForChat)
	c.validateChecks(&ps)
	c.validateInspectDisk(&ps)
	c.validateUpgrade(&ps)
	c.validateOutage(&ps)
	c.validateTrust(&ps, p)
	if len(ps) == 0 {
		return nil
	}
	return ps
}

func (c *Config) validateTemporal(ps *Problems) {
	t := c.Temporal
	if err := checkHostPort(t.Address, false); err != nil {
		ps.add("temporal.address", "%v", err)
	}
	if strings.TrimSpace(t.Namespace) == "" {
		ps.add("temporal.namespace", "required")
	}
	if strings.TrimSpace(t.TaskQueue) == "" {
		ps.add("temporal.task_queue", "required")
	}
	validateTemporalTLS(ps, t.TLS)
}

// validateTemporalTLS checks temporal.tls: files that exist and parse, so that a worker or the
// CLI fails at start naming the key rather than at its first call to a TLS-only frontend.
func validateTemporalTLS(ps *Problems, tls TemporalTLS) {
	if !tls.Enabled {
		// Without enabled the client connects in plaintext, which a TLS frontend refuses with
		// an obscure transport error: say so here instead.
		for _, f := range []struct{ key, v string }{
			{"temporal.tls.ca_file", tls.CAFile}, {"temporal.tls.cert_file", tls.CertFile},
			{"temporal.tls.key_file", tls.KeyFile}, {"temporal.tls.server_name", tls.ServerName},
		} {
			if f.v != "" {
				ps.add("temporal.tls.enabled", "false, but %s is set: set temporal.tls.enabled: true (or remove the TLS settings)", f.key)
				return
			}
		}
		return
	}
	if (tls.CertFile == "") != (tls.KeyFile == "") {
		ps.add("temporal.tls.cert_file", "cert_file and key_file must be set together (mTLS)")
	}
	ok := true
	for _, f := range []struct{ key, path string }{
		{"temporal.tls.ca_file", tls.CAFile},
		{"temporal.tls.cert_file", tls.CertFile},
		{"temporal.tls.key_file", tls.KeyFile},
	} {
		if f.path != "" {
			n := len(*ps)
			checkFile(ps, f.key, f.path)
			ok = ok && len(*ps) == n
		}
	}
	if !ok {
		return
	}
	if tls.CAFile != "" {
		if pem, err := os.ReadFile(tls.CAFile); err != nil {
			ps.add("temporal.tls.ca_file", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			ps.add("temporal.tls.ca_file", "%s holds no PEM certificate", tls.CAFile)
		}
	}
	if tls.CertFile != "" && tls.KeyFile != "" {
		if _, err := cryptotls.LoadX509KeyPair(tls.CertFile, tls.KeyFile); err != nil {
			ps.add("temporal.tls.cert_file", "with key_file %s: %v", tls.KeyFile, err)
		}
	}
}

func (c *Config) validateOpenStack(ps *Problems) {
	if err := CheckComputeMicroversion(c.OpenStack.ComputeMicroversion); err != nil {
		ps.add("openstack.compute_microversion", "%v", err)
	}
	if c.OpenStack.RequestTimeout <= 0 {
		ps.add("openstack.request_timeout", "must be positive, got %v", c.OpenStack.RequestTimeout)
	}
}

// CheckComputeMicroversion accepts "2.N" with N >= 60.
func CheckComputeMicroversion(mv string) error {
	major, minor, ok := strings.Cut(mv, ".")
	n, err := strconv.Atoi(minor)
	if !ok || major != "2" || err != nil || n < 0 || strconv.Itoa(n) != minor {
		return fmt.Errorf("%q is not a Nova microversion of the form 2.N (e.g. %q)", mv, DefaultComputeMicroversion)
	}
	if n < MinComputeMicroversionMinor {
		return fmt.Errorf("%q is below the minimum 2.%d that Stackrun's calls rely on", mv, MinComputeMicroversionMinor)
	}
	return nil
}

func (c *Config) validateDatabases(ps *Problems) {
	for _, d := range []struct{ key, dsn string }{
		{"databases.nova_dsn", c.Databases.NovaDSN},
		{"databases.nova_api_dsn", c.Databases.NovaAPIDSN},
		{"databases.cinder_dsn", c.Databases.CinderDSN},
		{"databases.nova_rw_dsn", c.Databases.NovaRWDSN},
	} {
		if d.dsn == "" {
			continue
		}
		cfg, err := mysql.ParseDSN(d.dsn)
		if err != nil {
			// The driver's messages do not repeat the DSN, so no secret leaks.
			ps.add(d.key, "invalid DSN: %v", err)
			continue
		}
		if cfg.DBName == "" {
			ps.add(d.key, "DSN names no database (…/nova)")
		}
	}
	if c.Databases.NovaRWDSN != "" && c.Databases.NovaRWDSN == c.Databases.NovaDSN {
		ps.add("databases.nova_rw_dsn", "is the same as databases.nova_dsn: the writable account must be a separate DSN, and nova_dsn a read-only one")
	}
}

func (c *Config) validateSSH(ps *Problems, worker bool) {
	s := c.SSH
	if strings.TrimSpace(s.User) == "" {
		ps.add("ssh.user", "required")
	}
	if s.Port < 1 || s.Port > 65535 {
		ps.add("ssh.port", "%d is not a TCP port (1-65535)", s.Port)
	}
	if s.ConnectTimeout <= 0 {
		ps.add("ssh.connect_timeout", "must be positive, got %v", s.ConnectTimeout)
	}
	if s.CommandTimeout <= 0 {
		ps.add("ssh.command_timeout", "must be positive, got %v", s.CommandTimeout)
	}
	if s.MaxOutputBytes < 1 {
		ps.add("ssh.max_output_bytes", "must be at least 1, got %d", s.MaxOutputBytes)
	}
	if s.JumpHost != "" {
		if _, ok := c.Inventory[s.JumpHost]; !ok {
			if err := checkJumpHost(s.JumpHost); err != nil {
				ps.add("ssh.jump_host", "%v", err)
			}
		}
	}
	if !worker {
		return
	}
	if s.KeyFile == "" && !s.UseAgent {
		ps.add("ssh.key_file", "set ssh.key_file or ssh.use_agent: true (the worker needs a way to authenticate)")
	}
	if s.KeyFile != "" {
		checkFile(ps, "ssh.key_file", s.KeyFile)
	}
	if s.KnownHostsFile == "" {
		ps.add("ssh.known_hosts_file", "required: host keys are always verified")
	} else {
		checkFile(ps, "ssh.known_hosts_file", s.KnownHostsFile)
	}
}

// checkJumpHost accepts [user@]host[:port].
func checkJumpHost(s string) error {
	hostPort := s
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if i == 0 {
			return fmt.Errorf("%q: empty user before @", s)
		}
		hostPort = s[i+1:]
	}
	host := hostPort
	if h, port, err := net.SplitHostPort(hostPort); err == nil {
		host = h
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port %q", s, port)
		}
	}
	if net.ParseIP(host) == nil && !IsHostname(host) {
		return fmt.Errorf("%q is neither an inventory host nor [user@]host[:port]", s)
	}
	return nil
}

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// IsHostname reports whether s is an RFC 1123 host name (lower case, as
// viper delivers keys): dot-separated labels of letters, digits and hyphens,
// 1-63 characters each, not starting or ending with a hyphen, 253 at most.
func IsHostname(s string) bool {
	s = strings.ToLower(s)
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}

func (c *Config) validateInventory(ps *Problems) {
	for _, name := range c.HostNames() {
		h := c.Inventory[name]
		key := "inventory." + name
		if !IsHostname(name) {
			ps.add(key, "%q is not a valid host name (RFC 1123: letters, digits, hyphens, dots)", name)
		}
		switch {
		case strings.TrimSpace(h.Address) == "":
			ps.add(key+".address", "required")
		case net.ParseIP(h.Address) == nil && !IsHostname(h.Address):
			ps.add(key+".address", "%q is neither an IP address nor a DNS name", h.Address)
		}
		if h.Port < 0 || h.Port > 65535 {
			ps.add(key+".port", "%d is not a TCP port (0 = ssh.port)", h.Port)
		}
		if len(h.Roles) == 0 {
			ps.add(key+".roles", "required: at least one role (defined under roles)")
		}
		for i, r := range h.Roles {
			if _, ok := c.Roles[r]; !ok {
				ps.add(fmt.Sprintf("%s.roles[%d]", key, i), "role %q is not defined under roles", r)
			}
		}
		for k, v := range h.Labels {
			if strings.TrimSpace(v) == "" {
				ps.add(key+".labels."+k, "empty label value")
			}
		}
	}
}

var serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9@._:\\-]*$`)

func (c *Config) validateRoles(ps *Problems) {
	for _, role := range sortedMapKeys(c.Roles) {
		key := "roles." + role
		seen := map[string]bool{}
		for i, s := range c.Roles[role].Services {
			skey := fmt.Sprintf("%s.services[%d]", key, i)
			switch {
			case s.Name == "":
				ps.add(skey+".name", "required")
			case !serviceNameRE.MatchString(s.Name):
				ps.add(skey+".name", "%q is not a service name (letters, digits, @ . _ : -)", s.Name)
			case seen[s.Name]:
				ps.add(skey+".name", "service %q listed twice", s.Name)
			}
			seen[s.Name] = true
			if s.Log != "" && !path.IsAbs(s.Log) {
				ps.add(skey+".log", "%q must be an absolute path on the host", s.Log)
			}
			if s.AMQP && s.Log == "" {
				ps.add(skey+".log", "required when amqp is true (the AMQP check reads this log)")
			}
		}
	}
}

func (c *Config) validateCommands(ps *Problems) {
	for _, name := range sortedMapKeys(c.Commands) {
		checkTemplate(ps, "commands."+name, c.Commands[name])
	}
	for _, role := range sortedMapKeys(c.RoleCommands) {
		if _, ok := c.Roles[role]; !ok {
			ps.add("role_commands."+role, "role %q is not defined under roles", role)
		}
		for _, name := range sortedMapKeys(c.RoleCommands[role]) {
			checkTemplate(ps, "role_commands."+role+"."+name, c.RoleCommands[role][name])
		}
	}
}

var placeholderRE = regexp.MustCompile(`\{[^{}]*\}`)

func checkTemplate(ps *Problems, key string, argv []string) {
	if len(argv) == 0 || strings.TrimSpace(argv[0]) == "" {
		ps.add(key, "empty command: want an argv list such as [systemctl, start, \"{service}\"]")
		return
	}
	if strings.Contains(argv[0], "{") {
		ps.add(key+"[0]", "the program may not be a placeholder")
	}
	for i, arg := range argv {
		for _, ph := range placeholderRE.FindAllString(arg, -1) {
			if !slices.Contains(Placeholders, strings.Replace(ph, "...}", "}", 1)) {
				ps.add(fmt.Sprintf("%s[%d]", key, i), "unknown placeholder %s (known: %s)", ph, strings.Join(Placeholders, " "))
			}
		}
		rest := placeholderRE.ReplaceAllString(arg, "")
		if strings.ContainsAny(rest, "{}") {
			ps.add(fmt.Sprintf("%s[%d]", key, i), "unbalanced brace in %q", arg)
		}
	}
}

func (c *Config) validatePolicy(ps *Problems) {
	p := c.Policy
	for i, a := range p.Approvers {
		if strings.TrimSpace(a) == "" {
			ps.add(fmt.Sprintf("policy.approvers[%d]", i), "empty approver")
		}
	}
	for _, gate := range sortedMapKeys(p.GateApprovers) {
		if len(p.GateApprovers[gate]) == 0 {
			ps.add("policy.gate_approvers."+gate, "empty list: nobody could approve this gate")
		}
	}
	for i, g := range p.TwoPersonGates {
		if strings.TrimSpace(g) == "" {
			ps.add(fmt.Sprintf("policy.two_person_gates[%d]", i), "empty gate name")
		}
	}
	if p.GateTimeout <= 0 {
		ps.add("policy.gate_timeout", "must be positive, got %v", p.GateTimeout)
	}
	if p.Escalation != EscalationNotifyThenWait && p.Escalation != EscalationNotifyThenAbort {
		ps.add("policy.escalation", "%q: want %s or %s", p.Escalation, EscalationNotifyThenWait, EscalationNotifyThenAbort)
	}
	if p.EscalationRepeats < 0 {
		ps.add("policy.escalation_repeats", "must be 0 or more, got %d", p.EscalationRepeats)
	}
	if p.MaxHostsOutOfService < 1 {
		ps.add("policy.max_hosts_out_of_service", "must be at least 1, got %d", p.MaxHostsOutOfService)
	}
	if p.DefaultParallelism < 1 {
		ps.add("policy.default_parallelism", "must be at least 1, got %d", p.DefaultParallelism)
	}
	if p.PlanMaxAge <= 0 {
		ps.add("policy.plan_max_age", "must be positive, got %v", p.PlanMaxAge)
	}
	if p.HistoryBudget < 0 || p.HistoryBudget > 40000 {
		ps.add("policy.history_budget", "must be 0 (default 8000) to 40000 events, got %d", p.HistoryBudget)
	}
	if p.ActivityMaxAttempts < 1 {
		ps.add("policy.activity_max_attempts", "must be at least 1, got %d", p.ActivityMaxAttempts)
	}
	if len(p.ConfigHold) > 0 && len(p.ConfigRelease) == 0 {
		ps.add("policy.config_release", "empty while policy.config_hold is %v: what holds configuration management must be released", p.ConfigHold)
	}
	for key, names := range map[string][]string{"policy.config_hold": p.ConfigHold, "policy.config_release": p.ConfigRelease} {
		for i, n := range names {
			if !commandNameRE.MatchString(n) {
				ps.add(fmt.Sprintf("%s[%d]", key, i), "%q is not a catalogue command name", n)
			}
		}
	}
	if p.LiveMigrationStall < 0 {
		ps.add("policy.live_migration_stall", "must be 0 (not watched) or positive, got %v", p.LiveMigrationStall)
	}
	switch p.LiveMigrationNotConverging {
	case "", policy.NotConvergingAbort, policy.NotConvergingForceComplete:
	default:
		ps.add("policy.live_migration_not_converging", "%q: want %s or %s", p.LiveMigrationNotConverging, policy.NotConvergingAbort, policy.NotConvergingForceComplete)
	}
}

var commandNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

var swiftDeviceRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,31}$`)

func (c *Config) validateSwift(ps *Problems) {
	s := c.Swift
	for _, p := range []struct{ key, path string }{
		{"swift.builder_dir", s.BuilderDir}, {"swift.swift_dir", s.SwiftDir},
		{"swift.devices_dir", s.DevicesDir}, {"swift.recon_cache_path", s.ReconCachePath}, {"swift.fstab", s.Fstab},
	} {
		if !path.IsAbs(p.path) || path.Clean(p.path) != p.path || p.path == "/" {
			ps.add(p.key, "%q must be a clean absolute path", p.path)
		}
	}
	for _, p := range []struct {
		key  string
		port int
	}{{"swift.account_port", s.AccountPort}, {"swift.container_port", s.ContainerPort}, {"swift.object_port", s.ObjectPort}} {
		if p.port < 1 || p.port > 65535 {
			ps.add(p.key, "%d is not a TCP port (1-65535)", p.port)
		}
	}
	if s.Parallelism < 1 {
		ps.add("swift.parallelism", "must be at least 1, got %d", s.Parallelism)
	}
	if s.MaxStepPercent < 0 || s.MaxStepPercent > 100 {
		ps.add("swift.max_step_percent", "must be 0 (no limit) to 100, got %g", s.MaxStepPercent)
	}
	if len(s.Nodes) == 0 {
		if s.RingBuilderHost != "" {
			ps.add("swift.nodes", "required when swift.ring_builder_host is set")
		}
		return
	}
	if s.RingBuilderHost == "" {
		ps.add("swift.ring_builder_host", "required when swift.nodes is set")
	} else if _, ok := c.Inventory[s.RingBuilderHost]; !ok {
		ps.add("swift.ring_builder_host", "%q is not an inventory host", s.RingBuilderHost)
	}
	for _, name := range sortedMapKeys(s.Nodes) {
		n := s.Nodes[name]
		key := "swift.nodes." + name
		if _, ok := c.Inventory[name]; !ok {
			ps.add(key, "%q is not an inventory host", name)
		}
		for _, p := range []struct{ key, path string }{
			{key + ".swift_dir", n.SwiftDir}, {key + ".devices_dir", n.DevicesDir}, {key + ".recon_cache_path", n.ReconCachePath},
		} {
			if p.path != "" && (!path.IsAbs(p.path) || path.Clean(p.path) != p.path || p.path == "/") {
				ps.add(p.key, "%q must be a clean absolute path", p.path)
			}
		}
		if n.RingIP != "" && net.ParseIP(n.RingIP) == nil {
			ps.add(key+".ring_ip", "%q is not an IP address", n.RingIP)
		}
		if n.Region < 0 || n.Zone < 0 {
			ps.add(key+".zone", "region and zone must not be negative")
		}
		if len(n.Devices) > 0 && n.Zone == 0 {
			ps.add(key+".zone", "required for a node with devices (the zone its devices are added to)")
		}
		if n.Weight < 0 {
			ps.add(key+".weight", "must not be negative, got %v", n.Weight)
		}
		for _, d := range sortedMapKeys(n.Devices) {
			if !swiftDeviceRE.MatchString(d) {
				ps.add(key+".devices."+d, "%q is not a device name like sdb (letters and digits, no slashes)", d)
			}
			if p := n.Devices[d]; p != "" && (!strings.HasPrefix(p, "/dev/") || path.Clean(p) != p) {
				ps.add(key+".devices."+d, "%q must be a clean path under /dev/", p)
			}
		}
	}
}

func (c *Config) validateWorker(ps *Problems, worker bool) {
	if a := c.Worker.MetricsAddress; a != "" {
		if err := checkHostPort(a, true); err != nil {
			ps.add("worker.metrics_address", "%v", err)
		}
	}
	if c.Worker.WorkflowCacheSize < 0 {
		ps.add("worker.workflow_cache_size", "must be 0 (the SDK's default, 10,000) or more, not %d", c.Worker.WorkflowCacheSize)
	}
	if worker && c.Worker.AuditLog != "" {
		dir := path.Dir(c.Worker.AuditLog)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			ps.add("worker.audit_log", "directory %s does not exist", dir)
		}
	}
}

// checkHostPort accepts host:port; emptyHost allows ":9090".
func checkHostPort(s string, emptyHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host == "" && !emptyHost {
		return fmt.Errorf("%q has no host", s)
	}
	if host != "" && net.ParseIP(host) == nil && !IsHostname(host) {
		return fmt.Errorf("%q: %q is neither an IP address nor a DNS name", s, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 1-65535", s, port)
	}
	return nil
}

func checkFile(ps *Problems, key, p string) {
	st, err := os.Stat(p)
	switch {
	case err != nil && os.IsNotExist(err):
		ps.add(key, "%s does not exist", p)
	case err != nil:
		ps.add(key, "%v", err)
	case st.IsDir():
		ps.add(key, "%s is a directory", p)
	}
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
