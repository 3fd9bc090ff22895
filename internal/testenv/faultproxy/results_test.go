package faultproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/tests/crash/results"
	"github.com/stackrun/stackrun/workflows"
)

// A workflow type names its runbook.
func TestRunbookOfType(t *testing.T) {
	for _, rb := range workflows.Runbooks {
		require.Equal(t, rb.Name, runbookOf(rb.Type))
		for _, old := range rb.Formerly {
			require.Equal(t, rb.Name, runbookOf(old), old)
		}
	}
	require.Equal(t, "host-lease", runbookOf("HostLease"))
}

// The proxy counts faults and retries per runbook from the worker's activity header and, with
// STACKRUN_RELIABILITY_DIR set, writes them on Close as faults-<test>.json; a proxy with forced
// faults (a scripted test that records its own figures) writes nothing.
func TestProxyWritesResultsPerRunbook(t *testing.T) {
	require.Equal(t, openstack.ActivityHeader, ActivityHeader)
	partsMu.Lock()
	clear(parts) // the names count per process: -count=2 must see the same ones
	partsMu.Unlock()
	dir := t.TempDir()
	t.Setenv("STACKRUN_RELIABILITY_DIR", dir)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()

	p := New(Options{Seed: 1, Rate: 1, Kinds: []Kind{Status503}})
	scripted := New(Options{Rate: 1, Kinds: []Kind{Status503}, Force: []Forced{{Method: http.MethodGet, Kind: Status503}}})
	second := New(Options{Rate: 0})
	u, err := p.Front(up.URL + "/x")
	require.NoError(t, err)
	send := func(typ, run, act string, attempt int) {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		require.NoError(t, err)
		if typ != "" {
			v := url.Values{"type": {typ}, "run": {run}, "activity": {act}, "attempt": {strconv.Itoa(attempt)}}
			req.Header.Set(ActivityHeader, v.Encode())
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		resp.Body.Close()
	}
	rs := workflows.RestartService.Type
	send(rs, "r1", "5", 1)
	send(rs, "r1", "5", 2)
	send(rs, "r1", "5", 2) // a read retried in place within attempt 2: one retry
	send(rs, "r1", "5", 3)
	send(workflows.Evacuate.Type, "e1", "7", 1)
	send("", "", "", 0) // outside an activity (the worker's first token)
	st := p.Stats()
	require.Equal(t, 6, st.Requests)
	require.Equal(t, map[string]RunbookStats{
		"restart-service": {Requests: 4, Faults: 4, Retries: 2},
		"evacuate":        {Requests: 1, Faults: 1},
	}, st.ByRunbook)

	p.Close()
	scripted.Close()
	second.Close()
	files, err := results.ReadAll(dir)
	require.NoError(t, err)
	require.Len(t, files, 2)
	byPart := map[string]results.File{}
	for _, f := range files {
		byPart[f.Part] = f
	}
	f := byPart["faults-TestProxyWritesResultsPerRunbook"]
	require.Equal(t, []results.Row{
		{Runbook: "evacuate", FaultsInjected: results.Int(1), Retries: results.Int(0)},
		{Runbook: "restart-service", FaultsInjected: results.Int(4), Retries: results.Int(2)},
	}, f.Rows)
	require.Empty(t, byPart["faults-TestProxyWritesResultsPerRunbook-2"].Rows, "the second proxy of the test: its own file, nothing proxied")
	_, err = os.Stat(filepath.Join(dir, "-.json"))
	require.True(t, os.IsNotExist(err))
}
