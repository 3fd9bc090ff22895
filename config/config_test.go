package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/stackrun/stackrun/config"
)

// isolate runs the test in an empty directory with an empty home, so that no
// stackrun.yaml of the machine is found.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	return dir
}

func env(home string, kv ...string) func(string) (string, bool) {
	m := map[string]string{"HOME": home}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return config.MapEnv(m)
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func problemKeys(t *testing.T, err error) []string {
	t.Helper()
	var ps config.Problems
	require.True(t, errors.As(err, &ps), "want config.Problems, got %T: %v", err, err)
	return ps.Keys()
}

func TestLoadExampleFile(t *testing.T) {
	example, err := filepath.Abs("../stackrun.example.yaml")
	require.NoError(t, err)
	home := isolate(t)

	cfg, err := config.Load(config.LoadOptions{Path: example, LookupEnv: env(home)})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())

	assert.Equal(t, example, cfg.File)
	assert.Equal(t, "127.0.0.1:7233", cfg.Temporal.Address)
	assert.Equal(t, "lab", cfg.OpenStack.Cloud)
	assert.Equal(t, "2.90", cfg.OpenStack.ComputeMicroversion)
	assert.Equal(t, filepath.Join(home, ".ssh/id_ed25519"), cfg.SSH.KeyFile, "~ expanded")
	assert.Equal(t, 2*time.Minute, cfg.SSH.CommandTimeout)
	assert.Equal(t, []string{"compute1", "compute2", "compute3"}, cfg.HostsWithRole("compute"))
	assert.Equal(t, []string{"storage1", "storage2", "storage3"}, cfg.HostsWithRole("storage"))
	assert.Equal(t, []string{"controller1"}, cfg.HostsWithRole("proxy"))
	h, ok := cfg.Host("storage2")
	require.True(t, ok)
	assert.Equal(t, "r2", h.Labels["rack"])
	addr, _ := cfg.SSHAddress("storage2")
	assert.Equal(t, "10.0.1.22:2222", addr)
	addr, _ = cfg.SSHAddress("compute1")
	assert.Equal(t, "10.0.0.11:22", addr)
	assert.True(t, cfg.Roles["compute"].Services[0].AMQP)
	argv, _ := cfg.HostCommand("storage1", config.CommandServiceStart)
	assert.Equal(t, "/usr/local/sbin/swiftctl", argv[0])
	argv, _ = cfg.HostCommand("storage1", config.CommandServiceStatus)
	assert.Equal(t, []string{"systemctl", "is-active", "{service}"}, argv, "no override: global command")
	assert.Equal(t, []string{"alice"}, cfg.Policy.GateApprovers["db-rewrite"])
	assert.Equal(t, time.Duration(4*time.Hour), cfg.Policy.GateTimeout)
}

func TestExampleCoversEveryKey(t *testing.T) {
	b, err := os.ReadFile("../stackrun.example.yaml")
	require.NoError(t, err)
	text := string(b)
	for _, key := range config.Keys() {
		last := key[strings.LastIndex(key, ".")+1:]
		assert.Contains(t, text, last+":", "example documents %s", key)
	}
}

func TestDefaultsWithoutFile(t *testing.T) {
	home := isolate(t)
	cfg, err := config.Load(config.LoadOptions{LookupEnv: env(home)})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "", cfg.File)

	want := config.Default()
	want.SSH.KnownHostsFile = filepath.Join(home, ".ssh/known_hosts")
	assert.Equal(t, want, cfg)
	assert.Equal(t, "stackrun", cfg.Temporal.TaskQueue)
	assert.Equal(t, "default", cfg.Temporal.Namespace)
	assert.Equal(t, 1, cfg.Policy.MaxHostsOutOfService)
	assert.Equal(t, config.DefaultTwoPersonGates(), cfg.Policy.TwoPersonGates)
	assert.Len(t, cfg.Commands, 5)
}

