// Package chat is Stackrun's ChatOps gateway: it verifies Slack and Mattermost requests (Slack's
// v0 signatures with a replay window, Mattermost's token), maps chat users to operators and their
// roles, runs slash commands and button presses through internal/app/control (the same operations as
// the CLI), and builds the messages — Slack Block Kit, Mattermost attachments, generic JSON — that
// the worker's Notify activity posts through the sinks of this package.
//
// The gateway is not the only guard: every decision goes through the workflow's update validator,
// which checks the approver against the worker's policy and the two-person rule again.
package chat

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/infra/trust/sshsign"
	"github.com/stackrun/stackrun/workflows"
)

// Chat platforms.
const (
	Slack      = "slack"
	Mattermost = "mattermost"
)

// Identity is a verified chat user mapped to an operator.
type Identity struct {
	Platform string // slack | mattermost
	UserID   string // the platform's user ID
	UserName string // the platform's user name, informational
	Operator string // the operator name runs and decisions record
	Roles    []string

	runbooks []string
	gates    []string
}

// Via is what decisions record as their channel: the platform and the chat user ID.
func (id Identity) Via() string { return id.Platform + ":" + id.UserID }

// CanStart reports whether the user's roles allow starting the runbook (or resolving its steps).
func (id Identity) CanStart(runbook string) bool { return config.Allows(id.runbooks, runbook) }

// CanDecide reports whether the user's roles allow approving or rejecting the gate. The workflow
// checks policy.approvers and the two-person rule on top. A gate of ExplicitGates needs a role
// that names it: "*" does not cover it.
func (id Identity) CanDecide(gate string) bool {
	if slices.Contains(ExplicitGates, gate) {
		return slices.Contains(id.gates, gate)
	}
	return config.Allows(id.gates, gate)
}

// ExplicitGates are the gates a chat role must name to allow them (and, for the runbook flag
// that opens them, to start a run with it): starting and rebooting tenants' instances is not
// part of "every gate".
var ExplicitGates = []string{workflows.GateStartInstances}

// Directory maps chat users to operators and roles (chat.users, chat.roles).
type Directory struct {
	users map[string]Identity // platform:id
}

// UnknownUserError is a chat user that chat.users does not list.
type UnknownUserError struct{ Platform, UserID, UserName string }

func (e *UnknownUserError) Error() string {
	who := e.UserID
	if e.UserName != "" {
		who = fmt.Sprintf("%s (%s)", e.UserName, e.UserID)
	}
	return fmt.Sprintf("%s user %s is not a Stackrun operator: ask an administrator to add them to chat.users", e.Platform, who)
}

// NewDirectory builds the directory from the chat configuration.
func NewDirectory(c config.Chat) *Directory {
	d := &Directory{users: map[string]Identity{}}
	for _, u := range c.Users {
		id := Identity{Operator: u.Operator, Roles: slices.Clone(u.Roles)}
		for _, r := range u.Roles {
			role := c.Roles[strings.ToLower(r)]
			id.runbooks = append(id.runbooks, role.Runbooks...)
			id.gates = append(id.gates, role.Gates...)
		}
		if u.Slack != "" {
			s := id
			s.Platform, s.UserID = Slack, u.Slack
			d.users[Slack+":"+u.Slack] = s
		}
		if u.Mattermost != "" {
			m := id
			m.Platform, m.UserID = Mattermost, u.Mattermost
			d.users[Mattermost+":"+u.Mattermost] = m
		}
	}
	return d
}

// Lookup returns the operator behind a chat user, or an *UnknownUserError.
func (d *Directory) Lookup(platform, userID, userName string) (Identity, error) {
	id, ok := d.users[platform+":"+userID]
	if !ok || userID == "" {
		return Identity{}, &UnknownUserError{Platform: platform, UserID: userID, UserName: userName}
	}
	id.UserName = userName
	return id, nil
}

// GatewayKey loads the chat gateway's private key (trust.chat_gateway.private_key_file) and
// checks that it is the key the worker knows (trust.chat_gateway.public_key): a gateway signing
// with another key would have every decision refused.
func GatewayKey(cfg *config.Config) (sshsign.Signer, error) {
	gw := cfg.Trust.ChatGateway
	k, err := sshsign.FromKeyFile(gw.PrivateKeyFile, nil)
	if err != nil {
		return nil, fmt.Errorf("trust.chat_gateway.private_key_file: %w", err)
	}
	pub, err := trust.ParseAuthorizedKey(gw.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("trust.chat_gateway.public_key: %w", err)
	}
	if k.Key().Fingerprint != pub.Fingerprint {
		return nil, fmt.Errorf("trust.chat_gateway.private_key_file is the key %s, but trust.chat_gateway.public_key is %s", k.Key().Fingerprint, pub.Fingerprint)
	}
	return k, nil
}
