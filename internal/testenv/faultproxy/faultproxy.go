// Package faultproxy is a real HTTP reverse proxy that injects faults between Stackrun and
// OpenStack's APIs, at a set rate and seed: 5xx answers, connections reset before the request
// reaches the service, connections reset after the service answered (the "lost" reply: a POST
// the service carried out whose answer never arrives), answers held back past the client's
// timeout, and bodies that arrive slowly.
//
// One front (a listener on 127.0.0.1) stands for each upstream host:port. A clouds.yaml whose
// auth_url is Front(keystone) is all a client needs: the proxy rewrites the service catalogue
// (and every URL of a known upstream in JSON answers and Location headers) to the fronts, so
// every later call to Nova, Placement, Glance, Neutron or Swift passes through it too.
package faultproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind is one kind of fault.
type Kind string

const (
	Status503   Kind = "503"          // answered by the proxy; the service never sees the request
	ResetBefore Kind = "reset-before" // connection closed; the service never sees the request
	ResetAfter  Kind = "reset-after"  // the service handled it; its answer is lost
	Hang        Kind = "hang"         // the service handled it; the answer is held past the client's timeout
	SlowBody    Kind = "slow-body"    // the whole answer, trickled
)

// AllKinds are every kind, in a fixed order (the seed picks among them).
var AllKinds = []Kind{Status503, ResetBefore, ResetAfter, Hang, SlowBody}

// Options set the faults.
type Options struct {
	Seed  int64
	Rate  float64 // share of requests that get a fault, 0..1
	Kinds []Kind  // default AllKinds
	// HangFor is how long a held answer waits before the connection is closed; set it past the
	// client's request timeout. Default 90 s.
	HangFor time.Duration
	// SlowChunk is the pause between 1 KiB chunks of a slow body. Default 50 ms.
	SlowChunk time.Duration
	// Exempt requests are never faulted (nil: none).
	Exempt func(*http.Request) bool
	// Force injects each of its faults once, into the first request (while enabled) that it
	// matches, whatever the seed says: a test that must see a write meet a fault does not
	// depend on the order in which concurrent requests draw from the seed.
	Force []Forced
	// Part names the file Close writes the figures per runbook into when
	// STACKRUN_RELIABILITY_DIR is set (results.go): default "faults-" and the test function that
	// made the proxy; "-" writes nothing, which is the default with Force (a scripted test
	// records its own figures).
	Part string
}

// Forced is one fault for the first request with this method whose path ends with PathSuffix.
type Forced struct {
	Method     string
	PathSuffix string
	Kind       Kind
}

// Stats count what the proxy did.
type Stats struct {
	Requests int            // every request seen
	Faults   map[Kind]int   // faults injected, by kind
	ByMethod map[string]int // faults injected, by method
	// ByRunbook: requests, faults and activity retries per runbook (results.go), from the
	// worker's activity header; requests made outside an activity are not in it.
	ByRunbook map[string]RunbookStats
}

// Total is the number of faults injected.
func (s Stats) Total() int {
	n := 0
	for _, v := range s.Faults {
		n += v
	}
	return n
}

// Proxy is the fault-injecting proxy. Its fronts live until Close.
type Proxy struct {
	opts Options

	mu      sync.Mutex
	rnd     *rand.Rand
	fronts  map[string]*front // upstream "scheme://host:port" -> front
	stats   Stats
	enabled bool
	closed  bool
	forced  []bool // Options.Force used
	part    string
	retried map[string]bool // "run activity attempt" seen with attempt > 1
}

type front struct {
	upstream *url.URL
	base     string // "http://127.0.0.1:port"
	ln       net.Listener
	srv      *http.Server
}

// New returns a proxy with no fronts yet; faults are on from the start (see Enable).
func New(opts Options) *Proxy {
	if len(opts.Kinds) == 0 {
		opts.Kinds = AllKinds
	}
	if opts.HangFor <= 0 {
		opts.HangFor = 90 * time.Second
	}
	if opts.SlowChunk <= 0 {
		opts.SlowChunk = 50 * time.Millisecond
	}
	return &Proxy{
		part:    partName(opts, 2),
		retried: map[string]bool{},
		opts:    opts,
		rnd:     rand.New(rand.NewSource(opts.Seed)),
		fronts:  map[string]*front{},
		stats:   Stats{Faults: map[Kind]int{}, ByMethod: map[string]int{}, ByRunbook: map[string]RunbookStats{}},
		enabled: true,
		forced:  make([]bool, len(opts.Force)),
	}
}

// Enable turns fault injection on or off (the fronts keep proxying): a test sets its world up
// without faults and runs the runbook with them.
func (p *Proxy) Enable(on bool) {
	p.mu.Lock()
	p.enabled = on
	p.mu.Unlock()
}

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Requests: p.stats.Requests, Faults: map[Kind]int{}, ByMethod: map[string]int{}, ByRunbook: map[string]RunbookStats{}}
	for k, v := range p.stats.ByRunbook {
		s.ByRunbook[k] = v
	}
	for k, v := range p.stats.Faults {
		s.Faults[k] = v
	}
	for k, v := range p.stats.ByMethod {
		s.ByMethod[k] = v
	}
	return s
}

// Front returns the proxy's URL for an upstream URL (same path and query), starting a front for
// its host:port on first use.
func (p *Proxy) Front(upstream string) (string, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("faultproxy: upstream %q is not an http(s) URL", upstream)
	}
	f, err := p.frontFor(u)
	if err != nil {
		return "", err
	}
	return f.base + u.RequestURI(), nil
}