func TestSearchOrder(t *testing.T) {
	home := isolate(t)
	write(t, home, ".config/stackrun/stackrun.yaml", "temporal: {namespace: from-home}\n")
	cfg, err := config.Load(config.LoadOptions{LookupEnv: env(home)})
	require.NoError(t, err)
	assert.Equal(t, "from-home", cfg.Temporal.Namespace)

	write(t, ".", "stackrun.yaml", "temporal: {namespace: from-cwd}\n")
	cfg, err = config.Load(config.LoadOptions{LookupEnv: env(home)})
	require.NoError(t, err)
	assert.Equal(t, "from-cwd", cfg.Temporal.Namespace)

	p := write(t, home, "elsewhere.yaml", "temporal: {namespace: from-env}\n")
	cfg, err = config.Load(config.LoadOptions{LookupEnv: env(home, "STACKRUN_CONFIG", p)})
	require.NoError(t, err)
	assert.Equal(t, "from-env", cfg.Temporal.Namespace)
	assert.Equal(t, p, cfg.File)
}

func TestExplicitMissingFile(t *testing.T) {
	home := isolate(t)
	missing := filepath.Join(home, "nope.yaml")
	_, err := config.Load(config.LoadOptions{Path: missing, LookupEnv: env(home)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), missing)

	_, err = config.Load(config.LoadOptions{LookupEnv: env(home, "STACKRUN_CONFIG", missing)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), missing)

	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	config.BindFlags(fs)
	require.NoError(t, fs.Parse([]string{"--config", missing}))
	_, err = config.Load(config.LoadOptions{Flags: fs, LookupEnv: env(home)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), missing)
}

func TestEnvOverride(t *testing.T) {
	home := isolate(t)
	p := write(t, home, "s.yaml", "temporal:\n  address: file:7233\n")
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home,
		"STACKRUN_TEMPORAL_ADDRESS", "env:7233", // in the file
		"STACKRUN_TEMPORAL_TASK_QUEUE", "q-env", // not in the file
		"STACKRUN_TEMPORAL_TLS_ENABLED", "true",
		"STACKRUN_SSH_PORT", "2200",
		"STACKRUN_SSH_CONNECT_TIMEOUT", "3s",
		"STACKRUN_POLICY_APPROVERS", "alice, bob",
		"STACKRUN_OPENSTACK_COMPUTE_MICROVERSION", "2.79",
		"STACKRUN_OPENSTACK_REGION", "", // empty: ignored
	)})
	require.NoError(t, err)
	assert.Equal(t, "env:7233", cfg.Temporal.Address)
	assert.Equal(t, "q-env", cfg.Temporal.TaskQueue)
	assert.True(t, cfg.Temporal.TLS.Enabled)
	assert.Equal(t, 2200, cfg.SSH.Port)
	assert.Equal(t, 3*time.Second, cfg.SSH.ConnectTimeout)
	assert.Equal(t, []string{"alice", "bob"}, cfg.Policy.Approvers)
	assert.Equal(t, "2.79", cfg.OpenStack.ComputeMicroversion)
}

func TestEnvFromProcess(t *testing.T) {
	home := isolate(t)
	t.Setenv("HOME", home)
	t.Setenv("STACKRUN_TEMPORAL_NAMESPACE", "from-process-env")
	cfg, err := config.Load(config.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "from-process-env", cfg.Temporal.Namespace)
}

func TestBadEnvValueNamesVariable(t *testing.T) {
	home := isolate(t)
	_, err := config.Load(config.LoadOptions{LookupEnv: env(home, "STACKRUN_SSH_PORT", "twenty-two")})
	require.Error(t, err)
	assert.Equal(t, []string{"ssh.port"}, problemKeys(t, err))
	assert.Contains(t, err.Error(), "STACKRUN_SSH_PORT")
}

