package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// Handler is the gateway's HTTP interface:
//
//	POST /slack/commands       Slack slash commands (signed)
//	POST /slack/actions        Slack interactivity: button presses (signed)
//	POST /mattermost/commands  Mattermost slash commands (token)
//	POST /mattermost/actions   Mattermost interactive message buttons (signed context)
//	GET  /healthz
//
// Slack wants an answer within 3 seconds: commands and buttons are acknowledged at once and
// answered through the request's response_url when the work is done. A request that does not
// verify, or comes from a user chat.users does not list, changes nothing.
type Handler struct {
	Service *Service
	Dir     *Directory
	// Slack verifies Slack requests; nil disables the Slack endpoints.
	Slack *SlackVerifier
	// MattermostToken verifies Mattermost slash commands and signs buttons; "" disables the
	// Mattermost endpoints.
	MattermostToken string
	// Triggers bounds Mattermost replays (trigger IDs: user, time, single use, and Mattermost's
	// own signature when its public key is configured). nil: a verifier without the key.
	Triggers *TriggerVerifier
	// HTTP posts answers to response URLs.
	HTTP *http.Client
	Log  *slog.Logger

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mux    *http.ServeMux
}

func (h *Handler) init() {
	h.once.Do(func() {
		h.ctx, h.cancel = context.WithCancel(context.Background())
		if h.Log == nil {
			h.Log = slog.Default()
		}
		if h.HTTP == nil {
			h.HTTP = &http.Client{Timeout: 10 * time.Second}
		}
		if h.Triggers == nil {
			h.Triggers = &TriggerVerifier{}
		}
		h.mux = http.NewServeMux()
		h.mux.HandleFunc("POST /slack/commands", h.slackCommand)
		h.mux.HandleFunc("POST /slack/actions", h.slackAction)
		h.mux.HandleFunc("POST /mattermost/commands", h.mattermostCommand)
		h.mux.HandleFunc("POST /mattermost/actions", h.mattermostAction)
		h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	})
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.init()
	h.mux.ServeHTTP(w, r)
}

// Close waits for the answers under way (at most until ctx ends), then cancels the rest.
func (h *Handler) Close(ctx context.Context) {
	h.init()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	h.cancel()
}

