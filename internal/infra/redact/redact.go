// Package redact masks the secrets that URLs carry (a password in user:password@, tokens in the
// query string, a fragment) wherever a URL reaches text people read: errors, reports, logs and
// `stackrun config show`. It is a leaf package (net/url and strings only), usable by every layer.
package redact

import (
	"net/url"
	"slices"
	"strings"
)

// Mask replaces a secret.
const Mask = "*****"

// URL returns u with its password, every query value and its fragment masked; the scheme, the
// user name, the host and the path stay, so that the message still says where. A string that is
// not a URL with a host is masked whole when it holds an '@' or a '?' (it might carry a secret),
// else returned as is.
func URL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		if strings.ContainsAny(u, "@?") {
			return Mask
		}
		return u
	}
	if p.User != nil {
		if _, has := p.User.Password(); has {
			p.User = url.UserPassword(p.User.Username(), Mask)
		}
	}
	if p.RawQuery != "" {
		q := p.Query()
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b strings.Builder
		for i, k := range keys {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k) + "=" + Mask)
		}
		p.RawQuery = b.String()
	}
	if p.Fragment != "" || p.RawFragment != "" {
		p.Fragment, p.RawFragment = Mask, ""
	}
	// url.String would escape the mask in the user info and the query; build it by hand.
	s := p.Scheme + "://"
	if p.User != nil {
		s += p.User.Username()
		if _, has := p.User.Password(); has {
			s += ":" + Mask
		}
		s += "@"
	}
	s += p.Host + p.EscapedPath()
	if p.RawQuery != "" {
		s += "?" + p.RawQuery
	}
	if p.Fragment != "" {
		s += "#" + Mask
	}
	return s
}

// Text masks every appearance of the given URLs in msg: as written, as net/http's errors print
// them (the password replaced by "***"), and their secrets (password, query values) alone.
func Text(msg string, urls ...string) string {
	type repl struct{ old, new string }
	var rs []repl
	for _, u := range urls {
		if u == "" {
			continue
		}
		safe := URL(u)
		rs = append(rs, repl{u, safe})
		p, err := url.Parse(u)
		if err != nil {
			continue
		}
		rs = append(rs, repl{p.String(), safe})
		if p.User != nil {
			if pw, has := p.User.Password(); has {
				q := *p
				q.User = url.UserPassword(p.User.Username(), "***")
				rs = append(rs, repl{q.String(), safe}, repl{pw, Mask}, repl{url.QueryEscape(pw), Mask})
			}
		}
		for _, vs := range p.Query() {
			for _, v := range vs {
				rs = append(rs, repl{v, Mask}, repl{url.QueryEscape(v), Mask})
			}
		}
		if p.Fragment != "" {
			rs = append(rs, repl{"#" + p.Fragment, "#" + Mask})
		}
	}
	// Longest first, so that a URL is replaced whole before its parts; secrets shorter than 4
	// characters are not hunted alone (they would mask ordinary words).
	slices.SortFunc(rs, func(a, b repl) int { return len(b.old) - len(a.old) })
	for _, r := range rs {
		if len(r.old) < 4 || r.old == r.new {
			continue
		}
		msg = strings.ReplaceAll(msg, r.old, r.new)
	}
	return msg
}

// Error is err's message with the URLs masked (Text), as a new error: the original is not kept
// (its chain would print the secret again, e.g. in Temporal's failure details).
func Error(err error, urls ...string) error {
	if err == nil {
		return nil
	}
	return plain(Text(err.Error(), urls...))
}

type plain string

func (p plain) Error() string { return string(p) }
