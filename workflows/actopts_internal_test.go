package workflows

import (
	"testing"
	"time"
)

// Every activity options the machinery builds let a killed worker cost at most RecoverWithin
// before the retry: a short start-to-close timeout, or a heartbeat timeout no longer than
// ActivityHeartbeat (the worker's keepalive heartbeats).
func TestActivityOptionsRecoverWithin30s(t *testing.T) {
	for _, o := range []ActOpts{
		{}, // the default: 5 minutes to run
		{Timeout: 10 * time.Second},
		{Timeout: 30 * time.Second, Attempts: 3, Initial: time.Second}, // notifications
		{Timeout: time.Minute},
		{Timeout: 2 * time.Minute, Attempts: 2},
		{Timeout: 10 * time.Minute, Heartbeat: time.Minute},     // postrebootcheck's
		{Timeout: 40 * time.Minute, Heartbeat: 2 * time.Minute}, // swift_family's max(2*interval, 1m)
		{Timeout: 35 * time.Minute, Heartbeat: 30 * time.Second},
		{Timeout: 3 * time.Minute, Heartbeat: 5 * time.Second},
	} {
		ao := o.options()
		lost := ao.StartToCloseTimeout
		if ao.HeartbeatTimeout > 0 {
			lost = min(lost, ao.HeartbeatTimeout)
		}
		// The first retry follows after its initial interval.
		if lost+ao.RetryPolicy.InitialInterval > RecoverWithin {
			t.Errorf("%+v: a crash costs %s before the retry (start-to-close %s, heartbeat %s), want <= %s",
				o, lost, ao.StartToCloseTimeout, ao.HeartbeatTimeout, RecoverWithin)
		}
		if o.Timeout != 0 && ao.StartToCloseTimeout != o.Timeout {
			t.Errorf("%+v: start-to-close %s, want the call site's %s", o, ao.StartToCloseTimeout, o.Timeout)
		}
		if o.Heartbeat > 0 && o.Heartbeat <= ActivityHeartbeat && ao.HeartbeatTimeout != o.Heartbeat {
			t.Errorf("%+v: heartbeat %s, want the call site's shorter %s", o, ao.HeartbeatTimeout, o.Heartbeat)
		}
	}
}
