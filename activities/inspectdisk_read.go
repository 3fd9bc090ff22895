package activities

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stackrun/stackrun/internal/infra/placeholder"

	"go.temporal.io/sdk/activity"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// ValidateGuestPath checks one requested path: absolute, clean (no "..", "//", "/./", trailing
// '/'), not "/", and only characters the command catalogue passes (letters, digits, . _ / + - @ :).
// NUL, newlines, whitespace and shell metacharacters are refused.
func ValidateGuestPath(p string) error {
	err := remote.ValidateArg(placeholder.KindPath, p)
	var ae *remote.ArgError
	if errors.As(err, &ae) {
		return errors.New(ae.Reason)
	}
	return err
}

// ValidateGuestRequest checks the bounds of a request (count, cap, total) and every path.
func ValidateGuestRequest(paths []string, maxBytes int64) error {
	if len(paths) == 0 {
		return fmt.Errorf("no path requested")
	}
	if len(paths) > MaxGuestPaths {
		return fmt.Errorf("%d paths requested: at most %d per run", len(paths), MaxGuestPaths)
	}
	if maxBytes < 1 || maxBytes > MaxGuestFileBytes {
		return fmt.Errorf("max bytes %d: must be 1 to %d per file", maxBytes, MaxGuestFileBytes)
	}
	if int64(len(paths))*maxBytes > MaxGuestTotalBytes {
		return fmt.Errorf("%d paths × %d bytes exceeds %d bytes per run (the report must stay small): ask for fewer files or fewer bytes",
			len(paths), maxBytes, MaxGuestTotalBytes)
	}
	seen := map[string]bool{}
	for i, p := range paths {
		if err := ValidateGuestPath(p); err != nil {
			return fmt.Errorf("path[%d] %q: %v", i, displayPath(p), err)
		}
		if seen[p] {
			return fmt.Errorf("path[%d] %q: requested twice", i, p)
		}
		seen[p] = true
	}
	return nil
}

// displayPath shows a refused path without control characters.
func displayPath(p string) string {
	if len(p) > 80 {
		p = p[:80] + "..."
	}
	return strconv.QuoteToASCII(p)[1 : len(strconv.QuoteToASCII(p))-1]
}

// ReadGuestFiles reads the requested files of the mounted guest file system, each capped at
// MaxBytes. A path is joined to the mount point and canonicalised on the host: one that resolves
// outside the mount point (a symlink in the image pointing at /etc/shadow, say) is refused and
// never read, and so is anything that is not a regular file on the guest's own file system.
//
// A cancel of the run stops it: Temporal delivers a cancel only in the answer to a heartbeat, so
// it heartbeats all along, also while one command runs (a head that reads a bad spot of the disk,
// a sha256sum of a big file); the cancel ends ctx, which kills the command under way, and the
// attempt ends with ctx's error (context.Canceled: the SDK reports it cancelled), never with what
// was read before.
func (d *DiskInspector) ReadGuestFiles(ctx context.Context, req GuestFileRequest) ([]GuestFile, error) {
	if activity.IsActivity(ctx) {
		defer keepHeartbeating(ctx, d.heartbeatEvery(ctx), "collecting")()
	}
	files, err := d.readGuestFiles(ctx, req)
	if cerr := ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("reading files on %s stopped: %w", req.Location.Host, cerr)
	}
	return files, err
}

// recordHeartbeat is activity.RecordHeartbeat (tests count the heartbeats).
var recordHeartbeat = activity.RecordHeartbeat

// heartbeatEvery is d.Heartbeat, or a quarter of the attempt's heartbeat timeout, at most 5 s
// (the SDK sends one heartbeat per 0.8 × the timeout anyway, the last one recorded).
func (d *DiskInspector) heartbeatEvery(ctx context.Context) time.Duration {
	if d.Heartbeat > 0 {
		return d.Heartbeat
	}
	if t := activity.GetInfo(ctx).HeartbeatTimeout / 4; t > 0 && t < 5*time.Second {
		return t
	}
	return 5 * time.Second
}

// keepHeartbeating heartbeats every interval until the returned stop is called or ctx ends.
func keepHeartbeating(ctx context.Context, every time.Duration, details string) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				recordHeartbeat(ctx, details)
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

