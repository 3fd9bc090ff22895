package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// migratingNova is a fixture Nova whose live migration of s1 (compute1 → compute2) runs until it
// is force-completed, aborted, or its remaining memory reaches zero. step is what each look at
// the migration's progress takes off memory_remaining_bytes (0: it never converges). The fake
// driver of the lab cannot show this: it reports no progress counters and finishes at once.
type migratingNova struct {
	mu        sync.Mutex
	host      string
	migrating bool
	remaining int64
	step      int64
	calls     []string
}

const gib = int64(1) << 30

func newMigratingNova(t *testing.T, step int64) (*migratingNova, *openstack.Clients) {
	n := &migratingNova{host: "compute1", remaining: 2 * gib, step: step}
	f := th.SetupHTTP()
	t.Cleanup(f.Teardown)
	js := func(w http.ResponseWriter, code int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
	f.Mux.HandleFunc("/servers/s1", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		status, task := "ACTIVE", ""
		if n.migrating {
			status, task = "MIGRATING", "migrating"
		}
		js(w, 200, fmt.Sprintf(`{"server": {"id": "s1", "name": "db-1", "status": %q, "OS-EXT-STS:task_state": %q, "tenant_id": "p1",
		  "OS-EXT-SRV-ATTR:host": %q, "OS-EXT-STS:power_state": 1, "flavor": {"vcpus": 2, "ram": 8192, "disk": 0}}}`, status, task, n.host))
	})
	f.Mux.HandleFunc("/servers/s1/action", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		require.NoError(t, json.NewDecoder(r.Body).Decode(&body))
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := body["os-migrateLive"]; !ok {
			t.Errorf("unexpected action %v", body)
		}
		n.calls = append(n.calls, "live-migrate")
		n.migrating = true
		w.WriteHeader(202)
	})
	f.Mux.HandleFunc("/os-migrations", func(w http.ResponseWriter, r *http.Request) { js(w, 200, `{"migrations": []}`) })
	f.Mux.HandleFunc("/servers/s1/migrations", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if !n.migrating {
			js(w, 200, `{"migrations": []}`)
			return
		}
		n.remaining = max(0, n.remaining-n.step)
		if n.remaining == 0 { // converged: the switch-over
			n.migrating, n.host = false, "compute2"
		}
		js(w, 200, fmt.Sprintf(`{"migrations": [{"id": 12, "uuid": "m-12", "status": "running", "server_uuid": "s1",
		  "source_compute": "compute1", "dest_compute": "compute2", "memory_total_bytes": %d, "memory_processed_bytes": 0,
		  "memory_remaining_bytes": %d, "disk_total_bytes": 0, "disk_processed_bytes": 0, "disk_remaining_bytes": 0,
		  "created_at": "2026-05-01T10:00:00.000000", "updated_at": "2026-05-01T10:00:01.000000"}]}`, 8*gib, n.remaining))
	})
	f.Mux.HandleFunc("/servers/s1/migrations/12", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodDelete)
		n.mu.Lock()
		defer n.mu.Unlock()
		n.calls = append(n.calls, "abort")
		n.migrating = false // back on the source
		w.WriteHeader(202)
	})
	f.Mux.HandleFunc("/servers/s1/migrations/12/action", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodPost)
		var body map[string]any
		require.NoError(t, json.NewDecoder(r.Body).Decode(&body))
		_, ok := body["force_complete"]
		require.True(t, ok, "%v", body)
		n.mu.Lock()
		defer n.mu.Unlock()
		n.calls = append(n.calls, "force-complete")
		n.migrating, n.host = false, "compute2" // the guest paused, the copy caught up
		w.WriteHeader(202)
	})
	c := fakeclient.ServiceClient(f)
	c.Type, c.Microversion = "compute", "2.90"
	return n, &openstack.Clients{Compute: c}
}

func (n *migratingNova) sent() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.calls...)
}

func liveReq(policy string) activities.MoveRequest {
	return activities.MoveRequest{ID: "s1", Source: "compute1", Target: "compute2", Kind: activities.MoveLive, Timeout: time.Minute,
		Stall: 50 * time.Millisecond, NotConverging: policy}
}

func moveCompute(cl *openstack.Clients) *activities.Compute {
	return &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, PollInterval: 2 * time.Millisecond}
}

// Policy abort: the activity aborts the migration that makes no progress, long before the move's
// deadline (Nova's 800 s per GiB), and fails so that the step retries per policy, then stalls.
func TestMoveInstanceAbortsALiveMigrationThatDoesNotConverge(t *testing.T) {
	n, cl := newMigratingNova(t, 0)
	c := moveCompute(cl)
	_, err := activityEnv(t, c).ExecuteActivity(c.MoveInstance, liveReq("abort"))
	require.Error(t, err)
	assert.Equal(t, activities.ErrTypeNotConverging+"Aborted", errType(err), "%v", err)
	assert.Contains(t, err.Error(), "does not converge: 2048 MiB remaining")
	assert.Equal(t, []string{"live-migrate", "abort"}, n.sent())
}

// Policy force-complete: the activity does not pause the guest itself; it fails (not retried)
// for the workflow's gate. After the force-complete, the move is followed to its end.
func TestMoveInstanceLeavesForceCompleteToTheGate(t *testing.T) {
	n, cl := newMigratingNova(t, 0)
	c := moveCompute(cl)
	env := activityEnv(t, c)
	_, err := env.ExecuteActivity(c.MoveInstance, liveReq("force-complete"))
	require.Error(t, err)
	assert.Equal(t, activities.ErrTypeNotConverging, errType(err), "%v", err)
	var app *temporal.ApplicationError
	require.True(t, errors.As(err, &app))
	assert.True(t, app.NonRetryable())
	assert.Equal(t, []string{"live-migrate"}, n.sent(), "nothing forced, nothing aborted")

	val, err := env.ExecuteActivity(c.ForceCompleteMigration, "s1")
	require.NoError(t, err)
	var did string
	require.NoError(t, val.Get(&did))
	assert.Contains(t, did, "migration 12 force-completed")

	req := liveReq("force-complete")
	req.ForceCompleted = true
	val, err = env.ExecuteActivity(c.MoveInstance, req)
	require.NoError(t, err)
	var res activities.MoveResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, "compute2", res.To)
	assert.Equal(t, []string{"live-migrate", "force-complete"}, n.sent(), "no second migration")

	// Nothing in progress any more: the force is a no-op, and so is an abort.
	val, err = env.ExecuteActivity(c.ForceCompleteMigration, "s1")
	require.NoError(t, err)
	require.NoError(t, val.Get(&did))
	assert.Contains(t, did, "nothing to force")
}

// A migration whose remaining memory keeps shrinking is left alone until it completes.
func TestMoveInstanceLetsAConvergingMigrationFinish(t *testing.T) {
	n, cl := newMigratingNova(t, 2*gib/100) // 1 % of what is left at the start per look: 100 looks
	c := moveCompute(cl)
	val, err := activityEnv(t, c).ExecuteActivity(c.MoveInstance, liveReq("abort"))
	require.NoError(t, err)
	var res activities.MoveResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, "compute2", res.To)
	assert.Equal(t, []string{"live-migrate"}, n.sent())
}