// later runs fn beside the request, after the acknowledgement.
func (h *Handler) later(fn func(ctx context.Context)) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, 2*time.Minute)
		defer cancel()
		fn(ctx)
	}()
}

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, platform string, status int, err error) {
	h.Log.Warn("chat request refused", "platform", platform, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err.Error())
	http.Error(w, "refused: "+err.Error(), status)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func responseType(public bool) string {
	if public {
		return slack.ResponseTypeInChannel
	}
	return slack.ResponseTypeEphemeral
}

// ---- Slack ----

func (h *Handler) slackCommand(w http.ResponseWriter, r *http.Request) {
	if h.Slack == nil {
		http.NotFound(w, r)
		return
	}
	body, err := h.Slack.Verify(r)
	if err != nil {
		h.reject(w, r, Slack, http.StatusUnauthorized, err)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		h.reject(w, r, Slack, http.StatusBadRequest, fmt.Errorf("bad form: %w", err))
		return
	}
	text, responseURL := form.Get("text"), form.Get("response_url")
	id, err := h.Dir.Lookup(Slack, form.Get("user_id"), form.Get("user_name"))
	if err != nil {
		h.Log.Warn("chat request refused", "platform", Slack, "user", form.Get("user_id"), "reason", err.Error())
		writeJSON(w, slack.WebhookMessage{ResponseType: slack.ResponseTypeEphemeral, Text: refused("%v", err).Text})
		return
	}
	writeJSON(w, slack.WebhookMessage{ResponseType: slack.ResponseTypeEphemeral, Text: fmt.Sprintf(":hourglass_flowing_sand: `%s %s` …", h.Service.cmd(), oneLine(text, 200))})
	h.later(func(ctx context.Context) {
		reply := h.Service.Run(ctx, id, text)
		h.slackRespond(ctx, responseURL, &slack.WebhookMessage{ResponseType: responseType(reply.Public), Text: reply.Text})
	})
}

func (h *Handler) slackRespond(ctx context.Context, responseURL string, msg *slack.WebhookMessage) {
	if responseURL == "" {
		h.Log.Warn("slack request without response_url: answer dropped", "text", msg.Text)
		return
	}
	if err := slack.PostWebhookCustomHTTPContext(ctx, responseURL, h.HTTP, msg); err != nil {
		h.Log.Warn("slack answer not delivered", "error", err)
	}
}

func (h *Handler) slackAction(w http.ResponseWriter, r *http.Request) {
	if h.Slack == nil {
		http.NotFound(w, r)
		return
	}
	body, err := h.Slack.Verify(r)
	if err != nil {
		h.reject(w, r, Slack, http.StatusUnauthorized, err)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		h.reject(w, r, Slack, http.StatusBadRequest, fmt.Errorf("bad form: %w", err))
		return
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		h.reject(w, r, Slack, http.StatusBadRequest, fmt.Errorf("bad payload: %w", err))
		return
	}
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) == 0 {
		w.WriteHeader(http.StatusOK) // nothing of ours
		return
	}
	act := cb.ActionCallback.BlockActions[0]
	var v ButtonValue
	if err := json.Unmarshal([]byte(act.Value), &v); err != nil || v.Run == "" || v.Name == "" {
		h.reject(w, r, Slack, http.StatusBadRequest, errors.New("button value is not Stackrun's"))
		return
	}
	if v.RunID == "" {
		// A button from before buttons named their run: it could decide a newer run.
		h.reject(w, r, Slack, http.StatusBadRequest, errors.New("this button names no run ID (an older message): use the slash command"))
		return
	}
	id, lookupErr := h.Dir.Lookup(Slack, cb.User.ID, cb.User.Name)
	w.WriteHeader(http.StatusOK)
	h.later(func(ctx context.Context) {
		if lookupErr != nil {
			h.Log.Warn("chat request refused", "platform", Slack, "user", cb.User.ID, "reason", lookupErr.Error())
			h.slackRespond(ctx, cb.ResponseURL, &slack.WebhookMessage{ResponseType: slack.ResponseTypeEphemeral, Text: refused("%v", lookupErr).Text})
			return
		}
		reply := h.Service.Decide(ctx, id, act.ActionID, v.Run, v.RunID, v.Name, "")
		if !reply.Done {
			h.slackRespond(ctx, cb.ResponseURL, &slack.WebhookMessage{ResponseType: slack.ResponseTypeEphemeral, Text: reply.Text})
			return
		}
		// Replace the message: the same blocks without the buttons, and the decision.
		var blocks []slack.Block
		for _, b := range cb.Message.Blocks.BlockSet {
			if b.BlockType() != slack.MBTAction {
				blocks = append(blocks, b)
			}
		}
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, reply.Text, false, false), nil, nil))
		h.slackRespond(ctx, cb.ResponseURL, &slack.WebhookMessage{ReplaceOriginal: true, Text: reply.Text, Blocks: &slack.Blocks{BlockSet: blocks}})
	})
}

// ---- Mattermost ----

