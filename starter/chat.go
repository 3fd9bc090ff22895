package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/chat"
	"github.com/stackrun/stackrun/internal/app/control"
)

func newChatCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chat",
		Short: "ChatOps gateway for Slack and Mattermost",
		Args:  exactArgs(),
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newChatServeCmd(a))
	return cmd
}

func newChatServeCmd(a *app) *cobra.Command {
	var logLevel string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve Slack and Mattermost slash commands and buttons (chat.listen_address)",
		Long: `Serve the ChatOps gateway on chat.listen_address:

  POST /slack/commands       Slack slash command (Request URL of /stackrun)
  POST /slack/actions        Slack interactivity (Approve/Reject, Retry/Skip/Abort buttons)
  POST /mattermost/commands  Mattermost slash command
  POST /mattermost/actions   Mattermost message buttons (chat.public_url + this path)
  GET  /healthz

Every Slack request is verified with chat.slack.signing_secret (v0 HMAC-SHA256 of timestamp and
body, 5-minute window, replays refused); every Mattermost command with chat.mattermost.token and
its trigger ID (user, 5-minute window, once; Mattermost's signature with
chat.mattermost.signing_public_key). Every start and decision the gateway makes is signed with
trust.chat_gateway.private_key_file, naming the chat user; the worker accepts it only as far as
trust.chat_gateway.vouch allows.
Chat users map to operators and roles through chat.users and chat.roles; anyone else is refused.
Commands: /stackrun <runbook> [flags] [reason], approve|reject <run> <gate>, resolve <run> <step>
retry|skip|abort, status <run>, list [waiting|stalled|running|all]. The worker posts the gate,
escalation, stalled-step and run-finished messages (chat.slack.*, chat.mattermost.webhook_url,
chat.webhook_url). See docs/chatops.md.`,
		Example: `  stackrun chat serve --config /etc/stackrun/stackrun.yaml
  STACKRUN_CHAT_LISTEN_ADDRESS=0.0.0.0:8090 stackrun chat serve`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return usagef("--log-level %q: %v", logLevel, err)
			}
			log := slog.New(slog.NewTextHandler(a.errOut, &slog.HandlerOptions{Level: lvl}))
			cfg, err := config.Load(config.LoadOptions{Flags: cmd.Flags()})
			if err != nil {
				return err
			}
			if err := cfg.ValidateFor(config.ForChat); err != nil {
				return err
			}
			a.cfg = cfg
			host, _ := os.Hostname()
			c, err := control.Dial(cfg, control.DialOptions{Identity: "stackrun-chat@" + host, Logger: log})
			if err != nil {
				return err
			}
			a.client = c
			key, err := chat.GatewayKey(cfg)
			if err != nil {
				return err
			}
			triggers := &chat.TriggerVerifier{}
			if k := cfg.Chat.Mattermost.SigningPublicKey; k != "" {
				if triggers.PublicKey, err = chat.ParseMattermostKey(k); err != nil {
					return fmt.Errorf("chat.mattermost.signing_public_key: %w", err)
				}
			} else if cfg.Chat.Mattermost.Token != "" {
				log.Warn("chat.mattermost.signing_public_key is not set: the user a Mattermost request names is not proven by Mattermost's signature (trigger IDs still bound replays)")
			}
			h := &chat.Handler{
				Service: &chat.Service{Client: c, TaskQueue: cfg.Temporal.TaskQueue, Namespace: cfg.Temporal.Namespace,
					WebUIURL: cfg.Chat.WebUIURL, Log: log, Key: key},
				Dir:             chat.NewDirectory(cfg.Chat),
				MattermostToken: cfg.Chat.Mattermost.Token,
				Triggers:        triggers,
				Log:             log,
			}
			if cfg.Chat.Slack.SigningSecret != "" {
				h.Slack = &chat.SlackVerifier{Secret: cfg.Chat.Slack.SigningSecret}
			}
			ln, err := net.Listen("tcp", cfg.Chat.ListenAddress)
			if err != nil {
				return fmt.Errorf("chat.listen_address: %w", err)
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
				WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
			fmt.Fprintf(a.out, "stackrun chat: listening on http://%s (slack %s, mattermost %s, %d users)\n",
				ln.Addr(), onOff(h.Slack != nil), onOff(h.MattermostToken != ""), len(cfg.Chat.Users))
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-cmd.Context().Done():
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = srv.Shutdown(ctx)
			h.Close(ctx)
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
