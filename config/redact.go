package config

import (
	"maps"
	"slices"
	"strings"

	"github.com/stackrun/stackrun/internal/infra/redact"
)

// Redacted returns a deep copy of the configuration safe to print (for
// `stackrun config show`): the passwords inside DSNs are masked. Paths of
// secret files are kept, since they are not secret.
func (c *Config) Redacted() Config {
	r := *c
	r.Databases.NovaDSN = RedactDSN(c.Databases.NovaDSN)
	r.Databases.NovaAPIDSN = RedactDSN(c.Databases.NovaAPIDSN)
	r.Databases.CinderDSN = RedactDSN(c.Databases.CinderDSN)
	r.Databases.NovaRWDSN = RedactDSN(c.Databases.NovaRWDSN)

	r.Inventory = make(map[string]Host, len(c.Inventory))
	for k, h := range c.Inventory {
		h.Roles = slices.Clone(h.Roles)
		h.Labels = maps.Clone(h.Labels)
		r.Inventory[k] = h
	}
	r.Roles = make(map[string]Role, len(c.Roles))
	for k, role := range c.Roles {
		r.Roles[k] = Role{Services: slices.Clone(role.Services)}
	}
	r.Commands = cloneArgvMap(c.Commands)
	r.RoleCommands = make(map[string]map[string][]string, len(c.RoleCommands))
	for k, m := range c.RoleCommands {
		r.RoleCommands[k] = cloneArgvMap(m)
	}
	r.Policy.Approvers = slices.Clone(c.Policy.Approvers)
	r.Policy.TwoPersonGates = slices.Clone(c.Policy.TwoPersonGates)
	r.Policy.GateApprovers = cloneArgvMap(c.Policy.GateApprovers)
	r.Chat = c.Chat.redacted()
	r.Checks.ReportsDSN = RedactDSN(c.Checks.ReportsDSN)
	// URLs may carry credentials (user:password@, a token in the query).
	r.Checks.TicketsURL = redact.URL(c.Checks.TicketsURL)
	r.Checks.Alertmanager.URL = redact.URL(c.Checks.Alertmanager.URL)
	r.Checks.FailureDomains = slices.Clone(c.Checks.FailureDomains)
	return r
}

func cloneArgvMap(m map[string][]string) map[string][]string {
	if m == nil {
		return nil
	}
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// RedactDSN masks the password of a go-sql-driver/mysql DSN
// ("user:pw@tcp(h:3306)/nova" -> "user:*****@tcp(h:3306)/nova"). It splits
// the DSN as the driver does: the password runs from the first ':' to the
// last '@' before the last '/'.
func RedactDSN(dsn string) string {
	slash := strings.LastIndex(dsn, "/")
	if slash < 0 {
		slash = len(dsn)
	}
	at := strings.LastIndex(dsn[:slash], "@")
	if at < 0 {
		return dsn
	}
	colon := strings.Index(dsn[:at], ":")
	if colon < 0 {
		return dsn
	}
	return dsn[:colon+1] + "*****" + dsn[at:]
}
