package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/trust/sshsign"
)

// signer is what signs the operator's starts and decisions: the key file of --key (or
// trust.signing_key_file), else the operator's key in ssh-agent ($SSH_AUTH_SOCK), chosen by the
// fingerprints trust.operators lists for them. The workflow verifies the signature against the
// worker's policy: signing is not what grants anything, and --as with someone else's name fails
// there. The returned function closes the agent connection.
func (a *app) signer(cmd *cobra.Command, operator string) (control.Signer, func(), error) {
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return nil, nil, err
	}
	file := a.keyFile
	if file == "" {
		file = cfg.Trust.SigningKeyFile
	}
	if file != "" {
		k, err := sshsign.FromKeyFile(file, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("--key: %w", err)
		}
		return control.KeySigner{Key: k}, func() {}, nil
	}
	var want []string
	if pol, err := cfg.KeyPolicy(); err == nil {
		for _, k := range pol.KeysOf(operator) {
			want = append(want, k.Fingerprint)
		}
	}
	k, closeAgent, err := sshsign.FromAgent("", want)
	if err != nil {
		return nil, nil, fmt.Errorf("sign as %s: %w", operator, err)
	}
	return control.KeySigner{Key: k}, func() { _ = closeAgent() }, nil
}