func (d *DiskInspector) readGuestFiles(ctx context.Context, req GuestFileRequest) ([]GuestFile, error) {
	loc := req.Location
	if err := checkLocation(loc); err != nil {
		return nil, err
	}
	if err := ValidateGuestRequest(req.Paths, req.MaxBytes); err != nil {
		return nil, invalid("%v", err)
	}
	w, err := d.world(ctx, loc)
	if err != nil {
		return nil, err
	}
	// Only ever read below a read-only mount of our own loop device: an unmounted mount point is
	// an empty directory of the host, and anything else mounted there is not the guest.
	if !w.Mounted || !hasOption(w.MountOptions, "ro") || !slices.ContainsFunc(w.Loops, func(l LoopDevice) bool { return l.Name == w.MountSource && l.RO }) {
		return nil, refused("the guest file system is not mounted read-only at %s on %s (mounted=%v from %q, %s): nothing read",
			loc.MountPoint, loc.Host, w.Mounted, w.MountSource, w.MountOptions)
	}
	mnt := loc.MountPoint
	full := make([]string, len(req.Paths))
	for i, p := range req.Paths {
		full[i] = mnt + p
	}
	resolved, err := d.resolve(ctx, loc.Host, full)
	if err != nil {
		return nil, err
	}
	out := make([]GuestFile, len(req.Paths))
	statArgs := []string{mnt}
	for i, p := range req.Paths {
		out[i] = GuestFile{Path: p}
		r := resolved[i]
		if r != mnt && !strings.HasPrefix(r, mnt+"/") {
			out[i].Status, out[i].Detail = FileRefused, "resolves outside the guest file system (a symlink pointing out of it): not read"
			continue
		}
		if err := remote.ValidateArg(placeholder.KindPath, r); err != nil {
			out[i].Status, out[i].Detail = FileRefused, fmt.Sprintf("resolves to a name that cannot be passed safely: %v", err)
			continue
		}
		if !slices.Contains(statArgs, r) {
			statArgs = append(statArgs, r)
		}
	}
	res, err := d.cmd(ctx, loc.Host, "guest_stat", nil, statArgs...)
	if err != nil {
		return nil, err
	}
	st, err := parseStat(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("stat on %s: %w", loc.Host, err)
	}
	root, ok := st[mnt]
	if !ok {
		return nil, fmt.Errorf("stat %s on %s: %s", mnt, loc.Host, strings.TrimSpace(res.Stderr))
	}
	var hash []string
	for i := range out {
		f := &out[i]
		if f.Status != "" {
			continue
		}
		r := resolved[i]
		e, ok := st[r]
		switch {
		case !ok:
			f.Status, f.Detail = FileMissing, statError(res.Stderr, r)
		case e.Dev != root.Dev:
			f.Status, f.Detail = FileRefused, "on another file system than the guest's: not read"
		case !isRegular(e.Type):
			f.Status, f.Detail = FileRefused, "a "+e.Type+", not a regular file: not read"
		default:
			f.Size = e.Size
			if e.Size <= d.settings().HashLimit && !slices.Contains(hash, r) {
				hash = append(hash, r)
			}
		}
		if r != mnt+f.Path && f.Detail == "" {
			f.Detail = "symlink to " + strings.TrimPrefix(r, mnt)
		}
	}
	sums := map[string]string{}
	if len(hash) > 0 {
		res, err := d.cmd(ctx, loc.Host, "sha256sum", nil, hash...)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(res.Stdout, "\n") {
			if sum, name, ok := strings.Cut(line, "  "); ok && len(sum) == 64 {
				sums[name] = sum
			}
		}
	}
	// head --quiet prints each file's first bytes back to back; every file's length is known
	// from stat, so the answer splits exactly (and the SHA-256 check below catches a file that
	// changed). Batches stay well under ssh.max_output_bytes.
	const batchBytes = 256 << 10
	var batch []int
	var batchLen int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		recordHeartbeat(ctx, fmt.Sprintf("reading %d file(s), %d bytes", len(batch), batchLen))
		files := make([]string, len(batch))
		for j, i := range batch {
			files[j] = resolved[i]
		}
		res, err := d.must(ctx, loc.Host, "file_heads", map[string]string{"bytes": strconv.FormatInt(req.MaxBytes, 10)}, files...)
		if err != nil {
			return err
		}
		if int64(len(res.Stdout)) != batchLen {
			return fmt.Errorf("reading %d file(s) on %s: got %d bytes, expected %d (a file changed?)", len(batch), loc.Host, len(res.Stdout), batchLen)
		}
		rest := res.Stdout
		for _, i := range batch {
			n := min(out[i].Size, req.MaxBytes)
			if err := d.fill(&out[i], []byte(rest[:n]), req.MaxBytes, sums[resolved[i]], loc.Host); err != nil {
				return err
			}
			rest = rest[n:]
		}
		batch, batchLen = batch[:0], 0
		return nil
	}
	for i := range out {
		if out[i].Status != "" {
			continue
		}
		n := min(out[i].Size, req.MaxBytes)
		if batchLen+n > batchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		batch, batchLen = append(batch, i), batchLen+n
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// fill records one file's bytes, its SHA-256 and whether it was cut at the cap.
func (d *DiskInspector) fill(f *GuestFile, data []byte, maxBytes int64, fileSum, host string) error {
	f.Status, f.Bytes = FileOK, int64(len(data))
	if f.Size > maxBytes {
		f.Status, f.Truncated = FileOverCap, true
		f.Detail = strings.TrimPrefix(f.Detail+"; ", "; ") + fmt.Sprintf("%d bytes, over the cap of %d: only the first %d returned", f.Size, maxBytes, len(data))
	}
	got := sha256.Sum256(data)
	gotHex := hex.EncodeToString(got[:])
	if fileSum != "" {
		f.SHA256, f.SHA256Of = fileSum, "file"
		if !f.Truncated && fileSum != gotHex {
			return fmt.Errorf("%s on %s: SHA-256 of the bytes read %s differs from sha256sum's %s", f.Path, host, gotHex, fileSum)
		}
	} else {
		f.SHA256, f.SHA256Of = gotHex, "content"
	}
	if utf8.Valid(data) {
		f.Content = string(data)
	} else {
		f.ContentBase64 = base64.StdEncoding.EncodeToString(data)
	}
	return nil
}

// resolve canonicalises every path on the host (realpath -m: missing components allowed, so
// there is one answer line per path). When the batch cannot be aligned, it asks one by one.
func (d *DiskInspector) resolve(ctx context.Context, host string, full []string) ([]string, error) {
	res, err := d.cmd(ctx, host, "guest_resolve", nil, full...)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(res.Stdout, "\n"), "\n")
	if res.OK() && len(lines) == len(full) {
		return lines, nil
	}
	out := make([]string, len(full))
	for i, p := range full {
		res, err := d.cmd(ctx, host, "guest_resolve", nil, p)
		if err != nil {
			return nil, err
		}
		out[i] = path.Clean(strings.TrimSpace(res.Stdout))
		if !res.OK() || out[i] == "." {
			out[i] = "" // cannot be resolved: counted as outside, never read
		}
	}
	return out, nil
}

// statError finds stat's message for one path ("No such file or directory", "Too many levels of
// symbolic links").
func statError(stderr, p string) string {
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "'"+p+"'") {
			if _, msg, ok := strings.Cut(line, "': "); ok {
				return msg
			}
		}
	}
	return "not found"
}

// statEntry is one line of guest_stat.
type statEntry struct {
	Dev  string
	Size int64
	Type string
}

// parseStat reads `stat --format '%d|%s|%F|%n'` lines; names are the last field (validated
// paths never contain '|' or a newline).
func parseStat(out string) (map[string]statEntry, error) {
	m := map[string]statEntry{}
	var bad error
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "|", 4)
		if len(f) != 4 {
			bad = errors.Join(bad, fmt.Errorf("stat line %q", line))
			continue
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			bad = errors.Join(bad, fmt.Errorf("stat size %q", f[1]))
			continue
		}
		m[f[3]] = statEntry{Dev: f[0], Size: size, Type: f[2]}
	}
	return m, bad
}

func isRegular(t string) bool { return t == "regular file" || t == "regular empty file" }
