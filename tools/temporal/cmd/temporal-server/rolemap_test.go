package main

import (
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/log"
)

// The roles file of the repository parses, and maps as docs/production.md says.
func TestRolesFileOfTheRepo(t *testing.T) {
	b, err := os.ReadFile("../../../../deploy/temporal/tls-roles")
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseRoles(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]authorization.Claims{
		"internode":         {System: authorization.RoleAdmin},
		"temporal-admin":    {System: authorization.RoleAdmin},
		"stackrun-worker":   {Namespaces: map[string]authorization.Role{"default": authorization.RoleWriter}},
		"stackrun-operator": {Namespaces: map[string]authorization.Role{"default": authorization.RoleWriter}},
		"stackrun-chat":     {Namespaces: map[string]authorization.Role{"default": authorization.RoleWriter}},
		"stackrun-viewer":   {Namespaces: map[string]authorization.Role{"default": authorization.RoleReader}},
		"temporal-ui":       {System: authorization.RoleReader},
	}
	if len(m) != len(want) {
		t.Fatalf("%d subjects, want %d: %v", len(m), len(want), m)
	}
	for cn, w := range want {
		got := m[cn]
		if got.System != w.System || len(got.Namespaces) != len(w.Namespaces) || got.Namespaces["default"] != w.Namespaces["default"] {
			t.Errorf("%s: %+v, want %+v", cn, got, w)
		}
	}
}

func TestParseRolesRefusesBadLines(t *testing.T) {
	for _, bad := range []string{"lonely-cn", "cn default:owner", "cn :reader", "cn default", "a system:admin\na default:reader"} {
		if _, err := parseRoles([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestRoleMapClaimsAndReload(t *testing.T) {
	f := filepath.Join(t.TempDir(), "roles")
	if err := os.WriteFile(f, []byte("viewer default:reader\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := loadRoleMap(f, log.NewNoopLogger())
	if err != nil {
		t.Fatal(err)
	}
	claims := func(cn string) *authorization.Claims {
		c, err := m.GetClaims(&authorization.AuthInfo{TLSSubject: &pkix.Name{CommonName: cn}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := claims("viewer"); c.Namespaces["default"] != authorization.RoleReader || c.System != 0 {
		t.Fatalf("viewer: %+v", c)
	}
	if c := claims("stranger"); c.System != 0 || len(c.Namespaces) != 0 {
		t.Fatalf("a CN not listed has roles: %+v", c)
	}
	if c, _ := m.GetClaims(&authorization.AuthInfo{}); c.System != 0 || len(c.Namespaces) != 0 {
		t.Fatalf("no certificate has roles: %+v", c)
	}
	// Revoked: the next check after reloadEvery no longer grants it.
	if err := os.WriteFile(f, []byte("# nobody\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Second)
	_ = os.Chtimes(f, future, future)
	m.checked = time.Time{}
	if c := claims("viewer"); len(c.Namespaces) != 0 {
		t.Fatalf("revoked viewer still has %+v", c)
	}
	// A file that does not parse keeps the previous roles.
	if err := os.WriteFile(f, []byte("viewer default:owner\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	future = future.Add(time.Second)
	_ = os.Chtimes(f, future, future)
	m.checked = time.Time{}
	if c := claims("viewer"); len(c.Namespaces) != 0 {
		t.Fatalf("a broken file changed the roles: %+v", c)
	}
}
