package activities

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	assert.Contains(t, strings.Join(f.ran, "\n"), "systemctl start nova-compute")

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
