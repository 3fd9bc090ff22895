package activities

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The probes' errors reach the workflow's history, the report and chat: credentials in the
// tickets and Alertmanager URLs are masked there, whether the source is down or answers badly.
func TestProbeErrorsMaskURLCredentials(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("not json"))
	}))
	defer bad.Close()
	host := strings.TrimPrefix(bad.URL, "http://")
	for _, u := range []string{
		"http://ops:hunter22@127.0.0.1:1/tickets?token=s3cr3tvalue",  // refused
		"http://ops:hunter22@" + host + "/tickets?token=s3cr3tvalue", // answers garbage
	} {
		c := &Checks{Settings: CheckSettings{TicketsURL: u, AlertmanagerURL: u}}
		_, terr := c.TicketsProbe(context.Background(), ProbeRequest{})
		_, aerr := c.AlertsProbe(context.Background(), ProbeRequest{})
		for _, err := range []error{terr, aerr} {
			if err == nil {
				t.Fatalf("%s: no error", u)
			}
			for _, secret := range []string{"hunter22", "s3cr3tvalue"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("secret %q in %q", secret, err)
				}
			}
		}
	}
}
