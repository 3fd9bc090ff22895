package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

func TestMetricsCountFailuresByType(t *testing.T) {
	var out bytes.Buffer
	l := New(&out)
	l.Add(Record{Activity: "SetService", Result: "ok", DurationMS: 1500})
	l.Add(Record{Activity: "SetService", Result: "error", ErrorType: "HostKeyMismatch"})
	l.Add(Record{Activity: "SetService", Result: "error", ErrorType: "HostKeyMismatch"})
	l.Add(Record{Activity: "LiveMigrate", Result: "error", ErrorType: "untyped"})
	m := l.Metrics()
	assert.Contains(t, m, `stackrun_activities_total{activity="SetService",result="ok"} 1`)
	assert.Contains(t, m, `stackrun_activities_total{activity="SetService",result="error"} 2`)
	assert.Contains(t, m, `stackrun_activity_failures_total{activity="SetService",error_type="HostKeyMismatch"} 2`)
	assert.Contains(t, m, `stackrun_activity_failures_total{activity="LiveMigrate",error_type="untyped"} 1`)
	assert.Contains(t, m, `stackrun_activity_seconds_total{activity="SetService"} 1.5`)
	assert.Equal(t, 4, strings.Count(out.String(), "\n"), "one JSON line per record")
	assert.Contains(t, out.String(), `"error_type":"HostKeyMismatch"`)
}

func TestErrorType(t *testing.T) {
	ctx := context.Background()
	typed := temporal.NewNonRetryableApplicationError("bad key", "HostKeyMismatch", nil)
	require.Equal(t, "HostKeyMismatch", ErrorType(ctx, fmt.Errorf("ssh: %w", typed)))
	require.Equal(t, "untyped", ErrorType(ctx, errors.New("exit 1")))
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	require.Equal(t, "Canceled", ErrorType(canceled, errors.New("interrupted")))
}
