package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// EnvPrefix is the prefix of the environment variables that set keys:
// STACKRUN_TEMPORAL_ADDRESS sets temporal.address.
const EnvPrefix = "STACKRUN"

// EnvConfigFile names the configuration file when neither LoadOptions.Path
// nor --config does.
const EnvConfigFile = "STACKRUN_CONFIG"

// FileName is the name looked for in the default search locations.
const FileName = "stackrun.yaml"

// viper's key delimiter. Not ".", so that inventory host names may be FQDNs
// (compute1.example.org) without viper splitting them into nested keys.
const keyDelim = "::"

// LoadOptions says where Load looks.
type LoadOptions struct {
	// Path is the configuration file. When set (or given by --config in
	// Flags, or by $STACKRUN_CONFIG) the file must exist. When empty, the
	// default search is ./stackrun.yaml then ~/.config/stackrun/stackrun.yaml
	// ($XDG_CONFIG_HOME honoured), and no file at all means defaults.
	Path string

	// Flags, when not nil, is searched for the flags that BindFlags defines
	// (any subset); the ones the user set override file and environment.
	Flags *pflag.FlagSet

	// LookupEnv reads environment variables; nil means os.LookupEnv. Tests
	// pass MapEnv(...).
	LookupEnv func(string) (string, bool)
}

// MapEnv returns a LookupEnv over a fixed map, for tests.
func MapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// flagDef is one common flag and the key it sets.
type flagDef struct {
	name, key, usage string
	isBool           bool
}

var flagDefs = []flagDef{
	{name: "temporal-address", key: "temporal.address", usage: "Temporal frontend host:port (default " + DefaultTemporalAddress + ")"},
	{name: "namespace", key: "temporal.namespace", usage: "Temporal namespace (default " + DefaultNamespace + ")"},
	{name: "task-queue", key: "temporal.task_queue", usage: "Temporal task queue (default " + DefaultTaskQueue + ")"},
	{name: "temporal-tls", key: "temporal.tls.enabled", usage: "use TLS to reach Temporal", isBool: true},
	{name: "temporal-tls-ca-file", key: "temporal.tls.ca_file", usage: "CA bundle for the Temporal server certificate"},
	{name: "temporal-tls-cert-file", key: "temporal.tls.cert_file", usage: "client certificate for mTLS to Temporal"},
	{name: "temporal-tls-key-file", key: "temporal.tls.key_file", usage: "client key for mTLS to Temporal"},
	{name: "temporal-tls-server-name", key: "temporal.tls.server_name", usage: "TLS server name of the Temporal frontend"},
	{name: "cloud", key: "openstack.cloud", usage: "clouds.yaml entry (empty: OS_* variables)"},
	{name: "clouds-file", key: "openstack.clouds_file", usage: "explicit clouds.yaml path"},
	{name: "region", key: "openstack.region", usage: "OpenStack region"},
	{name: "compute-microversion", key: "openstack.compute_microversion", usage: "Nova API microversion (default " + DefaultComputeMicroversion + ", minimum 2.60)"},
}

// ConfigFlag is the flag BindFlags defines for the configuration file.
const ConfigFlag = "config"

// BindFlags defines the common persistent flags (--config, --temporal-address,
// --namespace, --task-queue, --temporal-tls*, --cloud, --clouds-file,
// --region, --compute-microversion) on fs. Pass the same set (or a command's
// Flags(), which includes inherited persistent flags) to Load. The flags have
// empty defaults so that only flags the user sets override file and env.
func BindFlags(fs *pflag.FlagSet) {
	if fs.Lookup(ConfigFlag) == nil {
		fs.String(ConfigFlag, "", "configuration file (default: $"+EnvConfigFile+", ./"+FileName+", ~/.config/stackrun/"+FileName+")")
	}
	for _, d := range flagDefs {
		if fs.Lookup(d.name) != nil {
			continue
		}
		if d.isBool {
			fs.Bool(d.name, false, d.usage)
		} else {
			fs.String(d.name, "", d.usage)
		}
	}
}

// FlagKeys returns the mapping from the flags BindFlags defines to the keys
// they set (--config excepted).
func FlagKeys() map[string]string {
	m := make(map[string]string, len(flagDefs))
	for _, d := range flagDefs {
		m[d.name] = d.key
	}
	return m
}

// EnvName returns the environment variable that sets key
// ("temporal.task_queue" -> "STACKRUN_TEMPORAL_TASK_QUEUE").
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Keys returns every key that the environment and defaults can set: the
// fixed (non-map) keys of the schema, sorted as in the struct.
func Keys() []string {
	var out []string
	for _, l := range schemaLeaves(reflect.TypeFor[Config](), "") {
		if settable(l.typ) {
			out = append(out, l.key)
		}
	}
	return out
}

