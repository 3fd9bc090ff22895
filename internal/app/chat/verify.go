package chat

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// MaxBody is the largest request body the gateway reads.
const MaxBody = 1 << 20

// ReplayWindow is how far a Slack request's timestamp may be from now (Slack's own rule), and how
// long a signature is remembered to refuse replays.
const ReplayWindow = 5 * time.Minute

// Errors of request verification; the HTTP answer names them.
var (
	ErrBadSignature = errors.New("request signature does not verify")
	ErrExpired      = errors.New("request timestamp is more than 5 minutes from now (expired or replayed)")
	ErrReplayed     = errors.New("request was already received (replayed)")
	ErrBadToken     = errors.New("request token does not match")
	ErrMissing      = errors.New("request carries no signature or timestamp")
)

// SlackVerifier checks Slack's v0 request signatures: HMAC-SHA256 over "v0:<timestamp>:<body>"
// with the app's signing secret (slack-go's SecretsVerifier: constant-time compare, 5-minute
// window), and refuses a signature seen before within the window (a replay).
type SlackVerifier struct {
	Secret string

	mu   sync.Mutex
	seen map[string]time.Time // signature -> when it may be forgotten
}

// Verify reads the body (at most MaxBody) and checks the request. It returns the body.
func (v *SlackVerifier) Verify(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if len(body) > MaxBody {
		return nil, errors.New("request body too large")
	}
	sv, err := slack.NewSecretsVerifier(r.Header, v.Secret)
	switch {
	case errors.Is(err, slack.ErrExpiredTimestamp):
		return nil, ErrExpired
	case errors.Is(err, slack.ErrMissingHeaders):
		return nil, ErrMissing
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if _, err := sv.Write(body); err != nil {
		return nil, err
	}
	if err := sv.Ensure(); err != nil {
		return nil, ErrBadSignature
	}
	if !v.remember(r.Header.Get("X-Slack-Signature")) {
		return nil, ErrReplayed
	}
	return body, nil
}

// remember records a verified signature; false when it was already seen within the window.
func (v *SlackVerifier) remember(sig string) bool {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = map[string]time.Time{}
	}
	for s, until := range v.seen {
		if now.After(until) {
			delete(v.seen, s)
		}
	}
	if _, dup := v.seen[sig]; dup {
		return false
	}
	// A timestamp may be up to ReplayWindow in the future too: keep it twice as long.
	v.seen[sig] = now.Add(2 * ReplayWindow)
	return true
}

// SignSlack computes Slack's X-Slack-Signature for a body and timestamp, as Slack does. Tests and
// tools use it to build requests.
func SignSlack(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "v0:%d:", ts)
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

// TokenMatches compares a Mattermost token in constant time.
func TokenMatches(got, want string) bool {
	if want == "" || got == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// ActionSigner signs the context of the buttons the worker posts to Mattermost, which sends it
// back unchanged and unsigned when a button is pressed: the signature (HMAC-SHA256 with the
// Mattermost token) proves the gateway's own message carried that action for that run.
type ActionSigner struct{ Key string }

// Sign returns the hex HMAC of the fields.
func (s ActionSigner) Sign(fields ...string) string {
	m := hmac.New(sha256.New, []byte(s.Key))
	m.Write([]byte(strings.Join(fields, "\x00")))
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature in constant time.
func (s ActionSigner) Verify(sig string, fields ...string) bool {
	if s.Key == "" {
		return false
	}
	want := s.Sign(fields...)
	return subtle.ConstantTimeCompare([]byte(sig), []byte(want)) == 1
}