func TestFlagOverride(t *testing.T) {
	home := isolate(t)
	p := write(t, home, "s.yaml", "temporal:\n  address: file:7233\n  namespace: file-ns\nopenstack:\n  cloud: file-cloud\n")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	config.BindFlags(fs)
	require.NoError(t, fs.Parse([]string{"--temporal-address", "flag:7233", "--cloud", "flagcloud", "--temporal-tls", "--task-queue", "fq"}))

	cfg, err := config.Load(config.LoadOptions{Path: p, Flags: fs, LookupEnv: env(home,
		"STACKRUN_TEMPORAL_ADDRESS", "env:7233",
		"STACKRUN_TEMPORAL_NAMESPACE", "env-ns",
	)})
	require.NoError(t, err)
	assert.Equal(t, "flag:7233", cfg.Temporal.Address, "flag beats env and file")
	assert.Equal(t, "env-ns", cfg.Temporal.Namespace, "unset flag does not override env")
	assert.Equal(t, "flagcloud", cfg.OpenStack.Cloud)
	assert.Equal(t, "fq", cfg.Temporal.TaskQueue)
	assert.True(t, cfg.Temporal.TLS.Enabled)
	assert.Equal(t, "2.90", cfg.OpenStack.ComputeMicroversion, "unset flag keeps default")
	assert.Equal(t, "openstack.cloud", config.FlagKeys()["cloud"])
}

func TestFlagsInheritedByCobraStyleSubset(t *testing.T) {
	// Only some of the flags defined: Load binds those present.
	home := isolate(t)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("namespace", "", "")
	require.NoError(t, fs.Parse([]string{"--namespace", "x"}))
	cfg, err := config.Load(config.LoadOptions{Flags: fs, LookupEnv: env(home)})
	require.NoError(t, err)
	assert.Equal(t, "x", cfg.Temporal.Namespace)
}

func TestUnknownKeys(t *testing.T) {
	home := isolate(t)
	p := write(t, home, "s.yaml", `
temporal:
  adress: 127.0.0.1:7233
inventory:
  compute1:
    address: 10.0.0.1
    role: [compute]
roles:
  compute:
    services:
      - name: nova-compute
        logs: /var/log/nova/nova-compute.log
polcy: {}
`)
	_, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.Error(t, err)
	assert.ElementsMatch(t, []string{
		"temporal.adress",
		"inventory.compute1.role",
		"roles.compute.services[0].logs",
		"polcy",
	}, problemKeys(t, err))
	assert.Contains(t, err.Error(), "did you mean temporal.address?")
	assert.Contains(t, err.Error(), "did you mean policy?")
	assert.Contains(t, err.Error(), p)
}

func TestFQDNHostNames(t *testing.T) {
	home := isolate(t)
	p := write(t, home, "s.yaml", `
inventory:
  compute1.example.org:
    address: 10.0.0.1
    roles: [compute]
roles:
  compute:
    services: [{name: nova-compute}]
`)
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.Equal(t, []string{"compute1.example.org"}, cfg.HostsWithRole("compute"))
}

func TestWrongTypesNamed(t *testing.T) {
	home := isolate(t)
	p := write(t, home, "s.yaml", `
openstack:
  compute_microversion: 2.90
ssh:
  port: abc
  connect_timeout: 10
  command_timeout: 2 minutes
policy:
  gate_timeout: 4h
  default_parallelism: [1]
inventory: [compute1]
`)
	_, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.Error(t, err)
	assert.ElementsMatch(t, []string{
		"openstack.compute_microversion",
		"ssh.port",
		"ssh.connect_timeout",
		"ssh.command_timeout",
		"policy.default_parallelism",
		"inventory",
	}, problemKeys(t, err))
	assert.Contains(t, err.Error(), `quote it (e.g. "2.9")`)
}

