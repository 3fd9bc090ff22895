package activities_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// lostAnswerNova carries out s1's live migration (compute1 → compute2, or back onto compute1
// when fails) and then drops the connection instead of answering: the "lost" 202 of a proxy
// or load balancer that failed after Nova accepted the request. Its migration record stays.
type lostAnswerNova struct {
	mu         sync.Mutex
	host       string
	fails      bool
	posts      int
	migrations []string // records, JSON
}

func newLostAnswerNova(t *testing.T, fails bool, earlier ...string) (*lostAnswerNova, *openstack.Clients) {
	n := &lostAnswerNova{host: "compute1", fails: fails, migrations: earlier}
	f := th.SetupHTTP()
	t.Cleanup(f.Teardown)
	f.Mux.HandleFunc("/servers/s1", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"server": {"id": "s1", "name": "db-1", "status": "ACTIVE", "OS-EXT-STS:task_state": "", "tenant_id": "p1",
		  "OS-EXT-SRV-ATTR:host": %q, "OS-EXT-STS:power_state": 1, "flavor": {"vcpus": 1, "ram": 512, "disk": 0}}}`, n.host)
	})
	f.Mux.HandleFunc("/servers/s1/action", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.posts++
		status := "completed"
		if n.fails {
			status = "error"
		} else {
			n.host = "compute2"
		}
		n.migrations = append(n.migrations, migrationJSON(10+n.posts, "compute1", "compute2", status, time.Now()))
		n.mu.Unlock()
		dropAnswer(t, w)
	})
	f.Mux.HandleFunc("/os-migrations", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"migrations": [%s]}`, strings.Join(n.migrations, ","))
	})
	f.Mux.HandleFunc("/servers/s1/migrations", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"migrations": []}`)
	})
	c := fakeclient.ServiceClient(f)
	c.Type, c.Microversion = "compute", "2.90"
	return n, &openstack.Clients{Compute: c}
}

// dropAnswer closes the connection instead of answering: the request was carried out, its
// answer is lost.
func dropAnswer(t *testing.T, w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	require.NoError(t, err)
	_ = conn.Close()
}

func migrationJSON(id int, from, to, status string, at time.Time) string {
	ts := at.UTC().Format("2006-01-02T15:04:05.000000")
	return fmt.Sprintf(`{"id": %d, "uuid": "m-%d", "status": %q, "instance_uuid": "s1", "migration_type": "live-migration",
	  "source_compute": %q, "dest_compute": %q, "created_at": %q, "updated_at": %q}`, id, id, status, from, to, ts, ts)
}

func (n *lostAnswerNova) sentPosts() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.posts
}

// The retry after a lost answer finds the finished move by its migration record: reported as
// this step's move, not as "already moved by someone", and not requested twice.
func TestMoveInstanceLostAnswerMoveDoneIsOurs(t *testing.T) {
	n, cl := newLostAnswerNova(t, false)
	c := moveCompute(cl)
	req := activities.MoveRequest{ID: "s1", Source: "compute1", Target: "compute2", Kind: activities.MoveLive, Timeout: time.Minute}
	_, err := activityEnv(t, c).ExecuteActivity(c.MoveInstance, req)
	require.Error(t, err, "the first attempt lost Nova's answer")
	v, err := retried(t, c).ExecuteActivity(c.MoveInstance, req)
	require.NoError(t, err)
	var res activities.MoveResult
	require.NoError(t, v.Get(&res))
	assert.Equal(t, "compute2", res.To)
	assert.True(t, res.Started, "the move is this step's: %+v", res)
	assert.False(t, res.AlreadyMoved, "%+v", res)
	assert.Equal(t, "m-11", res.Migration)
	assert.Equal(t, 1, n.sentPosts(), "requested once")
}

// The dangerous case: the lost request's migration failed and the instance is idle on its source
// again. The retry must not send a second migration; the step fails with the record's status.
func TestMoveInstanceLostAnswerFailedMoveIsNotRepeated(t *testing.T) {
	n, cl := newLostAnswerNova(t, true)
	c := moveCompute(cl)
	req := activities.MoveRequest{ID: "s1", Source: "compute1", Target: "compute2", Kind: activities.MoveLive, Timeout: time.Minute}
	_, err := activityEnv(t, c).ExecuteActivity(c.MoveInstance, req)
	require.Error(t, err)
	_, err = retried(t, c).ExecuteActivity(c.MoveInstance, req)
	require.Error(t, err)
	assert.Equal(t, "MoveFailed", errType(err), "%v", err)
	assert.Contains(t, err.Error(), "m-11 error")
	assert.Equal(t, 1, n.sentPosts(), "a failed move whose answer was lost is not started again")
}

// A record of the move that brought the instance to this host a moment ago (the evacuation
// before a migrate-back: source compute2) is not taken for this step's request.
func TestMoveInstanceEarlierMoveToTheSourceIsNotOurs(t *testing.T) {
	n, cl := newLostAnswerNova(t, false, migrationJSON(5, "compute2", "compute1", "completed", time.Now().Add(-10*time.Second)))
	c := moveCompute(cl)
	req := activities.MoveRequest{ID: "s1", Source: "compute1", Target: "compute2", Kind: activities.MoveLive, Timeout: time.Minute}
	_, err := retried(t, c).ExecuteActivity(c.MoveInstance, req)
	require.Error(t, err, "the answer is lost")
	assert.Equal(t, 1, n.sentPosts(), "the earlier record did not stop the request")
}

// A new activity (an operator's retry after a stall: no heartbeat of an earlier attempt) asks
// again although a failed move of the same source is in the records.
func TestMoveInstanceNewActivityAsksAgain(t *testing.T) {
	n, cl := newLostAnswerNova(t, false, migrationJSON(5, "compute1", "compute2", "error", time.Now().Add(-10*time.Second)))
	c := moveCompute(cl)
	req := activities.MoveRequest{ID: "s1", Source: "compute1", Target: "compute2", Kind: activities.MoveLive, Timeout: time.Minute}
	_, err := activityEnv(t, c).ExecuteActivity(c.MoveInstance, req)
	require.Error(t, err, "the answer is lost")
	assert.Equal(t, 1, n.sentPosts())
}

// retried is the environment of a later attempt: the first heartbeated just before asking.
func retried(t *testing.T, c *activities.Compute) *testsuite.TestActivityEnvironment {
	env := activityEnv(t, c)
	env.SetHeartbeatDetails(map[string]any{"first_start": time.Now().Add(-2 * time.Second)})
	return env
}
