package activities_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// smokeCloud is a Keystone, Glance, Placement, Nova and Cinder just big enough for the staged
// upgrade's smoke test. With lose, it carries out a create (POST /servers, POST /volumes) and
// then drops the connection instead of answering: the create's answer is lost, as the fault
// proxy's reset-after does on the lab (loseDel: the same for DELETEs). Servers are ACTIVE and volumes available at once.
type smokeCloud struct {
	mu      sync.Mutex
	lose    bool              // creates: carried out, answer lost
	loseDel bool              // deletes: carried out, answer lost
	posts   map[string]int    // "servers", "volumes"
	deletes int               // DELETEs of servers and volumes
	objs    map[string]string // id -> JSON of a server or volume
	kind    map[string]string // id -> "servers" or "volumes"
}

func newSmokeCloud(t *testing.T, lose bool) (*smokeCloud, *activities.Cloud) {
	c := &smokeCloud{lose: lose, posts: map[string]int{}, objs: map[string]string{}, kind: map[string]string{}}
	f := th.SetupHTTP()
	t.Cleanup(f.Teardown)
	js := func(w http.ResponseWriter, format string, args ...any) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, format, args...)
	}
	f.Mux.HandleFunc("/projects", func(w http.ResponseWriter, r *http.Request) {
		js(w, `{"projects": [{"id": "p1", "name": "admin"}]}`)
	})
	f.Mux.HandleFunc("/images", func(w http.ResponseWriter, r *http.Request) {
		js(w, `{"images": [{"id": "i1", "name": "cirros", "status": "active"}]}`)
	})
	f.Mux.HandleFunc("/resource_providers", func(w http.ResponseWriter, r *http.Request) {
		js(w, `{"resource_providers": [{"uuid": "rp1", "name": "compute1"}]}`)
	})
	f.Mux.HandleFunc("/flavors/detail", func(w http.ResponseWriter, r *http.Request) {
		js(w, `{"flavors": [{"id": "f1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1}]}`)
	})
	for _, kind := range []string{"servers", "volumes"} {
		f.Mux.HandleFunc("/"+kind, func(w http.ResponseWriter, r *http.Request) {
			require.Equal(t, http.MethodPost, r.Method)
			var body map[string]map[string]any
			require.NoError(t, json.NewDecoder(r.Body).Decode(&body))
			c.mu.Lock()
			c.posts[kind]++
			id := fmt.Sprintf("%s-%d", kind, c.posts[kind])
			one := strings.TrimSuffix(kind, "s")
			c.objs[id], c.kind[id] = c.record(kind, id, body[one]["name"].(string), ""), kind
			obj, lose := c.objs[id], c.lose
			c.mu.Unlock()
			if lose {
				dropAnswer(t, w)
				return
			}
			w.WriteHeader(http.StatusAccepted)
			js(w, `{%q: %s}`, one, obj)
		})
		f.Mux.HandleFunc("/"+kind+"/detail", func(w http.ResponseWriter, r *http.Request) {
			c.mu.Lock()
			defer c.mu.Unlock()
			var list []string
			for id, o := range c.objs {
				if c.kind[id] == kind {
					list = append(list, o)
				}
			}
			js(w, `{%q: [%s]}`, kind, strings.Join(list, ","))
		})
		f.Mux.HandleFunc("/"+kind+"/", func(w http.ResponseWriter, r *http.Request) {
			id := strings.TrimPrefix(r.URL.Path, "/"+kind+"/")
			c.mu.Lock()
			defer c.mu.Unlock()
			o, ok := c.objs[id]
			switch {
			case !ok:
				w.WriteHeader(http.StatusNotFound)
			case r.Method == http.MethodDelete:
				c.deletes++
				delete(c.objs, id)
				if c.loseDel {
					dropAnswer(t, w)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			default:
				js(w, `{%q: %s}`, strings.TrimSuffix(kind, "s"), o)
			}
		})
	}
	sc := func(typ string) *gophercloud.ServiceClient {
		s := fakeclient.ServiceClient(f)
		s.Type = typ
		return s
	}
	compute := sc("compute")
	compute.Microversion = openstack.DefaultComputeMicroversion
	cl := &openstack.Clients{Compute: compute, Identity: sc("identity"), Image: sc("image"), Placement: sc("placement"), BlockStorage: sc("block-storage")}
	return c, &activities.Cloud{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }}
}