func TestValidateBadValues(t *testing.T) {
	home := isolate(t)
	p := write(t, home, "s.yaml", `
temporal:
  address: localhost
  task_queue: ""
openstack:
  compute_microversion: "2.53"
  request_timeout: 0s
databases:
  nova_dsn: "nova:secret@tcp(db:3306)"
ssh:
  port: 70000
  command_timeout: -1s
  jump_host: "bad host!"
inventory:
  compute1:
    roles: [compute, gpu]
  Bad_Name:
    address: 10.0.0.2
    roles: [compute]
roles:
  compute:
    services:
      - name: nova-compute
        amqp: true
commands:
  service_start: [systemctl, start, "{unit}"]
  weird: []
role_commands:
  ghost:
    uptime: [uptime]
policy:
  gate_timeout: 0s
  escalation: page-everyone
  max_hosts_out_of_service: 0
  default_parallelism: 0
  activity_max_attempts: 0
worker:
  metrics_address: "9090"
  workflow_cache_size: -1
`)
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	err = cfg.Validate()
	require.Error(t, err)
	keys := problemKeys(t, err)
	for _, want := range []string{
		"temporal.address",
		"temporal.task_queue",
		"openstack.compute_microversion",
		"openstack.request_timeout",
		"databases.nova_dsn",
		"ssh.port",
		"ssh.command_timeout",
		"ssh.jump_host",
		"inventory.compute1.address",
		"inventory.compute1.roles[1]",
		"inventory.bad_name", // viper lower-cases keys; "_" is still invalid
		"roles.compute.services[0].log",
		"commands.service_start[2]",
		"commands.weird",
		"role_commands.ghost",
		"policy.gate_timeout",
		"policy.escalation",
		"policy.max_hosts_out_of_service",
		"policy.default_parallelism",
		"policy.activity_max_attempts",
		"worker.metrics_address",
		"worker.workflow_cache_size",
	} {
		assert.Contains(t, keys, want)
	}
	msg := err.Error()
	assert.Contains(t, msg, "config: inventory.compute1.address: required")
	assert.Contains(t, msg, "unknown placeholder {unit}")
	assert.Contains(t, msg, `role "gpu" is not defined under roles`)
	assert.NotContains(t, msg, "secret", "DSN password must not leak into errors")
}

func TestMicroversion(t *testing.T) {
	for mv, ok := range map[string]bool{"2.60": true, "2.90": true, "2.100": true, "2.59": false, "2.9": false, "3.0": false, "2.x": false, "2.090": false, "": false} {
		err := config.CheckComputeMicroversion(mv)
		assert.Equal(t, ok, err == nil, "%q: %v", mv, err)
	}
}

func TestValidateForWorker(t *testing.T) {
	home := isolate(t)
	cfg, err := config.Load(config.LoadOptions{LookupEnv: env(home)})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate(), "CLI does not care about SSH files")

	err = cfg.ValidateFor(config.ForWorker)
	require.Error(t, err)
	assert.ElementsMatch(t, []string{"ssh.key_file", "ssh.known_hosts_file"}, problemKeys(t, err))

	cfg.SSH.KeyFile = filepath.Join(home, "id_missing")
	err = cfg.ValidateFor(config.ForWorker)
	assert.Contains(t, err.Error(), "config: ssh.key_file: "+cfg.SSH.KeyFile+" does not exist")

	cfg.SSH.KeyFile = write(t, home, "id", "key")
	cfg.SSH.KnownHostsFile = write(t, home, "kh", "")
	require.NoError(t, cfg.ValidateFor(config.ForWorker))

	cfg.SSH.KeyFile = ""
	cfg.SSH.UseAgent = true
	require.NoError(t, cfg.ValidateFor(config.ForWorker))
}