func (h *Handler) mattermostCommand(w http.ResponseWriter, r *http.Request) {
	if h.MattermostToken == "" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody))
	if err != nil {
		h.reject(w, r, Mattermost, http.StatusBadRequest, err)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		h.reject(w, r, Mattermost, http.StatusBadRequest, fmt.Errorf("bad form: %w", err))
		return
	}
	token := form.Get("token")
	if token == "" {
		token = strings.TrimPrefix(r.Header.Get("Authorization"), "Token ")
	}
	if !TokenMatches(token, h.MattermostToken) {
		h.reject(w, r, Mattermost, http.StatusUnauthorized, ErrBadToken)
		return
	}
	// The token is static: the trigger ID (user, time, once) is what bounds a replay.
	if err := h.Triggers.Verify(form.Get("trigger_id"), form.Get("user_id")); err != nil {
		h.reject(w, r, Mattermost, http.StatusUnauthorized, err)
		return
	}
	text, responseURL := form.Get("text"), form.Get("response_url")
	id, err := h.Dir.Lookup(Mattermost, form.Get("user_id"), form.Get("user_name"))
	if err != nil {
		h.Log.Warn("chat request refused", "platform", Mattermost, "user", form.Get("user_id"), "reason", err.Error())
		writeJSON(w, MattermostMessage{ResponseType: "ephemeral", Text: refused("%v", err).Text})
		return
	}
	writeJSON(w, MattermostMessage{ResponseType: "ephemeral", Text: fmt.Sprintf(":hourglass_flowing_sand: `%s %s` …", h.Service.cmd(), oneLine(text, 200))})
	h.later(func(ctx context.Context) {
		reply := h.Service.Run(ctx, id, text)
		if responseURL == "" {
			h.Log.Warn("mattermost request without response_url: answer dropped", "text", reply.Text)
			return
		}
		msg := MattermostMessage{ResponseType: responseType(reply.Public), Text: reply.Text}
		if err := postJSON(ctx, h.HTTP, "mattermost response", responseURL, msg); err != nil {
			h.Log.Warn("mattermost answer not delivered", "error", err)
		}
	})
}

// MattermostActionRequest is what Mattermost posts when a button is pressed.
type MattermostActionRequest struct {
	UserID    string            `json:"user_id"`
	UserName  string            `json:"user_name"`
	ChannelID string            `json:"channel_id"`
	PostID    string            `json:"post_id"`
	TriggerID string            `json:"trigger_id"`
	Context   MattermostContext `json:"context"`
}

// MattermostActionResponse updates the post and/or tells the user something.
type MattermostActionResponse struct {
	Update        *MattermostUpdate `json:"update,omitempty"`
	EphemeralText string            `json:"ephemeral_text,omitempty"`
}

// MattermostUpdate replaces the post's message (and, with empty props, removes its buttons).
type MattermostUpdate struct {
	Message string         `json:"message"`
	Props   map[string]any `json:"props"`
}

func (h *Handler) mattermostAction(w http.ResponseWriter, r *http.Request) {
	if h.MattermostToken == "" {
		http.NotFound(w, r)
		return
	}
	var req MattermostActionRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, MaxBody)).Decode(&req); err != nil {
		h.reject(w, r, Mattermost, http.StatusBadRequest, fmt.Errorf("bad payload: %w", err))
		return
	}
	c := req.Context
	// The context proves the button is ours, for this action, run, gate, time and user; the
	// trigger ID that the press is fresh, once, and by the user it names.
	if err := (ActionSigner{Key: h.MattermostToken}).VerifyContext(c, req.UserID, time.Now()); err != nil {
		h.reject(w, r, Mattermost, http.StatusUnauthorized, err)
		return
	}
	if err := h.Triggers.Verify(req.TriggerID, req.UserID); err != nil {
		h.reject(w, r, Mattermost, http.StatusUnauthorized, err)
		return
	}
	id, err := h.Dir.Lookup(Mattermost, req.UserID, req.UserName)
	if err != nil {
		h.Log.Warn("chat request refused", "platform", Mattermost, "user", req.UserID, "reason", err.Error())
		writeJSON(w, MattermostActionResponse{EphemeralText: refused("%v", err).Text})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	reply := h.Service.Decide(ctx, id, c.Action, c.Run, c.RunID, c.Name, "")
	if !reply.Done {
		writeJSON(w, MattermostActionResponse{EphemeralText: reply.Text})
		return
	}
	writeJSON(w, MattermostActionResponse{Update: &MattermostUpdate{Message: reply.Text, Props: map[string]any{}}})
}