// Load reads the configuration: defaults, then the YAML file, then STACKRUN_*
// environment variables, then the flags the user set. It fails on a missing
// explicitly named file, on unreadable YAML, on unknown keys (a typo must not
// pass silently), on values of the wrong type and on unreadable secret files,
// naming the key each time. It does not run Validate; callers do, with the
// purpose they have (see ValidateFor).
func Load(opts LoadOptions) (*Config, error) {
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}

	path, err := findFile(opts, lookup)
	if err != nil {
		return nil, err
	}

	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelim))
	v.SetConfigType("yaml")

	// Defaults for every fixed key, from Default().
	def := reflect.ValueOf(Default()).Elem()
	leaves := schemaLeaves(def.Type(), "")
	for _, l := range leaves {
		if settable(l.typ) {
			v.SetDefault(vkey(l.key), fieldByKey(def, l.key).Interface())
		}
	}

	// The file.
	var fileMap map[string]any
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("config: file %s: not found", path)
			}
			return nil, fmt.Errorf("config: file %s: %w", path, err)
		}
		if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("config: file %s: %w", path, err)
		}
		// Checked on its own (not through viper's merged view, which drops
		// empty sections), so that every unknown key is reported.
		if err := yaml.Unmarshal(b, &fileMap); err != nil {
			return nil, fmt.Errorf("config: file %s: %w", path, err)
		}
	}

	// The environment: every fixed key has its variable, whether or not the
	// file mentions the key. Merged as a layer above the file; flags win.
	sources := map[string]string{}
	envLayer := map[string]any{}
	for _, l := range leaves {
		if !settable(l.typ) {
			continue
		}
		name := EnvName(l.key)
		val, ok := lookup(name)
		if !ok || val == "" {
			continue
		}
		var x any = val
		if l.typ.Kind() == reflect.Slice {
			x = splitList(val)
		}
		setNested(envLayer, strings.Split(l.key, "."), x)
		sources[l.key] = "from $" + name
	}
	if len(envLayer) > 0 {
		if err := v.MergeConfigMap(envLayer); err != nil {
			return nil, fmt.Errorf("config: environment: %w", err)
		}
	}

	// Flags.
	if opts.Flags != nil {
		for _, d := range flagDefs {
			f := opts.Flags.Lookup(d.name)
			if f == nil {
				continue
			}
			if err := v.BindPFlag(vkey(d.key), f); err != nil {
				return nil, fmt.Errorf("config: flag --%s: %w", d.name, err)
			}
			if f.Changed {
				sources[d.key] = "from --" + d.name
			}
		}
	}

	// Unknown keys and wrong types, every one named. Defaults are right by
	// construction and flags are strings or bools, so the file and the
	// environment are what can be wrong.
	var probs Problems
	checkValue(&probs, "", fileMap, reflect.TypeFor[Config](), nil, "in "+path)
	checkValue(&probs, "", envLayer, reflect.TypeFor[Config](), sources, "")
	if len(probs) > 0 {
		return nil, probs
	}

	cfg := &Config{}
	if err := v.UnmarshalExact(cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg.File = path
	cfg.fill()

	home := homeDir(lookup)
	cfg.expandPaths(home)
	if ps := cfg.readSecrets(); len(ps) > 0 {
		return nil, ps
	}
	return cfg, nil
}

// findFile returns the file to read ("" for none). A file named explicitly is
// returned whether or not it exists (reading it then fails, naming it); the
// default locations are only returned when they exist.
func findFile(opts LoadOptions, lookup func(string) (string, bool)) (string, error) {
	home := homeDir(lookup)
	if p := opts.Path; p != "" {
		return expandTilde(p, home), nil
	}
	if opts.Flags != nil {
		if f := opts.Flags.Lookup(ConfigFlag); f != nil && f.Value.String() != "" {
			return expandTilde(f.Value.String(), home), nil
		}
	}
	if p, ok := lookup(EnvConfigFile); ok && p != "" {
		return expandTilde(p, home), nil
	}
	var candidates []string
	candidates = append(candidates, FileName)
	if dir := userConfigDir(lookup, home); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "stackrun", FileName))
	}
	for _, c := range candidates {
		st, err := os.Stat(c)
		if err == nil && !st.IsDir() {
			return c, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("config: file %s: %w", c, err)
		}
	}
	return "", nil
}

