package faultproxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A Keystone token answer's catalogue is rewritten to fronts, and calls through the rewritten URL
// reach the service behind it.
func TestCatalogueIsRewrittenToFronts(t *testing.T) {
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path": %q, "self": "http://%s/v2.1/servers/1"}`, r.URL.Path, r.Host)
	}))
	defer nova.Close()
	keystone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Subject-Token", "tok")
		fmt.Fprintf(w, `{"token": {"catalog": [{"type": "compute", "endpoints": [{"url": "%s/v2.1"}]}]}}`, nova.URL)
	}))
	defer keystone.Close()

	p := New(Options{Rate: 0})
	defer p.Close()
	auth, err := p.Front(keystone.URL + "/v3/auth/tokens")
	require.NoError(t, err)
	require.NotContains(t, auth, keystone.URL)

	resp, err := http.Post(auth, "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	var tok struct {
		Token struct {
			Catalog []struct {
				Endpoints []struct{ URL string } `json:"endpoints"`
			} `json:"catalog"`
		} `json:"token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	resp.Body.Close()
	computeURL := tok.Token.Catalog[0].Endpoints[0].URL
	require.NotContains(t, computeURL, nova.URL, "the catalogue still names the service itself")
	require.True(t, strings.HasPrefix(computeURL, "http://127.0.0.1:"), computeURL)

	resp, err = http.Get(computeURL + "/servers")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `"path": "/v2.1/servers"`)
	require.NotContains(t, string(b), nova.URL, "URLs in answers are rewritten too")
}

// replaceBase stops at URL boundaries.
func TestReplaceBaseBoundary(t *testing.T) {
	got := string(replaceBase([]byte(`"http://h:80/a" "http://h:8080/b" "http://h:80"`), "http://h:80", "http://f:1"))
	require.Equal(t, `"http://f:1/a" "http://h:8080/b" "http://f:1"`, got)
}

// The rate and seed decide the faults: the same seed gives the same faults, the share is near
// the rate, and every kind occurs.
func TestRateAndSeed(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok": true}`)
	}))
	defer up.Close()
	run := func(seed int64) (Stats, []bool) {
		p := New(Options{Seed: seed, Rate: 0.2, HangFor: 10 * time.Millisecond, SlowChunk: time.Millisecond})
		defer p.Close()
		u, err := p.Front(up.URL + "/x")
		require.NoError(t, err)
		// fresh connections: net/http retries a GET on its own when a reused one breaks
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		var ok []bool
		for i := 0; i < 400; i++ {
			resp, err := c.Get(u)
			good := err == nil && resp.StatusCode == 200
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			ok = append(ok, good)
		}
		return p.Stats(), ok
	}
	s1, ok1 := run(7)
	s2, ok2 := run(7)
	require.Equal(t, s1, s2)
	// slow bodies still succeed; every other kind fails the request
	failed := 0
	for _, g := range ok1 {
		if !g {
			failed++
		}
	}
	require.Equal(t, s1.Total()-s1.Faults[SlowBody], failed)
	require.Equal(t, ok1, ok2)
	require.Equal(t, 400, s1.Requests)
	require.InDelta(t, 80, s1.Total(), 30, "about 20 %% of 400")
	for _, k := range AllKinds {
		require.Positive(t, s1.Faults[k], "kind %s never injected", k)
	}
}

// A reset after the answer means the service did the work: the client sees an error, the
// service saw the request exactly once.
func TestResetAfterReachesTheServiceOnce(t *testing.T) {
	var posts atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		w.WriteHeader(202)
	}))
	defer up.Close()
	p := New(Options{Rate: 1, Kinds: []Kind{ResetAfter}})
	defer p.Close()
	u, err := p.Front(up.URL + "/servers/1/action")
	require.NoError(t, err)
	_, err = http.Post(u, "application/json", strings.NewReader(`{"os-migrateLive": {}}`))
	require.Error(t, err)
	require.EqualValues(t, 1, posts.Load())
	p.Enable(false)
	resp, err := http.Post(u, "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 202, resp.StatusCode)
}

// A forced fault hits the first matching request even at rate 0, once; disabled, it waits.
func TestForcedFaultHitsTheFirstMatchOnce(t *testing.T) {
	var posts atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		w.WriteHeader(202)
	}))
	defer up.Close()
	p := New(Options{Rate: 0, Force: []Forced{{Method: http.MethodPost, PathSuffix: "/action", Kind: ResetAfter}}})
	defer p.Close()
	base, err := p.Front(up.URL + "/")
	require.NoError(t, err)
	post := func(path string) error {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(`{}`))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	p.Enable(false)
	require.NoError(t, post("servers/1/action"), "not while disabled")
	p.Enable(true)
	require.NoError(t, post("servers/1/metadata"), "another path")
	resp, err := http.Get(base + "servers/1/action")
	require.NoError(t, err, "another method")
	resp.Body.Close()
	require.Error(t, post("servers/1/action"), "the first match")
	require.NoError(t, post("servers/2/action"), "only once")
	s := p.Stats()
	require.Equal(t, 1, s.Faults[ResetAfter])
	require.Equal(t, 1, s.ByMethod[http.MethodPost])
	require.EqualValues(t, 4, posts.Load(), "the reset came after the service saw it")
}
