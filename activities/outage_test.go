package activities

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// mariadb-check's own words: OK lines, and a table followed by its messages.
func TestParseDBCheck(t *testing.T) {
	out := `keystone.access_rule                               OK
keystone.project                                   OK
nova.instances
Warning  : InnoDB: Index 'uuid' contains 5 entries, should be 6.
error    : Corrupt
nova.migrations
note     : The storage engine for the table doesn't support check
nova_api.cell_mappings                             OK
`
	tables, problems := ParseDBCheck(out)
	assert.Equal(t, 5, tables)
	require.Len(t, problems, 1)
	assert.Equal(t, "nova.instances: warning: InnoDB: Index 'uuid' contains 5 entries, should be 6.; error: Corrupt", problems[0])
	tables, problems = ParseDBCheck("glance.images   OK\n")
	assert.Equal(t, 1, tables)
	assert.Empty(t, problems)
}

// Start only what does not run; the answer says which was which. A port verification dials the
// host's inventory address.
func TestOutageStartsOnlyWhatIsDownAndVerifiesAPort(t *testing.T) {
	f := &fakeRunner{running: map[string]bool{"nova-compute": true}}
	h := newHosts(t, f)
	o := &Outage{Hosts: h}
	s := OutageService{Host: "compute1", Role: "compute", Service: "nova-compute", Verify: []string{"process"}}
	st, err := o.OutageStartService(context.Background(), s)
	require.NoError(t, err)
	assert.True(t, st.AlreadyUp)
	assert.Equal(t, []string{"compute1: systemctl is-active nova-compute"}, f.ran)

	f.ran, f.running["nova-compute"] = nil, false
	st, err = o.OutageStartService(context.Background(), s)
	require.NoError(t, err)
	assert.False(t, st.AlreadyUp)
	assert.Equal(t, []string{"compute1: systemctl is-active nova-compute", "compute1: systemctl start nova-compute"}, f.ran,
		"the status, then the start: nothing asked twice (the verification checks the process)")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	h.Inventory["compute1"] = InventoryHost{Address: "127.0.0.1", Roles: []string{"compute"}}
	s.Verify = []string{"process", "port:" + strconv.Itoa(port)}
	v, err := o.OutageVerifyService(context.Background(), OutageVerifyRequest{OutageService: s, Since: time.Now()})
	require.NoError(t, err)
	assert.Len(t, v.Evidence, 2)
	require.NoError(t, ln.Close())
	_, err = o.OutageVerifyService(context.Background(), OutageVerifyRequest{OutageService: s})
	require.ErrorContains(t, err, "port does not accept connections")
}

// dbRunner answers db_list and db_check like mariadb and mariadb-check would.
type dbRunner struct {
	mu     sync.Mutex
	checks [][]string
	tables map[string]string // schema -> mariadb-check output
}

func (d *dbRunner) Run(_ context.Context, _ remote.Host, cmd remote.Command) (remote.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cmd.Argv[0] == "mariadb" {
		return remote.Result{Stdout: "information_schema\nkeystone\nnova\nmysql\n"}, nil
	}
	i := slices.Index(cmd.Argv, "--databases")
	dbs := cmd.Argv[i+1:]
	d.checks = append(d.checks, dbs)
	var out strings.Builder
	for _, db := range dbs {
		out.WriteString(d.tables[db])
	}
	return remote.Result{Stdout: out.String()}, nil
}

// Each schema the server has is checked (one mariadb-check each, side by side), every table
// counted, every table not OK a problem; a configured schema the server lacks is named.
func TestOutageDBIntegrityChecksEachSchema(t *testing.T) {
	d := &dbRunner{tables: map[string]string{
		"keystone": "keystone.project   OK\nkeystone.user   OK\n",
		"nova":     "nova.instances\nerror    : Corrupt\nnova.migrations   OK\n",
	}}
	h := newHosts(t, d)
	h.Inventory["controller"] = InventoryHost{Address: "10.0.0.1", Roles: []string{"controller"}}
	o := &Outage{Hosts: h, DatabaseHost: "controller", DefaultsFile: "/etc/my.cnf", Databases: []string{"keystone", "nova", "glance"}}
	res, err := o.OutageDBIntegrity(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"keystone", "nova"}, res.Databases)
	assert.Equal(t, []string{"glance"}, res.Missing)
	assert.Equal(t, 4, res.Tables)
	assert.Equal(t, []string{"nova.instances: error: Corrupt"}, res.Problems)
	assert.ElementsMatch(t, [][]string{{"keystone"}, {"nova"}}, d.checks)
	assert.Contains(t, res.Command, "'mariadb-check' '--defaults-file=/etc/my.cnf' '--check' '--databases' 'keystone'")
	assert.Contains(t, res.Command, "'--databases' 'nova'")
}
