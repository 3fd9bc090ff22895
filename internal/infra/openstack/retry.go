package openstack

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gos "github.com/gophercloud/gophercloud/v2/openstack"
)

// DefaultRequestTimeout bounds one HTTP request (connect, headers and body). Without it a
// request to an API that accepted the connection and never answers would hang until the
// activity's own timeout; with it the request fails and is retried (reads) or the activity
// re-checks the world and decides (writes). Above Nova's rpc_response_timeout (60 s): some
// calls (a service update, server diagnostics) wait for an RPC reply and answer after it.
const DefaultRequestTimeout = 2 * time.Minute

// DefaultReadRetries is how often a read (GET, HEAD) is retried in place after a transport error,
// a 5xx answer or a cut body, before the error reaches the activity.
const DefaultReadRetries = 4

// retryReads is the provider's RetryFunc. Only reads are retried here, and the token request
// (a POST whose repetition only issues another token): any other POST, PUT, PATCH or DELETE that
// failed may have reached the service (a reset after Nova accepted a live migration), so
// repeating it blindly could do it twice. Writes go back to the activity, whose next attempt
// looks at the world first.
func retryReads(max uint, backoff time.Duration) gophercloud.RetryFunc {
	return func(ctx context.Context, method, u string, opts *gophercloud.RequestOpts, err error, failCount uint) error {
		if method != http.MethodGet && method != http.MethodHead && !isTokenRequest(method, u) {
			return err
		}
		if failCount > max || !transient(err) {
			return err
		}
		if refusedDiscovery(method, opts, err) {
			return err
		}
		t := time.NewTimer(backoff << (failCount - 1))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
			return nil
		}
	}
}

// refusedDiscovery: a version-discovery GET (the document answers 200 or 300 Multiple Choices)
// whose connection was refused: nothing listens on the service's port, so it is down, and waiting
// out the back-off (7.5 s) changes nothing. gophercloud asks it while it makes the clients, for
// every service whose endpoint has no version in its URL (placement, image, network), and
// NewClients takes a service that does not answer as transient (the next clients have it): with
// the back-off every call that made clients while such services were down waited 7.5 s per
// service (outage-recovery verifies keystone while placement, Glance and Neutron are still down:
// 22.5 s per attempt). Other reads, and a discovery that fails otherwise, are retried as before.
func refusedDiscovery(method string, opts *gophercloud.RequestOpts, err error) bool {
	return method == http.MethodGet && opts != nil && slices.Contains(opts.OkCodes, http.StatusMultipleChoices) &&
		errors.Is(err, syscall.ECONNREFUSED)
}

// isTokenRequest: Keystone's POST /v3/auth/tokens (the first login and every re-authentication).
// Without its retry one lost token answer fails whatever needed the clients: a post-reboot
// check's API probe then reports the cloud down.
func isTokenRequest(method, u string) bool {
	if method != http.MethodPost {
		return false
	}
	pu, err := url.Parse(u)
	return err == nil && strings.HasSuffix(strings.TrimSuffix(pu.Path, "/"), "/auth/tokens")
}

// transient: worth a retry. 4xx answers are the service's considered reply (404, 409), not a fault.
func transient(err error) bool {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return code.Actual >= 500
	}
	return !errors.Is(err, context.Canceled)
}

// newProvider authenticates with a bounded HTTP client and read retries (both also cover the
// token request itself).
func newProvider(ctx context.Context, ao gophercloud.AuthOptions, tlsConfig *tls.Config, timeout time.Duration) (*gophercloud.ProviderClient, error) {
	client, err := gos.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConfig != nil {
		transport.TLSClientConfig = tlsConfig
	}
	client.HTTPClient = http.Client{Transport: tagActivity{transport}, Timeout: timeout}
	client.RetryFunc = retryReads(DefaultReadRetries, 500*time.Millisecond)
	if err := gos.Authenticate(ctx, client, ao); err != nil {
		return nil, err
	}
	return client, nil
}
