package remote

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"

	"github.com/pkg/sftp"

	"github.com/stackrun/stackrun/internal/infra/placeholder"
)

// FileSum describes file contents: size and hex digests.
type FileSum struct {
	Size   int64
	MD5    string // hex; swift-ring-builder and swift-recon compare ring MD5s
	SHA256 string // hex
}

type summer struct {
	n        int64
	md5, sha hash.Hash
}

func newSummer() *summer { return &summer{md5: md5.New(), sha: sha256.New()} }

func (s *summer) Write(b []byte) (int, error) {
	s.md5.Write(b)
	s.sha.Write(b)
	s.n += int64(len(b))
	return len(b), nil
}

func (s *summer) sum() FileSum {
	return FileSum{Size: s.n, MD5: hex.EncodeToString(s.md5.Sum(nil)), SHA256: hex.EncodeToString(s.sha.Sum(nil))}
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(b)
}

// CopyFile writes src to remotePath on h over SFTP on the pooled connection:
// into a temporary file in the same directory (created exclusively, chmod to
// mode, fsync'ed when the server supports fsync@openssh.com), then renamed over
// remotePath atomically with posix-rename@openssh.com (OpenSSH); servers
// without it get a plain rename, which fails if remotePath exists. On error the
// temporary file is removed. It returns the size and digests of what was
// written. remotePath must be a valid placeholder.KindPath (checked before connecting).
// The copy stops when ctx ends; CommandTimeout does not apply.
func (p *Pool) CopyFile(ctx context.Context, h Host, src io.Reader, remotePath string, mode os.FileMode) (FileSum, error) {
	if err := ValidateArg(placeholder.KindPath, remotePath); err != nil {
		return FileSum{}, err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(path.Dir(remotePath), "."+path.Base(remotePath)+".stackrun-"+hex.EncodeToString(rnd[:])+".tmp")
	var sum FileSum
	err := p.withSFTP(ctx, h, "copy to "+remotePath, func(s *sftp.Client) (err error) {
		f, err := s.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				f.Close()
				_ = s.Remove(tmp)
			}
		}()
		if err = f.Chmod(mode.Perm()); err != nil {
			return err
		}
		sm := newSummer()
		if _, err = io.Copy(f, io.TeeReader(ctxReader{ctx, src}, sm)); err != nil {
			return err
		}
		if _, ok := s.HasExtension("fsync@openssh.com"); ok {
			if err = f.Sync(); err != nil {
				return err
			}
		}
		if err = f.Close(); err != nil {
			return err
		}
		if _, ok := s.HasExtension("posix-rename@openssh.com"); ok {
			err = s.PosixRename(tmp, remotePath)
		} else {
			err = s.Rename(tmp, remotePath)
		}
		if err != nil {
			return fmt.Errorf("rename %s: %w", tmp, err)
		}
		sum = sm.sum()
		return nil
	})
	return sum, err
}

// CopyLocalFile is CopyFile from a local file.
func (p *Pool) CopyLocalFile(ctx context.Context, h Host, localPath, remotePath string, mode os.FileMode) (FileSum, error) {
	if err := ValidateArg(placeholder.KindPath, remotePath); err != nil {
		return FileSum{}, err
	}
	f, err := os.Open(localPath)
	if err != nil {
		return FileSum{}, fmt.Errorf("remote: copy to %s: %w", h.label(), err)
	}
	defer f.Close()
	return p.CopyFile(ctx, h, f, remotePath, mode)
}

// DefaultReadLimit is ReadFile's limit when none is given.
const DefaultReadLimit = 64 << 20

// ReadFile reads remotePath on h over SFTP. A file larger than limit bytes
// (DefaultReadLimit if limit <= 0) is an error rather than a silent cut.
func (p *Pool) ReadFile(ctx context.Context, h Host, remotePath string, limit int64) ([]byte, error) {
	if err := ValidateArg(placeholder.KindPath, remotePath); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	var data []byte
	err := p.withSFTP(ctx, h, "read "+remotePath, func(s *sftp.Client) error {
		f, err := s.Open(remotePath)
		if err != nil {
			return err
		}
		defer f.Close()
		data, err = io.ReadAll(io.LimitReader(ctxReader{ctx, f}, limit+1))
		if err != nil {
			return err
		}
		if int64(len(data)) > limit {
			data = nil
			return fmt.Errorf("file is larger than the %d byte limit", limit)
		}
		return nil
	})
	return data, err
}

// Checksum streams remotePath on h over SFTP and returns its size, MD5 and
// SHA-256 (e.g. to check that every node has the same ring file).
func (p *Pool) Checksum(ctx context.Context, h Host, remotePath string) (FileSum, error) {
	if err := ValidateArg(placeholder.KindPath, remotePath); err != nil {
		return FileSum{}, err
	}
	var sum FileSum
	err := p.withSFTP(ctx, h, "checksum "+remotePath, func(s *sftp.Client) error {
		f, err := s.Open(remotePath)
		if err != nil {
			return err
		}
		defer f.Close()
		sm := newSummer()
		if _, err := io.Copy(sm, ctxReader{ctx, f}); err != nil {
			return err
		}
		sum = sm.sum()
		return nil
	})
	return sum, err
}

// withSFTP runs fn with the SFTP client of h's pooled connection (starting the
// subsystem once per connection, retrying once on a new connection if that
// fails). File errors (not found, permission) are returned as they are, with
// context; a broken connection is ErrConnect and drops the connection.
func (p *Pool) withSFTP(ctx context.Context, h Host, what string, fn func(*sftp.Client) error) error {
	c, err := p.entry(h, p.opts.User, false)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		l, err := p.client(ctx, c)
		if err != nil {
			return err
		}
		c.mu.Lock()
		s := c.sftp
		if c.live != l {
			s = nil
		}
		c.mu.Unlock()
		if s == nil {
			s, err = sftp.NewClient(l.Client)
			if err != nil {
				l.release()
				if attempt == 0 && l.dead() {
					p.discard(c, l)
					continue
				}
				return fmt.Errorf("remote: %s on %s: start sftp: %w: %v", what, h.label(), ErrConnect, err)
			}
			c.mu.Lock()
			switch {
			case c.live != l: // replaced meanwhile: use ours once
				defer s.Close()
			case c.sftp != nil: // lost a race: use the stored one
				s.Close()
				s = c.sftp
			default:
				c.sftp = s
			}
			c.mu.Unlock()
		}
		err = fn(s)
		l.release()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("remote: %s on %s: %w: %w", what, h.label(), ErrTimeout, err)
		}
		if !lostConnection(err) && !l.dead() {
			return fmt.Errorf("remote: %s on %s: %w", what, h.label(), err)
		}
		// The SFTP session or the whole connection is gone: start afresh next time.
		c.mu.Lock()
		if c.sftp == s {
			_ = s.Close()
			c.sftp = nil
		}
		c.mu.Unlock()
		if l.dead() {
			p.discard(c, l)
		}
		return fmt.Errorf("remote: %s on %s: %w: %v", what, h.label(), ErrConnect, err)
	}
}

func lostConnection(err error) bool {
	return errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, sftp.ErrSSHFxNoConnection) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}
