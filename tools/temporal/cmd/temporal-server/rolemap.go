package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// roleMap is a ClaimMapper: the subject CN of the client certificate (already verified against
// global.tls.frontend.server.clientCaFiles by the TLS handshake) names the caller, and the file
// gives each name its roles. A name not in the file gets no role, so Temporal's default
// authorizer refuses it everything but the health checks. JWTs are ignored: a token does not
// add to what the certificate may do.
//
// The file is re-read when it changes (checked at most every reloadEvery), so revoking a client
// is an edit on every frontend, no restart. A file that no longer parses keeps the previous map
// and is logged.
type roleMap struct {
	path   string
	logger log.Logger

	mu      sync.Mutex
	byCN    map[string]authorization.Claims
	mtime   time.Time
	checked time.Time
}

const reloadEvery = 5 * time.Second

func loadRoleMap(path string, logger log.Logger) (*roleMap, error) {
	m := &roleMap{path: path, logger: logger}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--tls-roles: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tls-roles: %w", err)
	}
	if m.byCN, err = parseRoles(b); err != nil {
		return nil, fmt.Errorf("--tls-roles %s: %w", path, err)
	}
	m.mtime, m.checked = st.ModTime(), time.Now()
	return m, nil
}

// GetClaims implements authorization.ClaimMapper.
func (m *roleMap) GetClaims(ai *authorization.AuthInfo) (*authorization.Claims, error) {
	if ai == nil || ai.TLSSubject == nil || ai.TLSSubject.CommonName == "" {
		return &authorization.Claims{}, nil // no verified certificate: no role
	}
	cn := ai.TLSSubject.CommonName
	m.mu.Lock()
	m.reload()
	c, ok := m.byCN[cn]
	m.mu.Unlock()
	if !ok {
		m.logger.Warn("client certificate has no role (--tls-roles)", tag.NewStringTag("subject", ai.TLSSubject.String()))
		return &authorization.Claims{Subject: cn}, nil
	}
	ns := make(map[string]authorization.Role, len(c.Namespaces))
	for k, v := range c.Namespaces {
		ns[k] = v
	}
	return &authorization.Claims{Subject: cn, System: c.System, Namespaces: ns}, nil
}

// reload re-reads the file if it changed; m.mu is held.
func (m *roleMap) reload() {
	if time.Since(m.checked) < reloadEvery {
		return
	}
	m.checked = time.Now()
	st, err := os.Stat(m.path)
	if err != nil {
		m.logger.Error("--tls-roles: keeping the previous roles", tag.Error(err))
		return
	}
	if st.ModTime().Equal(m.mtime) {
		return
	}
	b, err := os.ReadFile(m.path)
	if err == nil {
		var byCN map[string]authorization.Claims
		if byCN, err = parseRoles(b); err == nil {
			m.byCN, m.mtime = byCN, st.ModTime()
			m.logger.Info("--tls-roles reloaded", tag.NewStringTag("file", m.path), tag.NewInt("subjects", len(byCN)))
			return
		}
	}
	m.logger.Error("--tls-roles: keeping the previous roles", tag.Error(err))
}

var roleNames = map[string]authorization.Role{
	"worker": authorization.RoleWorker,
	"reader": authorization.RoleReader,
	"writer": authorization.RoleWriter,
	"admin":  authorization.RoleAdmin,
}

// parseRoles reads lines "<CN> <scope>:<role> [<scope>:<role>...]" where scope is "system"
// (every namespace and the cluster-level APIs) or a namespace name; '#' starts a comment.
func parseRoles(b []byte) (map[string]authorization.Claims, error) {
	out := map[string]authorization.Claims{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: want \"<subject CN> <namespace|system>:<role>...\", got %q", n, strings.TrimSpace(line))
		}
		if _, dup := out[f[0]]; dup {
			return nil, fmt.Errorf("line %d: %s listed twice", n, f[0])
		}
		c := authorization.Claims{Subject: f[0], Namespaces: map[string]authorization.Role{}}
		for _, g := range f[1:] {
			scope, name, ok := strings.Cut(g, ":")
			role, known := roleNames[name]
			if !ok || scope == "" || !known {
				return nil, fmt.Errorf("line %d: %q: want <namespace|system>:<reader|writer|admin|worker>", n, g)
			}
			if scope == "system" {
				c.System |= role
			} else {
				c.Namespaces[scope] |= role
			}
		}
		out[f[0]] = c
	}
	return out, sc.Err()
}
