package openstack

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
)

// Requests from an activity carry its run and attempt; others carry nothing.
func TestTagActivity(t *testing.T) {
	got := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get(ActivityHeader) }))
	defer srv.Close()
	c := &http.Client{Transport: tagActivity{http.DefaultTransport}}
	call := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}

	require.NoError(t, call(context.Background()))
	require.Empty(t, <-got)

	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(call, activity.RegisterOptions{Name: "Probe"})
	_, err := env.ExecuteActivity("Probe")
	require.NoError(t, err)
	v, err := url.ParseQuery(<-got)
	require.NoError(t, err)
	require.Equal(t, "1", v.Get("attempt"))
	require.NotEmpty(t, v.Get("run"))
	require.NotEmpty(t, v.Get("activity"))
}
