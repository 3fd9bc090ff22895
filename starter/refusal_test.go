package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/api/serviceerror"
)

// Temporal's refusal ("Request unauthorized.") gets a hint that names the certificate and the
// roles file; other errors get none.
func TestRefusalHint(t *testing.T) {
	err := fmt.Errorf("start run: %w", serviceerror.NewPermissionDenied("Request unauthorized.", ""))
	h := refusalHint(err)
	if !strings.Contains(h, "client certificate") || !strings.Contains(h, "deploy/temporal/tls-roles") {
		t.Fatalf("hint %q", h)
	}
	if refusalHint(errors.New("connection refused")) != "" {
		t.Fatal("a hint for an error that is not a refusal")
	}
}
