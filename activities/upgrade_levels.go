package activities

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/stackrun/stackrun/internal/infra/placeholder"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// The [upgrade_levels] pin of Nova's rolling upgrade: `compute = auto` while services of two
// builds run side by side, removed when every service runs the new one. The file is edited line
// by line (comments and order stay as they are) and written over SFTP atomically, with its mode
// and owner kept.

var (
	reLevel   = regexp.MustCompile(`^[a-z0-9][a-z0-9.]{0,31}$`)
	reSection = regexp.MustCompile(`^\s*\[([^\]]+)\]\s*$`)
)

// IniGet returns the value of key in section ("" and false when not set). oslo.config reads the
// last occurrence, so this does too.
func IniGet(data []byte, section, key string) (string, bool) {
	val, found := "", false
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		if m := reSection.FindStringSubmatch(line); m != nil {
			in = m[1] == section
			continue
		}
		if !in {
			continue
		}
		if k, v, ok := iniKV(line); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

func iniKV(line string) (string, string, bool) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' || t[0] == ';' {
		return "", "", false
	}
	k, v, ok := strings.Cut(t, "=")
	if !ok {
		return "", "", false
	}
	return strings.TrimSpace(k), strings.TrimSpace(v), true
}

// IniSet sets key = value in section (value "" removes every occurrence of key there). An
// existing line is replaced in place; a new key goes right after the section header; a missing
// section is appended.
func IniSet(data []byte, section, key, value string) []byte {
	lines := strings.Split(string(data), "\n")
	var out []string
	in, header, done := false, -1, false
	for _, line := range lines {
		if m := reSection.FindStringSubmatch(line); m != nil {
			in = m[1] == section
			out = append(out, line)
			if in && header < 0 {
				header = len(out) - 1
			}
			continue
		}
		if in {
			if k, _, ok := iniKV(line); ok && k == key {
				if value != "" && !done {
					out = append(out, key+" = "+value)
					done = true
				}
				continue
			}
		}
		out = append(out, line)
	}
	if value != "" && !done {
		if header >= 0 {
			out = append(out[:header+1], append([]string{key + " = " + value}, out[header+1:]...)...)
		} else {
			if len(out) > 0 && out[len(out)-1] == "" {
				out = out[:len(out)-1]
			}
			out = append(out, "", "["+section+"]", key+" = "+value, "")
		}
	}
	return []byte(strings.Join(out, "\n"))
}

// SetUpgradeLevels sets `[upgrade_levels] compute` in Nova's configuration file on host, or
// removes it when Compute is "". It reads the file first: when the value is already the wanted
// one nothing is written.
func (u *Upgrade) SetUpgradeLevels(ctx context.Context, req UpgradeLevelsRequest) (UpgradeLevelsResult, error) {
	out := UpgradeLevelsResult{Host: req.Host}
	_, rh, err := u.Hosts.lookup(req.Host)
	if err != nil {
		return out, err
	}
	if req.Compute != "" && !reLevel.MatchString(req.Compute) {
		return out, invalidField("compute", "%q: want auto, a release name or an RPC version like 6.0", req.Compute)
	}
	svc, err := u.service("service", "nova")
	if err != nil {
		return out, err
	}
	if u.Files == nil {
		return out, fmt.Errorf("set upgrade_levels: file transfer %w", errNotConfigured)
	}
	out.File = expandHost(svc.ConfigFile, req.Host)
	if err := remote.ValidateArg(placeholder.KindPath, out.File); err != nil {
		return out, invalidField("upgrade.services.nova.config_file", "%v", err)
	}
	data, err := u.Files.ReadFile(ctx, rh, out.File, 4<<20)
	if err != nil {
		return out, RemoteError(fmt.Errorf("read %s on %s: %w", out.File, req.Host, err))
	}
	out.Before, _ = IniGet(data, "upgrade_levels", "compute")
	if out.Before == req.Compute {
		return out, nil
	}
	res, err := u.mustExec(ctx, req.Host, "file_mode_owner", map[string]string{"path": out.File})
	if err != nil {
		return out, err
	}
	f := strings.Fields(res.Stdout)
	if len(f) != 2 {
		return out, fmt.Errorf("stat %s on %s: unexpected %q", out.File, req.Host, res.Stdout)
	}
	mode, err := strconv.ParseUint(f[0], 8, 32)
	if err != nil {
		return out, fmt.Errorf("stat %s on %s: mode %q: %w", out.File, req.Host, f[0], err)
	}
	if _, err := u.Files.CopyFile(ctx, rh, bytes.NewReader(IniSet(data, "upgrade_levels", "compute", req.Compute)), out.File, os.FileMode(mode)); err != nil {
		return out, RemoteError(fmt.Errorf("write %s on %s: %w", out.File, req.Host, err))
	}
	if _, err := u.mustExec(ctx, req.Host, "chown", map[string]string{"owner": f[1], "path": out.File}); err != nil {
		return out, err
	}
	out.Changed = true
	return out, nil
}
