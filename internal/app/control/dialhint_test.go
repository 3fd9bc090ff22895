package control

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/stackrun/stackrun/config"
)

func TestDialHint(t *testing.T) {
	on := config.TemporalTLS{Enabled: true, CAFile: "ca.pem"}
	withCert := config.TemporalTLS{Enabled: true, CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "c.key"}
	for _, tc := range []struct {
		tls  config.TemporalTLS
		err  string
		want string
	}{
		{config.TemporalTLS{}, `connection error: desc = "error reading server preface: EOF"`, "set temporal.tls.enabled"},
		{on, `remote error: tls: certificate required`, "temporal.tls.cert_file and temporal.tls.key_file"},
		{on, `write tcp 127.0.0.1:1->127.0.0.2:7233: write: broken pipe`, "may require a client certificate"},
		{on, `tls: failed to verify certificate: x509: certificate signed by unknown authority`, "temporal.tls.ca_file and temporal.tls.server_name"},
		{withCert, `remote error: tls: unknown certificate authority`, "refused the client certificate"},
		{withCert, `dial tcp 127.0.0.2:7233: connect: connection refused`, ""},
		{config.TemporalTLS{}, `dial tcp 127.0.0.2:7233: connect: connection refused`, ""},
	} {
		got := dialHint(tc.tls, errors.New(tc.err))
		if tc.want == "" {
			assert.Empty(t, got, tc.err)
		} else {
			assert.Contains(t, got, tc.want, tc.err)
		}
	}
}