// record is a server (status: ACTIVE unless given) or a volume (available unless given).
func (c *smokeCloud) record(kind, id, name, status string) string {
	if kind == "servers" {
		return fmt.Sprintf(`{"id": %q, "name": %q, "status": %q, "OS-EXT-STS:task_state": "", "OS-EXT-SRV-ATTR:host": "compute1", "tenant_id": "p1"}`,
			id, name, cmpOr(status, "ACTIVE"))
	}
	return fmt.Sprintf(`{"id": %q, "name": %q, "status": %q, "size": 1, "os-vol-host-attr:host": "controller@fake"}`, id, name, cmpOr(status, "available"))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// leave puts a server or volume of an earlier attempt in the cloud.
func (c *smokeCloud) leave(kind, id, name, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.objs[id], c.kind[id] = c.record(kind, id, name, status), kind
}

func (c *smokeCloud) counts() (servers, volumes, deletes, left int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.posts["servers"], c.posts["volumes"], c.deletes, len(c.objs)
}

func smoke(t *testing.T, cloud *activities.Cloud, req activities.SmokeRequest) (activities.SmokeResult, error) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(cloud)
	v, err := env.ExecuteActivity(cloud.UpgradeSmokeTest, req)
	var res activities.SmokeResult
	if err == nil {
		require.NoError(t, v.Get(&res))
	}
	return res, err
}

// Nova booted the test server but the answer was lost: the smoke test finds it by name and
// follows it; it does not fail the step (whose retry would boot a second server).
func TestSmokeTestLostBootAnswerIsNotBootedAgain(t *testing.T) {
	c, cloud := newSmokeCloud(t, true)
	res, err := smoke(t, cloud, activities.SmokeRequest{Name: "su1-nova", Boot: true})
	require.NoError(t, err)
	posts, _, deletes, left := c.counts()
	assert.Equal(t, 1, posts, "booted once")
	assert.Equal(t, "servers-1", res.Server)
	assert.Equal(t, 1, deletes)
	assert.Zero(t, left, "the test server is deleted")
	assert.Contains(t, strings.Join(res.Checks, "; "), "nova: server servers-1 created although the answer was lost")
	assert.Contains(t, res.Checks, "nova: server deleted")
}

// A retried step finds the server its earlier attempt booted (the attempt failed after the
// boot): it takes it over instead of deleting it and booting another.
func TestSmokeTestRetryTakesOverTheEarlierServer(t *testing.T) {
	c, cloud := newSmokeCloud(t, false)
	c.leave("servers", "s-old", "stackrun-smoke-su1-nova", "ACTIVE")
	c.leave("servers", "s-other", "someone-else", "ACTIVE")
	res, err := smoke(t, cloud, activities.SmokeRequest{Name: "su1-nova", Boot: true})
	require.NoError(t, err)
	posts, _, _, left := c.counts()
	assert.Zero(t, posts, "not booted again")
	assert.Equal(t, "s-old", res.Server)
	assert.Equal(t, 1, left, "only someone else's server is left")
	assert.Contains(t, strings.Join(res.Checks, "; "), "taken over (not booted again)")
}

// A broken server of an earlier attempt (ERROR) is deleted and a new one booted.
func TestSmokeTestDeletesABrokenEarlierServer(t *testing.T) {
	c, cloud := newSmokeCloud(t, false)
	c.leave("servers", "s-bad", "stackrun-smoke-su1-nova", "ERROR")
	res, err := smoke(t, cloud, activities.SmokeRequest{Name: "su1-nova", Boot: true})
	require.NoError(t, err)
	posts, _, deletes, left := c.counts()
	assert.Equal(t, 1, posts)
	assert.Equal(t, 2, deletes, "the broken one and the new one")
	assert.Zero(t, left)
	assert.Contains(t, strings.Join(res.Checks, "; "), "nova: deleted s-bad (ERROR), left by an earlier attempt")
}

// Cinder created the test volume but the answer was lost: followed by name, not created again.
func TestSmokeTestLostVolumeAnswerIsNotCreatedAgain(t *testing.T) {
	c, cloud := newSmokeCloud(t, true)
	res, err := smoke(t, cloud, activities.SmokeRequest{Name: "su1-cinder", Volume: true})
	require.NoError(t, err)
	_, posts, deletes, left := c.counts()
	assert.Equal(t, 1, posts, "created once")
	assert.Equal(t, "volumes-1", res.Volume)
	assert.Equal(t, 1, deletes)
	assert.Zero(t, left)
	assert.Contains(t, strings.Join(res.Checks, "; "), "cinder: volume volumes-1 created although the answer was lost")
	assert.Contains(t, res.Checks, "cinder: volume deleted")
}

// The delete of the test server and volume was carried out but its answer lost: the smoke test
// sees them gone and passes (it failed before, and its retry made them again).
func TestSmokeTestLostDeleteAnswerIsNotAFailure(t *testing.T) {
	c, cloud := newSmokeCloud(t, false)
	c.loseDel = true
	res, err := smoke(t, cloud, activities.SmokeRequest{Name: "su1-cinder", Volume: true, Boot: true})
	require.NoError(t, err)
	servers, volumes, deletes, left := c.counts()
	assert.Equal(t, []int{1, 1, 2, 0}, []int{servers, volumes, deletes, left})
	assert.Contains(t, res.Checks, "nova: server deleted")
	assert.Contains(t, res.Checks, "cinder: volume deleted")
}
