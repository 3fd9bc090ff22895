package config_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/testenv/operators"
)

func TestTrustSection(t *testing.T) {
	home := isolate(t)
	alice, bob, carol, gw := operators.New(t, "alice"), operators.New(t, "bob"), operators.New(t, "carol"), operators.New(t, "chat")
	write(t, home, "keys", fmt.Sprintf("# rotated keys\ncarol %s\n\n", carol.AuthorizedKey()))
	gwFile := gw.WriteKeyFile(t, home)
	p := write(t, home, "stackrun.yaml", fmt.Sprintf(`
policy:
  approvers: [alice, bob, carol]
trust:
  operators:
    - {name: bob, keys: [%q]}
    - {name: alice, keys: [%q]}
  keys_file: ~/keys
  chat_gateway:
    public_key: %q
    private_key_file: %s
    vouch:
      - {operators: [alice], gates: [approve-restart], runbooks: [restart-service]}
  unsigned_gates: [maintenance-done]
  max_signature_age: 3m
chat:
  mattermost: {token: t}
  users: [{operator: alice, mattermost: u1, roles: [all]}]
  roles: {all: {gates: ["*"]}}
`, bob.AuthorizedKey(), alice.AuthorizedKey(), gw.AuthorizedKey(), gwFile))
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.NoError(t, cfg.ValidateFor(config.ForChat))
	pol, err := cfg.KeyPolicy()
	require.NoError(t, err)
	var names []string
	for _, o := range pol.Operators {
		names = append(names, o.Name)
	}
	assert.Equal(t, []string{"alice", "bob", "carol"}, names, "sorted, the keys file included")
	assert.Equal(t, carol.Fingerprint(), pol.KeysOf("carol")[0].Fingerprint)
	assert.Equal(t, 3*time.Minute, pol.MaxAge)
	assert.Equal(t, []string{"maintenance-done"}, pol.UnsignedGates)
	require.Len(t, pol.Gateways, 1)
	assert.Equal(t, gw.Fingerprint(), pol.Gateways[0].Key.Fingerprint)

	// The policy verifies what the keys sign.
	st := trust.Statement{Kind: trust.KindGate, WorkflowID: "w", RunID: "r", Name: "approve-restart", Outcome: "approve", Operator: "carol"}
	_, err = pol.Verify(trust.Check{Statement: st, Signature: carol.Sign(t, st), Now: time.Now()})
	require.NoError(t, err)
	st.Operator, st.ChatUser = "alice", "mattermost:u1"
	_, err = pol.Verify(trust.Check{Statement: st, Signature: gw.Sign(t, st), Now: time.Now()})
	require.NoError(t, err, "the gateway vouches for alice on approve-restart")

	// The environment sets the unsigned gates.
	cfg, err = config.Load(config.LoadOptions{Path: p, LookupEnv: env(home, "STACKRUN_TRUST_UNSIGNED_GATES", "approve-restart")})
	require.NoError(t, err)
	assert.Equal(t, []string{"approve-restart"}, cfg.Trust.UnsignedGates)
}

func TestTrustDefaults(t *testing.T) {
	home := isolate(t)
	cfg, err := config.Load(config.LoadOptions{LookupEnv: env(home)})
	require.NoError(t, err)
	assert.Equal(t, config.DefaultMaxSignatureAge, cfg.Trust.MaxSignatureAge)
	assert.Empty(t, cfg.Trust.UnsignedGates, "no gate is decided unsigned by default")
	pol, err := cfg.KeyPolicy()
	require.NoError(t, err)
	assert.Empty(t, pol.Operators, "no keys: every signed decision is refused")
	for _, g := range []string{"approve-plan", "approve-ring-change", "overwrite-disk", "confirm-host-dead", "disk-replaced", "db-rewrite", "data-access", "canary-ok", "start-instances"} {
		assert.True(t, slices.Contains(cfg.Policy.TwoPersonGates, g), "%s is a two-person gate by default", g)
	}
}

func TestTrustValidation(t *testing.T) {
	home := isolate(t)
	alice, gw := operators.New(t, "alice"), operators.New(t, "chat")
	write(t, home, "keys", "not-a-line\nbob ssh-rsa AAAAB3NzaC1yc2E bob\n")
	p := write(t, home, "stackrun.yaml", fmt.Sprintf(`
policy:
  approvers: [alice, dave]
trust:
  operators:
    - {name: alice, keys: [%[1]q]}
    - {name: "bad name", keys: [%[1]q]}
    - {name: eve, keys: [%[1]q]}
    - {name: frank, keys: []}
  keys_file: ~/keys
  chat_gateway:
    public_key: %[1]q
    vouch:
      - {operators: [], gates: []}
  unsigned_gates: [approve-plan, "*"]
  max_signature_age: 48h
`, alice.AuthorizedKey()))
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	keys := problemKeys(t, cfg.Validate())
	for _, k := range []string{
		"trust.operators[1].name",               // not an operator name
		"trust.operators[2].keys[0]",            // alice's key listed for eve
		"trust.operators[3].keys",               // no key
		"trust.keys_file line 1",                // no key on the line
		"trust.keys_file line 2",                // RSA
		"trust.chat_gateway.public_key",         // an operator's key
		"trust.chat_gateway.vouch[0].operators", // nobody
		"trust.chat_gateway.vouch[0]",           // nothing
		"trust.unsigned_gates[0]",               // a two-person gate
		"trust.unsigned_gates[1]",               // "*"
		"trust.max_signature_age",               // too long
		"policy.approvers[1]",                   // dave has no key
	} {
		assert.Contains(t, keys, k)
	}
	assert.NotContains(t, keys, "policy.approvers[0]", "alice has a key")
	_ = gw

	// The gateway needs its private key file (chat.GatewayKey checks it matches the public key).
	p = write(t, home, "chat.yaml", fmt.Sprintf(`
trust:
  chat_gateway: {public_key: %q, private_key_file: %s}
chat:
  mattermost: {token: t}
  users: [{operator: alice, mattermost: u1, roles: [all]}]
  roles: {all: {gates: ["*"]}}
`, gw.AuthorizedKey(), home+"/no-such-key"))
	cfg, err = config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate(), "the CLI does not read the gateway's private key")
	assert.Equal(t, []string{"trust.chat_gateway.private_key_file"}, problemKeys(t, cfg.ValidateFor(config.ForChat)))
}

// `stackrun config show` prints Redacted(): URLs with credentials are masked there too.
func TestRedactedMasksURLCredentials(t *testing.T) {
	home := isolate(t)
	p := write(t, home, "stackrun.yaml", `
checks:
  tickets_url: https://ops:hunter22@tickets.example/api/open?token=s3cr3tvalue
  alertmanager: {url: "https://am:pw1234@alerts.example:9093"}
chat:
  web_ui_url: https://ui.example/?auth=uitoken99
`)
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	r := cfg.Redacted()
	out := fmt.Sprintf("%+v", r)
	for _, secret := range []string{"hunter22", "s3cr3tvalue", "pw1234", "uitoken99"} {
		assert.NotContains(t, out, secret)
	}
	assert.Equal(t, "https://ops:*****@tickets.example/api/open?token=*****", r.Checks.TicketsURL)
	assert.Equal(t, "https://am:*****@alerts.example:9093", r.Checks.Alertmanager.URL)
	assert.Contains(t, cfg.Checks.TicketsURL, "hunter22", "redaction copies")
}
