//go:build cluster

package cluster

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// testAuthz: the frontend authorizes every call by the client certificate's subject CN
// (tools/temporal/cmd/temporal-server --tls-roles, the roles in $CLUSTER/etc/tls-roles). A
// certificate of the cluster's own CA whose CN has no role passes the TLS handshake and is
// refused everything; the viewer and the web UI may read and not act; the operators' and the
// workers' certificates may act (the other subtests run through them). Revoking a CN takes
// effect on the running frontend.
func testAuthz(t *testing.T, r *rig) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A run to act on: a workflow type no worker serves, on a queue of its own.
	const id = "authz-probe"
	_, err := r.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "authz-probe"}, "AuthzProbe")
	require.NoError(t, err)
	defer func() { _ = r.client.TerminateWorkflow(context.Background(), id, "", "test done") }()

	denied := func(err error, what string) {
		t.Helper()
		var pd *serviceerror.PermissionDenied
		require.ErrorAs(t, err, &pd, "%s must be refused with PermissionDenied", what)
	}
	start := func(c client.Client, wid string) error {
		_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: wid, TaskQueue: "authz-probe"}, "AuthzProbe")
		return err
	}
	list := func(c client.Client) error {
		_, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", Query: "WorkflowId = '" + id + "'"})
		return err
	}
	history := func(c client.Client) (signals int, err error) {
		it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return signals, err
			}
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
				signals++
			}
		}
		return signals, nil
	}

	// A stranger: a certificate the cluster CA signed (the TLS handshake accepts it) for a CN
	// that tls-roles does not list.
	stranger := r.clientWith(t, caSigned(t, r, "stranger"))
	_, err = stranger.DescribeWorkflowExecution(ctx, id, "")
	denied(err, "describe by a stranger")
	denied(list(stranger), "list by a stranger")
	denied(stranger.SignalWorkflow(ctx, id, "", "probe", "stranger"), "a signal by a stranger")
	denied(start(stranger, "authz-stranger"), "a start by a stranger")
	denied(stranger.TerminateWorkflow(ctx, id, "", "stranger"), "terminate by a stranger")

	// The viewer's certificate and the web UI's: read, never act.
	for _, cn := range []string{"stackrun-viewer", "temporal-ui"} {
		c := r.clientWith(t, r.pair(cn))
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		require.NoError(t, err, "%s may describe", cn)
		require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, d.GetWorkflowExecutionInfo().GetStatus())
		require.NoError(t, list(c), "%s may list", cn)
		_, err = history(c)
		require.NoError(t, err, "%s may read the history", cn)
		denied(c.SignalWorkflow(ctx, id, "", "probe", cn), "a signal by "+cn)
		denied(start(c, "authz-"+cn), "a start by "+cn)
		denied(c.TerminateWorkflow(ctx, id, "", cn), "terminate by "+cn)
		denied(c.CancelWorkflow(ctx, id, ""), "cancel by "+cn)
	}
	// None of it reached the run: no signal, still running, no run started.
	n, err := history(r.client)
	require.NoError(t, err)
	require.Zero(t, n, "no refused signal is in the history")
	for _, wid := range []string{"authz-stranger", "authz-stackrun-viewer", "authz-temporal-ui"} {
		_, err := r.client.DescribeWorkflowExecution(ctx, wid, "")
		var nf *serviceerror.NotFound
		require.ErrorAs(t, err, &nf, "%s was never started", wid)
	}

	// The operators' certificate may signal (what the signal decides is then the workflow's to
	// verify: signed by an operator's key, docs/chatops.md).
	operator := r.clientWith(t, r.pair("stackrun-operator"))
	require.NoError(t, operator.SignalWorkflow(ctx, id, "", "probe", "operator"))
	n, err = history(r.client)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the operator's signal is in the history")

	// The Stackrun CLI with the viewer's certificate lists runs, and says why it may not approve.
	viewerCfg := r.configWithCert(t, "stackrun-viewer")
	_, errs, code := r.cliWith(viewerCfg, "list", "--timeout", "10s")
	require.Equal(t, 0, code, "the viewer lists runs: %s", errs)
	// A signed start (alice's key) through the viewer's certificate: Temporal refuses it before
	// any workflow sees it.
	_, errs, code = r.cliWith(viewerCfg, "run", "restart-service", "--host", "node1", "--service", "svc-b", "--as", "alice", "--reason", "authz drill")
	require.NotEqual(t, 0, code)
	require.Regexp(t, `(?i)unauthorized|permission`, errs, "the CLI says the call was refused")
	_, err = r.client.DescribeWorkflowExecution(ctx, "restart-service/node1/svc-b", "")
	var nf *serviceerror.NotFound
	require.ErrorAs(t, err, &nf, "the refused start started nothing")
	t.Logf("CLI with the viewer's certificate: %s", strings.TrimSpace(errs))

	// Revocation: without its line in tls-roles the viewer is refused by the running frontend;
	// with it back, it reads again (the file is re-read within seconds, no restart).
	rolesFile := r.cluster + "/etc/tls-roles"
	orig, err := os.ReadFile(rolesFile)
	require.NoError(t, err)
	var kept []string
	for _, l := range strings.Split(string(orig), "\n") {
		if !strings.HasPrefix(l, "stackrun-viewer ") {
			kept = append(kept, l)
		}
	}
	require.Less(t, len(kept), len(strings.Split(string(orig), "\n")), "tls-roles lists stackrun-viewer")
	viewer := r.clientWith(t, r.pair("stackrun-viewer"))
	require.NoError(t, os.WriteFile(rolesFile, []byte(strings.Join(kept, "\n")), 0o644))
	revoked := time.Now()
	require.Eventually(t, func() bool {
		_, err := viewer.DescribeWorkflowExecution(ctx, id, "")
		var pd *serviceerror.PermissionDenied
		return errors.As(err, &pd)
	}, 30*time.Second, 250*time.Millisecond, "the revoked viewer is refused")
	t.Logf("viewer refused %s after its line left tls-roles", time.Since(revoked).Round(100*time.Millisecond))
	require.NoError(t, os.WriteFile(rolesFile, orig, 0o644))
	require.Eventually(t, func() bool {
		_, err := viewer.DescribeWorkflowExecution(ctx, id, "")
		return err == nil
	}, 30*time.Second, 250*time.Millisecond, "the viewer reads again once restored")
}