func homeDir(lookup func(string) (string, bool)) string {
	if h, ok := lookup("HOME"); ok && h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

func userConfigDir(lookup func(string) (string, bool), home string) string {
	if x, ok := lookup("XDG_CONFIG_HOME"); ok && x != "" {
		return x
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".config")
}

// expandTilde turns "~" and "~/x" into paths under home.
func expandTilde(p, home string) string {
	if home == "" {
		return p
	}
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}

// fill completes what viper defaults cannot: map-valued defaults.
func (c *Config) fill() {
	if c.Inventory == nil {
		c.Inventory = map[string]Host{}
	}
	if c.Roles == nil {
		c.Roles = map[string]Role{}
	}
	if c.Commands == nil {
		c.Commands = map[string][]string{}
	}
	for name, argv := range DefaultCommands() {
		if _, ok := c.Commands[name]; !ok {
			c.Commands[name] = argv
		}
	}
	if c.RoleCommands == nil {
		c.RoleCommands = map[string]map[string][]string{}
	}
	if c.Policy.GateApprovers == nil {
		c.Policy.GateApprovers = map[string][]string{}
	}
	if c.Chat.Roles == nil {
		c.Chat.Roles = map[string]ChatRole{}
	}
	if c.Swift.Nodes == nil {
		c.Swift.Nodes = map[string]SwiftNode{}
	}
}

// expandPaths expands "~" in the keys that name local files.
func (c *Config) expandPaths(home string) {
	for _, p := range []*string{
		&c.Temporal.TLS.CAFile, &c.Temporal.TLS.CertFile, &c.Temporal.TLS.KeyFile,
		&c.OpenStack.CloudsFile,
		&c.Databases.NovaDSNFile, &c.Databases.NovaAPIDSNFile, &c.Databases.CinderDSNFile, &c.Databases.NovaRWDSNFile,
		&c.SSH.KeyFile, &c.SSH.KnownHostsFile,
		&c.Worker.AuditLog, &c.Checks.ReportsDSNFile,
		&c.Chat.WebhookURLFile, &c.Chat.Slack.SigningSecretFile, &c.Chat.Slack.BotTokenFile,
		&c.Chat.Slack.WebhookURLFile, &c.Chat.Mattermost.TokenFile, &c.Chat.Mattermost.WebhookURLFile,
		&c.Trust.KeysFile, &c.Trust.SigningKeyFile, &c.Trust.ChatGateway.PrivateKeyFile,
	} {
		*p = expandTilde(*p, home)
	}
}

// readSecrets fills each secret (DSNs, chat secrets) from its *_file key.
func (c *Config) readSecrets() Problems {
	var probs Problems
	for _, s := range []struct {
		key   string
		value *string
		file  string
	}{
		{"databases.nova_dsn", &c.Databases.NovaDSN, c.Databases.NovaDSNFile},
		{"databases.nova_api_dsn", &c.Databases.NovaAPIDSN, c.Databases.NovaAPIDSNFile},
		{"databases.cinder_dsn", &c.Databases.CinderDSN, c.Databases.CinderDSNFile},
		{"databases.nova_rw_dsn", &c.Databases.NovaRWDSN, c.Databases.NovaRWDSNFile},
		{"chat.webhook_url", &c.Chat.WebhookURL, c.Chat.WebhookURLFile},
		{"checks.reports_dsn", &c.Checks.ReportsDSN, c.Checks.ReportsDSNFile},
		{"chat.slack.signing_secret", &c.Chat.Slack.SigningSecret, c.Chat.Slack.SigningSecretFile},
		{"chat.slack.bot_token", &c.Chat.Slack.BotToken, c.Chat.Slack.BotTokenFile},
		{"chat.slack.webhook_url", &c.Chat.Slack.WebhookURL, c.Chat.Slack.WebhookURLFile},
		{"chat.mattermost.token", &c.Chat.Mattermost.Token, c.Chat.Mattermost.TokenFile},
		{"chat.mattermost.webhook_url", &c.Chat.Mattermost.WebhookURL, c.Chat.Mattermost.WebhookURLFile},
	} {
		if s.file == "" {
			continue
		}
		if *s.value != "" {
			probs = append(probs, Problem{Key: s.key, Message: "set either " + s.key + " or " + s.key + "_file, not both"})
			continue
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			probs = append(probs, Problem{Key: s.key + "_file", Message: fmt.Sprintf("read secret: %v", err)})
			continue
		}
		secret := strings.TrimRight(string(b), "\r\n")
		if secret == "" {
			probs = append(probs, Problem{Key: s.key + "_file", Message: fmt.Sprintf("secret file %s is empty", s.file)})
			continue
		}
		*s.value = secret
	}
	return probs
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func setNested(m map[string]any, path []string, val any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = val
}

func vkey(key string) string { return strings.ReplaceAll(key, ".", keyDelim) }
