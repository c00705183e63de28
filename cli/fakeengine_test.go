package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeEngine is a scripted Docker Engine API for unit tests: it answers
// /_ping like a 1.51 daemon, records every request (method, unversioned
// path and query) and serves the routes a test registers.
type fakeEngine struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []string
	seq    [][]byte // body of each recorded request, in order
	bodies map[string][][]byte
	routes map[string]http.HandlerFunc
}

var versionPrefix = regexp.MustCompile(`^/v[0-9.]+`)

func newFakeEngine(t *testing.T) *fakeEngine {
	t.Helper()
	f := &fakeEngine{t: t, bodies: map[string][][]byte{}, routes: map[string]http.HandlerFunc{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEngine) host() string { return "tcp://" + strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	path := versionPrefix.ReplaceAllString(r.URL.Path, "")
	if path == "/_ping" {
		w.Header().Set("Api-Version", "1.51")
		w.Header().Set("OSType", "linux")
		w.Header().Set("Swarm", "active/manager")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "OK")
		return
	}
	body, _ := io.ReadAll(r.Body)
	key := r.Method + " " + path
	entry := key
	if r.URL.RawQuery != "" {
		q, _ := url.QueryUnescape(r.URL.Query().Encode())
		entry += "?" + q
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, entry)
	f.seq = append(f.seq, body)
	f.bodies[key] = append(f.bodies[key], body)
	h, ok := f.routes[key]
	f.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "page not found: " + key})
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// on registers a handler for "METHOD /path" (path without /vX.Y).
func (f *fakeEngine) on(key string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[key] = h
}

// reply registers a fixed JSON answer.
func (f *fakeEngine) reply(key string, status int, v any) {
	f.on(key, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, status, v) })
}

// fail registers a daemon error {"message": msg}.
func (f *fakeEngine) fail(key string, status int, msg string) {
	f.reply(key, status, map[string]string{"message": msg})
}

func (f *fakeEngine) sequence() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.seq...)
}

func (f *fakeEngine) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// body decodes the n-th body sent to key into v.
func (f *fakeEngine) body(key string, n int, v any) {
	f.t.Helper()
	f.mu.Lock()
	bs := f.bodies[key]
	f.mu.Unlock()
	if n >= len(bs) {
		f.t.Fatalf("no body #%d for %s (have %d)", n, key, len(bs))
	}
	if err := json.Unmarshal(bs[n], v); err != nil {
		f.t.Fatalf("decode body of %s: %v", key, err)
	}
}

// fixedNow is the clock every CLI test runs with.
var fixedNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type cliResult struct {
	out, err string
	code     int
}

// runCLI runs one shoal command line against f with captured streams.
func runCLI(t *testing.T, f *fakeEngine, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	c := &CLI{Out: &out, Err: &errb, In: strings.NewReader(stdin), Now: func() time.Time { return fixedNow }, PollInterval: time.Millisecond}
	root := newRoot(c)
	if f != nil {
		args = append([]string{"-H", f.host()}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := execute(ctx, root, c, args)
	return cliResult{out: out.String(), err: errb.String(), code: code}
}
