package openstack

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/testenv/faultproxy"
)

// Through a real proxy that injects every kind of fault into 20 % of the requests, reads
// succeed (retried in place, a hang cut by the request timeout), a write whose answer was lost
// is not repeated, and a 404 is the service's answer, not retried.
func TestReadRetriesThroughFaults(t *testing.T) {
	var gets, posts, missing atomic.Int64
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/servers/gone":
			missing.Add(1)
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"itemNotFound": {"code": 404}}`))
		case r.Method == http.MethodGet:
			gets.Add(1)
			_, _ = w.Write([]byte(`{"servers": []}`))
		default:
			posts.Add(1)
			w.WriteHeader(202)
		}
	}))
	defer nova.Close()

	proxy := faultproxy.New(faultproxy.Options{Seed: 17, Rate: 0.2, HangFor: 2 * time.Second, SlowChunk: time.Millisecond})
	defer proxy.Close()
	base, err := proxy.Front(nova.URL + "/")
	require.NoError(t, err)

	pc := &gophercloud.ProviderClient{
		HTTPClient: http.Client{Timeout: 300 * time.Millisecond},
		RetryFunc:  retryReads(DefaultReadRetries, time.Millisecond),
	}
	sc := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: base}
	ctx := context.Background()

	for i := 0; i < 100; i++ {
		var out map[string]any
		_, err := sc.Get(ctx, sc.ServiceURL("servers"), &out, nil)
		require.NoError(t, err, "read %d", i)
	}
	st := proxy.Stats()
	require.Greater(t, st.ByMethod["GET"], 10, "too few faults injected to prove anything: %+v", st)

	_, err = sc.Get(ctx, sc.ServiceURL("servers", "gone"), nil, nil)
	require.Error(t, err)

	proxy.Enable(false)
	before := missing.Load()
	_, err = sc.Get(ctx, sc.ServiceURL("servers", "gone"), nil, nil)
	require.Error(t, err)
	require.Equal(t, before+1, missing.Load(), "a 404 was retried")

	// Every write's answer lost: the error reaches the caller after one request.
	lossy := faultproxy.New(faultproxy.Options{Rate: 1, Kinds: []faultproxy.Kind{faultproxy.ResetAfter}})
	defer lossy.Close()
	wbase, err := lossy.Front(nova.URL + "/")
	require.NoError(t, err)
	wsc := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: wbase}
	_, err = wsc.Post(ctx, wsc.ServiceURL("servers", "1", "action"), map[string]any{"os-migrateLive": map[string]any{}}, nil, &gophercloud.RequestOpts{OkCodes: []int{202}})
	require.Error(t, err)
	require.EqualValues(t, 1, posts.Load(), "a write whose answer was lost was sent again")
}

// The token request is retried: its first answer lost after Keystone issued the token, its
// second a 503, the third gets through. (Before, one lost token answer failed the login: the
// post-reboot check's first API probe reported "cannot authenticate" under 20 % faults.)
func TestTokenRequestRetriedThroughFaults(t *testing.T) {
	var tokens atomic.Int64
	keystone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/v3/auth/tokens", r.URL.Path)
		tokens.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Subject-Token", "tok")
		w.WriteHeader(201)
		_, _ = w.Write([]byte(`{"token": {"expires_at": "2099-01-01T00:00:00.000000Z", "catalog": [], "user": {"id": "u1", "name": "admin"}}}`))
	}))
	defer keystone.Close()
	proxy := faultproxy.New(faultproxy.Options{Force: []faultproxy.Forced{
		{Method: http.MethodPost, PathSuffix: "/auth/tokens", Kind: faultproxy.ResetAfter},
		{Method: http.MethodPost, PathSuffix: "/auth/tokens", Kind: faultproxy.Status503},
	}})
	defer proxy.Close()
	front, err := proxy.Front(keystone.URL + "/v3")
	require.NoError(t, err)
	pc, err := newProvider(context.Background(), gophercloud.AuthOptions{IdentityEndpoint: front, Username: "admin", Password: "x", DomainName: "Default"}, nil, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "tok", pc.Token())
	require.EqualValues(t, 2, tokens.Load(), "three sent: the lost one and the last reached Keystone, the 503 did not")
	require.Equal(t, 2, proxy.Stats().Total())
}

// A version-discovery GET to a port where nothing listens fails at once (the service is down:
// NewClients takes it as transient); an ordinary read of a refused port is retried as before.
func TestRefusedDiscoveryIsNotRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close()) // refused from now on
	var failures atomic.Int64
	retry := retryReads(DefaultReadRetries, time.Millisecond)
	pc := &gophercloud.ProviderClient{HTTPClient: http.Client{Timeout: 5 * time.Second},
		RetryFunc: func(ctx context.Context, method, u string, opts *gophercloud.RequestOpts, err error, n uint) error {
			failures.Add(1)
			return retry(ctx, method, u, opts, err, n)
		}}
	ctx := context.Background()
	// what gophercloud's utils.GetServiceVersions asks
	_, err = pc.Request(ctx, http.MethodGet, down, &gophercloud.RequestOpts{OkCodes: []int{200, 300}, JSONResponse: &map[string]any{}})
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.EqualValues(t, 1, failures.Load(), "a refused discovery was retried")
	failures.Store(0)
	_, err = pc.Request(ctx, http.MethodGet, down+"servers", &gophercloud.RequestOpts{OkCodes: []int{200}})
	require.Error(t, err)
	require.EqualValues(t, DefaultReadRetries+1, failures.Load(), "an ordinary read is retried in place")
}
