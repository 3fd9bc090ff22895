package workerapp

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/infra/trust"
)

// Keys serves the key policy runs verify signatures against (activities.Machine.Keys). It reads
// the configuration file (and trust.keys_file) again whenever either changes, so that a key
// removed there stops working in waiting runs at their next decision, without a restart. A file
// that no longer loads or validates keeps the last good policy, and says so in the log.
type Keys struct {
	log    *slog.Logger
	mu     sync.Mutex
	pol    trust.Policy
	file   string // the configuration file ("" when none)
	extra  string // trust.keys_file
	stamps map[string]stamp
}

type stamp struct {
	mod  time.Time
	size int64
}

// NewKeys builds the policy of cfg and watches its files.
func NewKeys(cfg *config.Config, log *slog.Logger) (*Keys, error) {
	pol, err := cfg.KeyPolicy()
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	k := &Keys{log: log, pol: pol, file: cfg.File, extra: cfg.Trust.KeysFile}
	k.stamps = k.read()
	return k, nil
}

func (k *Keys) read() map[string]stamp {
	out := map[string]stamp{}
	for _, f := range []string{k.file, k.extra} {
		if f == "" {
			continue
		}
		if st, err := os.Stat(f); err == nil {
			out[f] = stamp{st.ModTime(), st.Size()}
		}
	}
	return out
}

func same(a, b map[string]stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for f, s := range a {
		if b[f] != s {
			return false
		}
	}
	return true
}

// Policy returns the key policy, loaded again if its files changed.
func (k *Keys) Policy() (trust.Policy, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.read()
	if k.file == "" || same(now, k.stamps) {
		return k.pol, nil
	}
	k.stamps = now
	cfg, err := config.Load(config.LoadOptions{Path: k.file})
	if err == nil {
		err = cfg.ValidateFor(config.ForCLI)
	}
	var pol trust.Policy
	if err == nil {
		pol, err = cfg.KeyPolicy()
	}
	if err != nil {
		k.log.Error("trust: the changed configuration does not load; the previous keys stay in force", "file", k.file, "error", err)
		return k.pol, nil
	}
	k.log.Info("trust: keys reloaded", "file", k.file, "operators", len(pol.Operators), "gateways", len(pol.Gateways))
	k.pol, k.extra = pol, cfg.Trust.KeysFile
	return pol, nil
}
