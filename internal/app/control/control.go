// Package control holds every Temporal client operation Stackrun's operators need: dial, start a
// runbook, list runs, read a run's status and report, and decide gates and stalled steps. The
// operators' CLI and the chat gateway both use it, so that they behave the same.
package control

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/workflows"
)

// DialOptions adjust Dial beyond the configuration.
type DialOptions struct {
	// Identity is the client identity Temporal records on the workflows it starts and the
	// messages it sends (default: "stackrun@<hostname>").
	Identity string
	// Logger receives the SDK's log; nil logs warnings and errors to stderr.
	Logger *slog.Logger
}

// Dial connects to the Temporal server the configuration names, with TLS (and mTLS when a
// client certificate is configured) when temporal.tls.enabled is set.
func Dial(cfg *config.Config, opts ...DialOptions) (client.Client, error) {
	if cfg == nil {
		return nil, errors.New("dial temporal: no configuration")
	}
	var o DialOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Identity == "" {
		host, _ := os.Hostname()
		o.Identity = "stackrun@" + host
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	copts := client.Options{
		HostPort:  cfg.Temporal.Address,
		Namespace: cfg.Temporal.Namespace,
		Identity:  o.Identity,
		Logger:    tlog.NewStructuredLogger(logger),
	}
	if cfg.Temporal.TLS.Enabled {
		tc, err := TLSConfig(cfg.Temporal.TLS)
		if err != nil {
			return nil, err
		}
		copts.ConnectionOptions.TLS = tc
	}
	c, err := client.Dial(copts)
	if err != nil {
		return nil, fmt.Errorf("dial temporal at %s (namespace %s): %w%s", cfg.Temporal.Address, cfg.Temporal.Namespace, err, dialHint(cfg.Temporal.TLS, err))
	}
	return c, nil
}

// dialHint names the setting a failed dial most likely needs. A TLS frontend that wants a client
// certificate reports it with a TLS alert that the client may see only as a broken connection,
// and a plaintext client gets an unexplained EOF: say which key to look at.
func dialHint(t config.TemporalTLS, err error) string {
	msg := err.Error()
	switch {
	case !t.Enabled && (strings.Contains(msg, "EOF") || strings.Contains(msg, "server preface")):
		return " (if the frontend uses TLS, set temporal.tls.enabled and temporal.tls.ca_file)"
	case t.Enabled && strings.Contains(msg, "x509"):
		return " (the frontend's certificate is not trusted: check temporal.tls.ca_file and temporal.tls.server_name)"
	case t.Enabled && t.CertFile == "" && (strings.Contains(msg, "certificate required") || strings.Contains(msg, "broken pipe") ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF")):
		return " (the frontend may require a client certificate: set temporal.tls.cert_file and temporal.tls.key_file)"
	case t.Enabled && (strings.Contains(msg, "bad certificate") || strings.Contains(msg, "unknown certificate authority")):
		return " (the frontend refused the client certificate temporal.tls.cert_file: is it signed by the frontend's client CA, for client authentication?)"
	}
	return ""
}

// TLSConfig builds the client TLS configuration from temporal.tls.
func TLSConfig(t config.TemporalTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("temporal.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("temporal.tls.ca_file %s: no PEM certificate found", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("temporal.tls.cert_file and temporal.tls.key_file must be set together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("temporal.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Identity returns the operator's name: as when given (--as), else the login name. Either must
// be a valid operator name (workflows.ValidOperator), since gates check it against policy.
func Identity(as string) (string, error) {
	if as != "" {
		if !workflows.ValidOperator(as) {
			return "", fmt.Errorf("--as %q: not a valid operator name (letters, digits, '._@-', at most 64)", as)
		}
		return as, nil
	}
	u, err := user.Current()
	if err != nil || u.Username == "" {
		return "", fmt.Errorf("cannot tell who you are (%v): pass --as <name>", err)
	}
	name := u.Username
	// Windows gives DOMAIN\user.
	if i := strings.LastIndexByte(name, '\\'); i >= 0 {
		name = name[i+1:]
	}
	if !workflows.ValidOperator(name) {
		return "", fmt.Errorf("login name %q is not a valid operator name: pass --as <name>", name)
	}
	return name, nil
}

// Started identifies a run that Start started.
type Started struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

// ErrInvalidInput is returned (wrapped, with the field named) by Start when Validate fails.
var ErrInvalidInput = errors.New("invalid input")

// ErrAlreadyRunning is returned (wrapped) by Start when a run with the same workflow ID, that is
// on the same target, is still open.
var ErrAlreadyRunning = errors.New("already running")

// DryRunSuffix is appended to a dry run's workflow ID so that it never blocks a real run.
func DryRunSuffix(now time.Time) string { return fmt.Sprintf("/dry-run-%d", now.Unix()) }

// Start validates the input and starts the runbook, signed by s (the signature travels in the
// run's memo: workflow ID, input digest, requester, time, nonce). Nothing is started when the
// input is invalid. The workflow ID comes from the input (derived from the target); a dry run's
// gets a suffix. A second run on a target whose run is still open fails with ErrAlreadyRunning.
func Start(ctx context.Context, c client.Client, taskQueue string, rb workflows.Runbook, in workflows.Input, s Signer) (Started, error) {
	if in == nil {
		return Started{}, errors.New("start: no input")
	}
	if taskQueue == "" {
		return Started{}, errors.New("start: no task queue")
	}
	if err := in.Validate(); err != nil {
		return Started{}, fmt.Errorf("%w for %s: %w", ErrInvalidInput, rb.Name, err)
	}
	meta := in.GetMeta()
	id := rb.WorkflowID(in)
	if meta.DryRun {
		id += DryRunSuffix(time.Now())
	}
	opts := client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                taskQueue,
		WorkflowIDConflictPolicy:                 enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:                    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.AttrStatus.ValueSet(string(workflows.StatusPlanning)),
			workflows.AttrTarget.ValueSet(rb.Target(in)),
			workflows.AttrRequestedBy.ValueSet(meta.RequestedBy),
		),
	}
	if s != nil {
		st, err := StartStatement(id, in)
		if err != nil {
			return Started{}, err
		}
		sig, err := s.Sign(st)
		if err != nil {
			return Started{}, fmt.Errorf("start %s: %w", id, err)
		}
		opts.Memo = map[string]any{MemoStartSignature: sig}
	}
	// Inputs are pointers (to fill from flags); workflows take them by value.
	arg := any(in)
	if v := reflect.ValueOf(in); v.Kind() == reflect.Pointer {
		arg = v.Elem().Interface()
	}
	run, err := c.ExecuteWorkflow(ctx, opts, rb.Type, arg)
	if err != nil {
		var already *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &already) {
			return Started{}, fmt.Errorf("%w: %s (see `stackrun status %s`)", ErrAlreadyRunning, id, id)
		}
		return Started{}, fmt.Errorf("start %s: %w", id, err)
	}
	return Started{WorkflowID: run.GetID(), RunID: run.GetRunID()}, nil
}

// WorkflowType is the Temporal workflow type of a runbook (workflows.TypeName of its name).
func WorkflowType(rb workflows.Runbook) string { return rb.Type }

// RunbookName maps a workflow type back to the runbook's CLI name ("" when unknown).
func RunbookName(workflowType string) string {
	for _, rb := range workflows.Runbooks {
		if rb.Type == workflowType || slices.Contains(rb.Formerly, workflowType) {
			return rb.Name
		}
	}
	return ""
}
