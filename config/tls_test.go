package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/config"
)

// writePair writes a self-signed certificate and its key as PEM files and returns their paths.
func writePair(t *testing.T, dir, name string) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	crt, kf := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	require.NoError(t, os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return crt, kf
}

func TestValidateTemporalTLS(t *testing.T) {
	home := isolate(t)
	ca, _ := writePair(t, home, "ca")
	crt, key := writePair(t, home, "client")
	_, otherKey := writePair(t, home, "other")
	notPEM := write(t, home, "not.pem", "hello\n")
	load := func(tls string) error {
		p := write(t, home, "s.yaml", "temporal:\n  tls:\n"+tls)
		cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
		require.NoError(t, err)
		return cfg.Validate()
	}

	require.NoError(t, load("    enabled: true\n    ca_file: "+ca+"\n    cert_file: "+crt+"\n    key_file: "+key+"\n    server_name: temporal-frontend\n"))
	require.NoError(t, load("    enabled: false\n"))

	for name, tc := range map[string]struct{ tls, key, msg string }{
		"settings without enabled": {"    cert_file: " + crt + "\n    key_file: " + key + "\n", "temporal.tls.enabled",
			"temporal.tls.cert_file is set: set temporal.tls.enabled: true"},
		"server_name without enabled":       {"    server_name: temporal-frontend\n", "temporal.tls.enabled", "temporal.tls.server_name is set"},
		"CA file that holds no certificate": {"    enabled: true\n    ca_file: " + notPEM + "\n", "temporal.tls.ca_file", "holds no PEM certificate"},
		"missing CA file":                   {"    enabled: true\n    ca_file: " + filepath.Join(home, "nope.pem") + "\n", "temporal.tls.ca_file", "does not exist"},
		"key of another certificate": {"    enabled: true\n    cert_file: " + crt + "\n    key_file: " + otherKey + "\n", "temporal.tls.cert_file",
			"private key does not match public key"},
		"certificate without key": {"    enabled: true\n    cert_file: " + crt + "\n", "temporal.tls.cert_file", "must be set together"},
	} {
		t.Run(name, func(t *testing.T) {
			err := load(tc.tls)
			require.Error(t, err)
			assert.Contains(t, problemKeys(t, err), tc.key)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}