func TestSecretsFromFile(t *testing.T) {
	home := isolate(t)
	write(t, home, "secrets/nova.dsn", "nova:s3cret@tcp(db:3306)/nova?parseTime=true\n")
	p := write(t, home, "s.yaml", `
databases:
  nova_dsn_file: ~/secrets/nova.dsn
`)
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home,
		"STACKRUN_DATABASES_CINDER_DSN_FILE", filepath.Join(home, "secrets/nova.dsn"))})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "nova:s3cret@tcp(db:3306)/nova?parseTime=true", cfg.Databases.NovaDSN)
	assert.Equal(t, filepath.Join(home, "secrets/nova.dsn"), cfg.Databases.NovaDSNFile)
	assert.Equal(t, cfg.Databases.NovaDSN, cfg.Databases.CinderDSN)

	red := cfg.Redacted()
	assert.Equal(t, "nova:*****@tcp(db:3306)/nova?parseTime=true", red.Databases.NovaDSN)
	assert.Equal(t, "nova:s3cret@tcp(db:3306)/nova?parseTime=true", cfg.Databases.NovaDSN, "original untouched")
	out, err := yaml.Marshal(red)
	require.NoError(t, err)
	assert.NotContains(t, string(out), "s3cret")
	assert.Contains(t, string(out), "gate_timeout: 4h0m0s")
}

func TestSecretBothSetAndMissing(t *testing.T) {
	home := isolate(t)
	write(t, home, "nova.dsn", "x:y@tcp(h)/nova\n")
	p := write(t, home, "s.yaml", `
databases:
  nova_dsn: "a:b@tcp(h)/nova"
  nova_dsn_file: ~/nova.dsn
  cinder_dsn_file: ~/missing.dsn
`)
	_, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.Error(t, err)
	assert.ElementsMatch(t, []string{"databases.nova_dsn", "databases.cinder_dsn_file"}, problemKeys(t, err))
	assert.Contains(t, err.Error(), "databases.nova_dsn_file")
	assert.Contains(t, err.Error(), "missing.dsn")
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"u:p@tcp(h:3306)/db":         "u:*****@tcp(h:3306)/db",
		"u:p@ss:w/rd@tcp(h:3306)/db": "u:*****@tcp(h:3306)/db",
		"u@tcp(h:3306)/db":           "u@tcp(h:3306)/db",
		"/db":                        "/db",
		"":                           "",
	} {
		assert.Equal(t, want, config.RedactDSN(in), in)
	}
}

func TestRedactedIsDeepCopy(t *testing.T) {
	cfg := config.Default()
	cfg.Inventory["c1"] = config.Host{Address: "10.0.0.1", Roles: []string{"compute"}}
	red := cfg.Redacted()
	red.Inventory["c1"].Roles[0] = "changed"
	red.Commands["uptime"][0] = "changed"
	assert.Equal(t, "compute", cfg.Inventory["c1"].Roles[0])
	assert.Equal(t, "cat", cfg.Commands["uptime"][0])
}

func TestKeysAndEnvNames(t *testing.T) {
	keys := config.Keys()
	assert.True(t, slices.Contains(keys, "temporal.tls.server_name"))
	assert.True(t, slices.Contains(keys, "policy.two_person_gates"))
	assert.False(t, slices.Contains(keys, "inventory"), "maps are not env-settable")
	assert.Equal(t, "STACKRUN_TEMPORAL_TASK_QUEUE", config.EnvName("temporal.task_queue"))
}

func TestNovaRWDSNSeparateFromFileAndRedacted(t *testing.T) {
	home := isolate(t)
	write(t, home, "secrets/nova_rw.dsn", "nova_rw:wr1te@tcp(db:3306)/nova?parseTime=true\n")
	p := write(t, home, "s.yaml", `
databases:
  nova_dsn: "ro:r3ad@tcp(db:3306)/nova?parseTime=true"
  nova_rw_dsn_file: ~/secrets/nova_rw.dsn
`)
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "nova_rw:wr1te@tcp(db:3306)/nova?parseTime=true", cfg.Databases.NovaRWDSN)
	out, err := yaml.Marshal(cfg.Redacted())
	require.NoError(t, err)
	assert.NotContains(t, string(out), "wr1te")

	cfg.Databases.NovaRWDSN = cfg.Databases.NovaDSN
	err = cfg.Validate()
	require.Error(t, err)
	assert.Equal(t, []string{"databases.nova_rw_dsn"}, problemKeys(t, err))
	cfg.Databases.NovaRWDSN = "nonsense"
	assert.ErrorContains(t, cfg.Validate(), "databases.nova_rw_dsn")
}
