package openstack_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServerMigrationsReadsProgress(t *testing.T) {
	f := fake(t)
	f.Mux.HandleFunc("/servers/a/migrations", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodGet)
		th.TestHeader(t, r, "X-OpenStack-Nova-API-Version", "2.90")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"migrations": [{"id": 42, "uuid": "m-42", "status": "running", "server_uuid": "a",
		  "source_compute": "compute1", "dest_compute": "compute2",
		  "memory_total_bytes": 8589934592, "memory_processed_bytes": 6442450944, "memory_remaining_bytes": 2147483648,
		  "disk_total_bytes": 0, "disk_processed_bytes": 0, "disk_remaining_bytes": 0,
		  "created_at": "2026-05-01T10:00:00.000000", "updated_at": "2026-05-01T10:02:30.000000"}]}`)
	})
	list, err := serviceClients(f).ServerMigrations(context.Background(), "a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	m := list[0]
	assert.Equal(t, int64(42), m.ID)
	assert.Equal(t, "m-42", m.UUID)
	assert.Equal(t, int64(2147483648), m.MemoryRemaining)
	assert.Equal(t, int64(8589934592), m.MemoryTotal)
	assert.Equal(t, int64(2147483648), m.Remaining())
	assert.Equal(t, time.Date(2026, 5, 1, 10, 2, 30, 0, time.UTC), m.UpdatedAt)
}

func TestForceCompleteLiveMigrationBody(t *testing.T) {
	f := fake(t)
	var body string
	f.Mux.HandleFunc("/servers/a/migrations/42/action", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodPost)
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		w.WriteHeader(http.StatusAccepted)
	})
	f.Mux.HandleFunc("/servers/b/migrations/7/action", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"conflictingRequest": {"code": 409, "message": "Migration 7 state of instance b is completed. Cannot force complete"}}`)
	})
	c := serviceClients(f)
	require.NoError(t, c.ForceCompleteLiveMigration(context.Background(), "a", 42))
	assert.JSONEq(t, `{"force_complete": null}`, body)
	err := c.ForceCompleteLiveMigration(context.Background(), "b", 7)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "force-complete migration 7 of server b")
}

func TestHypervisorRuns(t *testing.T) {
	f := fake(t)
	f.Mux.HandleFunc("/servers/a/diagnostics", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodGet)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"cpu0_time": 17300000000, "memory": 524288}`)
	})
	f.Mux.HandleFunc("/servers/b/diagnostics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"conflictingRequest": {"code": 409, "message": "Cannot 'get_diagnostics' instance b while it is in power state running"}}`)
	})
	f.Mux.HandleFunc("/servers/c/diagnostics", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	cl := serviceClients(f)
	ok, _, err := cl.HypervisorRuns(context.Background(), "a")
	require.NoError(t, err)
	assert.True(t, ok)
	ok, why, err := cl.HypervisorRuns(context.Background(), "b")
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Contains(t, why, "does not run it")
	_, _, err = cl.HypervisorRuns(context.Background(), "c")
	assert.Error(t, err, "a compute that does not answer is an error, not a lost instance")
}
