package chat_test

// Fuzz targets of the chat payloads (issue 17): command text (Tokenize), Slack and Mattermost
// request bodies through the real Handler. Properties: no panic; quoting round trips; an
// unterminated quote is an error; a body whose signature does not verify is refused (401) and
// reaches nothing; a verified body from a user chat.users does not list, or a malformed one,
// never reaches Temporal (the Service has no client: reaching it would panic).

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/chat"
)

func FuzzTokenize(f *testing.F) {
	f.Add("restart-service", "compute1", "it's “quoted”", uint8(0))
	f.Add("a\u00a0b", "", "\t", uint8(1))
	f.Add("'", "\"", "‘x’", uint8(2))
	f.Add("0", "\xc8", "\x98", uint8(0)) // found by fuzzing on 2 December: invalid alone, valid joined
	f.Fuzz(func(t *testing.T, a, b, c string, q uint8) {
		toks, err := chat.Tokenize(a + " " + b + " " + c)
		if err == nil {
			for _, tok := range toks {
				if tok == "" && !strings.ContainsAny(a+b+c, "\"'“‘„") {
					t.Fatalf("empty token from unquoted text %q", a+" "+b+" "+c)
				}
			}
		}
		// Round trip: each value quoted with a quote it does not hold comes back whole (invalid
		// UTF-8 comes back as U+FFFD, which every validator refuses as non-ASCII, naming the
		// field). Each value on its own: "\xc8" and "\x98" are invalid, joined they are valid.
		if !utf8.ValidString(a) || !utf8.ValidString(b) || !utf8.ValidString(c) {
			return
		}
		open, close := []string{`"`, `'`, "“"}[q%3], []string{`"`, `'`, "”"}[q%3]
		var line []string
		want := []string{a, b, c}
		for _, v := range want {
			if strings.Contains(v, close) {
				return
			}
			line = append(line, open+v+close)
		}
		got, err := chat.Tokenize(strings.Join(line, " "))
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%q tokenised as %q (%v), want %q", strings.Join(line, " "), got, err, want)
		}
		// Cut before the last closing quote: an error, never a shorter command.
		cut := strings.Join(line, " ")
		cut = cut[:len(cut)-len(close)]
		if _, err := chat.Tokenize(cut); err == nil && !strings.Contains(c, open) {
			t.Fatalf("unterminated %q tokenised without error", cut)
		}
	})
}

// refusingTransport records the answers the handler would post to response URLs.
type refusingTransport struct{ n int }

func (r *refusingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	r.n++
	return nil, errors.New("no network in the fuzz test")
}

func fuzzHandler() *chat.Handler {
	cfg := config.Chat{} // no users: every request is from someone unknown
	return &chat.Handler{
		Service:         &chat.Service{Command: "/stackrun"},
		Dir:             chat.NewDirectory(cfg),
		Slack:           &chat.SlackVerifier{Secret: "s3cret"},
		MattermostToken: "mm-token",
		HTTP:            &http.Client{Transport: &refusingTransport{}, Timeout: time.Second},
		Log:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func FuzzChatRequests(f *testing.F) {
	f.Add(uint8(0), "text=list&user_id=U1&response_url=http://x/", true)
	f.Add(uint8(1), `payload={"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"approve","value":"{\"run\":\"r\",\"name\":\"g\",\"run_id\":\"x\"}"}]}`, true)
	f.Add(uint8(1), `payload={"type":"block_actions","actions":[{"value":"nope"}]}`, true)
	f.Add(uint8(2), "token=mm-token&text=run+restart-service+compute1&user_id=u1&trigger_id=t", false)
	f.Add(uint8(3), `{"user_id":"u1","context":{"action":"approve","run":"r","name":"g"}}`, false)
	f.Add(uint8(0), "text=%zz", false)
	paths := []string{"/slack/commands", "/slack/actions", "/mattermost/commands", "/mattermost/actions"}
	f.Fuzz(func(t *testing.T, p uint8, body string, sign bool) {
		h := fuzzHandler()
		defer h.Close(context.Background())
		path := paths[int(p)%len(paths)]
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		if strings.HasPrefix(path, "/slack/") {
			ts := time.Now().Unix()
			sig := chat.SignSlack("s3cret", ts, []byte(body))
			if !sign {
				sig = chat.SignSlack("other", ts, []byte(body))
			}
			r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
			r.Header.Set("X-Slack-Signature", sig)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else if strings.HasSuffix(path, "/commands") {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			r.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if strings.HasPrefix(path, "/slack/") && !sign && w.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned %s body %q answered %d, not 401", path, body, w.Code)
		}
		if w.Code >= 500 {
			t.Fatalf("%s body %q: HTTP %d %s", path, body, w.Code, w.Body)
		}
	})
}
