// Package devserver starts a real Temporal dev server (the CLI built into bin/temporal by
// `make bin/temporal`) for integration tests, with Stackrun's search attributes registered.
package devserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// Server is a running dev server.
type Server struct {
	*testsuite.DevServer
	Client   client.Client
	HostPort string
	// UIURL is the web UI's base URL (http://127.0.0.1:<port>) when started WithUI, else "".
	UIURL string
}

// Option adjusts Start.
type Option func(*testsuite.DevServerOptions)

// WithUI starts the dev server's web UI too, on a free port (Server.UIURL).
func WithUI() Option {
	return func(o *testsuite.DevServerOptions) {
		o.EnableUI = true
		o.UIPort = strconv.Itoa(freePort())
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RepoRoot finds the repository root (the directory holding go.mod) above the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "tools", "temporal")); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found above the working directory")
		}
		dir = parent
	}
}

// Start starts a dev server on a free port with the search attributes RunbookStatus, RunbookStep,
// RunbookTarget and RequestedBy, and stops it when the test ends. It fails (never skips) when
// bin/temporal is missing: `make test` builds it.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := os.Getenv("STACKRUN_TEMPORAL_BIN")
	if bin == "" {
		bin = filepath.Join(RepoRoot(t), "bin", "temporal")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("Temporal CLI not found at %s: run `make bin/temporal` (make test does it)", bin)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "temporal.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := testsuite.DevServerOptions{
		ExistingPath:  bin,
		ClientOptions: &client.Options{Namespace: "default"},
		LogLevel:      "error",
		SearchAttributes: temporal.NewSearchAttributes(
			temporal.NewSearchAttributeKeyKeyword("RunbookStatus").ValueSet(""),
			temporal.NewSearchAttributeKeyKeyword("RunbookStep").ValueSet(""),
			temporal.NewSearchAttributeKeyKeyword("RunbookTarget").ValueSet(""),
			temporal.NewSearchAttributeKeyKeyword("RequestedBy").ValueSet(""),
		),
		Stdout: logf,
		Stderr: logf,
	}
	for _, opt := range opts {
		opt(&o)
	}
	srv, err := testsuite.StartDevServer(ctx, o)
	if err != nil {
		t.Fatalf("start Temporal dev server: %v", err)
	}
	s := &Server{DevServer: srv, Client: srv.Client(), HostPort: srv.FrontendHostPort()}
	if o.EnableUI {
		s.UIURL = "http://127.0.0.1:" + o.UIPort
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Logf("stop dev server: %v", err)
		}
	})
	return s
}

// String describes the server.
func (s *Server) String() string { return fmt.Sprintf("temporal dev server at %s", s.HostPort) }