// clientWith is an SDK client of the frontend that presents cert (connected on first use).
func (r *rig) clientWith(t *testing.T, cert tls.Certificate) client.Client {
	t.Helper()
	caPEM, err := os.ReadFile(r.tls("ca.pem"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	c, err := client.NewLazyClient(client.Options{HostPort: frontend, Namespace: "default", Identity: "cluster-test-authz",
		ConnectionOptions: client.ConnectionOptions{TLS: &tls.Config{RootCAs: roots, ServerName: "temporal-frontend",
			MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}}})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func (r *rig) pair(name string) tls.Certificate {
	r.t.Helper()
	c, err := tls.LoadX509KeyPair(r.tls(name+".pem"), r.tls(name+".key"))
	require.NoError(r.t, err)
	return c
}

// configWithCert is the cluster's stackrun.yaml with the client certificate name instead of the
// operators'.
func (r *rig) configWithCert(t *testing.T, name string) string {
	b, err := os.ReadFile(r.config)
	require.NoError(t, err)
	s := strings.ReplaceAll(string(b), "stackrun-operator.", name+".")
	require.NotEqual(t, string(b), s)
	out := r.dir + "/" + name + ".yaml"
	require.NoError(t, os.WriteFile(out, []byte(s), 0o600))
	return out
}

// caSigned is a client certificate for cn signed by the cluster's own CA.
func caSigned(t *testing.T, r *rig, cn string) tls.Certificate {
	caCert, err := tls.LoadX509KeyPair(r.tls("ca.pem"), r.tls("ca.key"))
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caCert.Certificate[0])
	require.NoError(t, err)
	leaf := selfSigned(t, cn) // for its key
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{Organization: []string{"Stackrun cluster"}, CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	pub := leaf.PrivateKey.(crypto.Signer).Public()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caCert.PrivateKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: leaf.PrivateKey}
}
