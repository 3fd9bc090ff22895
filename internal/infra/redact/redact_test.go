package redact_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stackrun/stackrun/internal/infra/redact"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://alerts.example:9093":                         "https://alerts.example:9093",
		"https://alerts.example/api/v2":                       "https://alerts.example/api/v2",
		"https://ops:hunter22@tickets.example/list":           "https://ops:*****@tickets.example/list",
		"https://tickets.example/list?token=s3cr3t&project=x": "https://tickets.example/list?project=*****&token=*****",
		"https://ops@tickets.example/list#frag":               "https://ops@tickets.example/list#*****",
		"not a url":                                           "not a url",
		"user:pw@host":                                        "*****",
	} {
		if got := redact.URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// A real net/http error for a URL with credentials: whatever form the URL takes in the message,
// no secret is left.
func TestErrorOfARealRequest(t *testing.T) {
	for _, u := range []string{
		"http://ops:hunter22@127.0.0.1:1/tickets?token=s3cr3tvalue",
		"http://127.0.0.1:1/api/v2/alerts?api_key=abcd%2Fefgh",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		_, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			t.Fatalf("%s answered", u)
		}
		got := redact.Error(err, u).Error()
		for _, secret := range []string{"hunter22", "s3cr3tvalue", "abcd%2Fefgh", "abcd/efgh"} {
			if strings.Contains(got, secret) {
				t.Errorf("secret %q left in %q (from %q)", secret, got, err)
			}
		}
		if !strings.Contains(got, "127.0.0.1:1") {
			t.Errorf("the host is gone too: %q", got)
		}
		var un interface{ Unwrap() error }
		if errors.As(redact.Error(err, u), &un) {
			t.Error("the redacted error keeps the original in its chain")
		}
	}
	if redact.Error(nil, "x") != nil {
		t.Error("nil is not nil")
	}
}