func (p *Proxy) frontFor(u *url.URL) (*front, error) {
	key := u.Scheme + "://" + u.Host
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("faultproxy: closed")
	}
	if f, ok := p.fronts[key]; ok {
		return f, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	f := &front{upstream: &url.URL{Scheme: u.Scheme, Host: u.Host}, base: "http://" + ln.Addr().String(), ln: ln}
	f.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(f, w, r) })}
	p.fronts[key] = f
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// Close stops every front and writes the figures (results.go).
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	fronts := p.fronts
	p.fronts = map[string]*front{}
	p.mu.Unlock()
	for _, f := range fronts {
		_ = f.srv.Close()
	}
	p.writeResults()
}

// pick decides this request's fault ("" = none).
func (p *Proxy) pick(r *http.Request) Kind {
	exempt := p.opts.Exempt != nil && p.opts.Exempt(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	rb := p.countRunbook(r)
	if !p.enabled || exempt {
		return ""
	}
	k := Kind("")
	for i, f := range p.opts.Force {
		if !p.forced[i] && r.Method == f.Method && strings.HasSuffix(r.URL.Path, f.PathSuffix) {
			p.forced[i], k = true, f.Kind
			break
		}
	}
	if k == "" {
		if p.rnd.Float64() >= p.opts.Rate {
			return ""
		}
		k = p.opts.Kinds[p.rnd.Intn(len(p.opts.Kinds))]
	}
	p.stats.Faults[k]++
	p.stats.ByMethod[r.Method]++
	if rb != "" {
		st := p.stats.ByRunbook[rb]
		st.Faults++
		p.stats.ByRunbook[rb] = st
	}
	return k
}

var upstreamClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 16},
	// Never follow redirects: the client must see them (rewritten) as the service sent them.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (p *Proxy) serve(f *front, w http.ResponseWriter, r *http.Request) {
	fault := p.pick(r)
	switch fault {
	case Status503:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error": {"message": "faultproxy: injected 503", "code": 503}}`)
		return
	case ResetBefore:
		reset(w)
		return
	}

	resp, body, err := p.forward(f, r)
	if err != nil {
		http.Error(w, "faultproxy: upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	switch fault {
	case ResetAfter:
		reset(w)
		return
	case Hang:
		select {
		case <-time.After(p.opts.HangFor):
		case <-r.Context().Done():
		}
		reset(w)
		return
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	if fault != SlowBody {
		_, _ = w.Write(body)
		return
	}
	fl, _ := w.(http.Flusher)
	for len(body) > 0 {
		n := min(1024, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		body = body[n:]
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-time.After(p.opts.SlowChunk):
		case <-r.Context().Done():
			return
		}
	}
}

// forward sends the request upstream and returns the answer with its URLs rewritten to fronts.
func (p *Proxy) forward(f *front, r *http.Request) (*http.Response, []byte, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = f.upstream.Scheme
	out.URL.Host = f.upstream.Host
	out.Host = f.upstream.Host
	out.Header.Del("Accept-Encoding") // bodies are rewritten: keep them plain
	resp, err := upstreamClient.Do(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		resp.Header.Set("Location", string(p.rewrite([]byte(loc), false)))
	}
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		body = p.rewrite(body, true)
	}
	resp.Header.Del("Content-Length")
	return resp, body, nil
}

// rewrite replaces every known upstream base in b with its front; with discover, it first starts
// fronts for every URL of a service catalogue in b (a Keystone token answer).
func (p *Proxy) rewrite(b []byte, discover bool) []byte {
	if discover && bytes.Contains(b, []byte(`"catalog"`)) {
		for _, u := range catalogueURLs(b) {
			if pu, err := url.Parse(u); err == nil && pu.Host != "" {
				_, _ = p.frontFor(pu)
			}
		}
	}
	p.mu.Lock()
	pairs := make([][2]string, 0, len(p.fronts))
	for key, f := range p.fronts {
		pairs = append(pairs, [2]string{key, f.base})
	}
	p.mu.Unlock()
	for _, kv := range pairs {
		b = replaceBase(b, kv[0], kv[1])
		// JSON may escape the slashes.
		b = replaceBase(b, strings.ReplaceAll(kv[0], "/", `\/`), strings.ReplaceAll(kv[1], "/", `\/`))
	}
	return b
}

// replaceBase replaces old by new where old ends at a URL boundary: "http://h:80" must not eat
// the front of "http://h:8080", nor "http://h" that of "http://h.example".
func replaceBase(b []byte, old, new string) []byte {
	var out []byte
	for {
		i := bytes.Index(b, []byte(old))
		if i < 0 {
			return append(out, b...)
		}
		end := i + len(old)
		out = append(out, b[:i]...)
		if end == len(b) || strings.IndexByte(`/"\?#`, b[end]) >= 0 {
			out = append(out, new...)
		} else {
			out = append(out, old...)
		}
		b = b[end:]
	}
}

// catalogueURLs returns the endpoint URLs of a Keystone v3 token answer.
func catalogueURLs(b []byte) []string {
	var tok struct {
		Token struct {
			Catalog []struct {
				Endpoints []struct {
					URL string `json:"url"`
				} `json:"endpoints"`
			} `json:"catalog"`
		} `json:"token"`
	}
	if json.Unmarshal(b, &tok) != nil {
		return nil
	}
	var out []string
	for _, s := range tok.Token.Catalog {
		for _, e := range s.Endpoints {
			out = append(out, e.URL)
		}
	}
	return out
}

// reset closes the client's connection without an answer (an RST where the kernel allows it).
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
