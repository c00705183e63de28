package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/errdefs"
)

// DialTimeout bounds connecting to a manager: a dead manager must fail a
// request quickly so callers try another or report no leader.
const DialTimeout = 2 * time.Second

// NewHTTPClient returns a client for the cluster HTTP API of managers with
// the given TLS config (the node's mTLS config, or an anonymous one for
// joining). It speaks HTTP/2 when the server offers it.
func NewHTTPClient(conf *tls.Config) *http.Client {
	return &http.Client{Transport: newHTTPTransport(conf)}
}

func newHTTPTransport(conf *tls.Config) *http.Transport {
	conf = conf.Clone()
	conf.NextProtos = []string{ProtoH2, ProtoHTTP1}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: DialTimeout, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:     conf,
		TLSHandshakeTimeout: 5 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		// A manager cut off by the network (no RST, packets dropped) must
		// not hold requests on a dead connection: ping it when quiet.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 2 * time.Second, PingTimeout: 2 * time.Second},
	}
	return tr
}

// NodeClient returns the node's mTLS client for managers. Servers know a
// connection's client by the certificate of its handshake, so when the
// node's certificate changes (renewal, promotion, demotion) new requests
// go over new connections; requests in flight finish on the old ones.
func NodeClient(t *ca.NodeTLS) *http.Client {
	return &http.Client{Transport: &certTransport{tls: t}}
}

type certTransport struct {
	tls *ca.NodeTLS
	mu  sync.Mutex
	cur *http.Transport
	ser string
}

func (c *certTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	serial := c.tls.Identity().Serial
	c.mu.Lock()
	if c.cur == nil || c.ser != serial {
		if c.cur != nil {
			c.cur.CloseIdleConnections()
		}
		c.cur, c.ser = newHTTPTransport(c.tls.ClientConfig(nil)), serial
	}
	tr := c.cur
	c.mu.Unlock()
	return tr.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// current transport.
func (c *certTransport) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		c.cur.CloseIdleConnections()
	}
}

// URL builds the URL of path on the manager at addr ("IP:port").
func URL(addr, path string) string { return "https://" + addr + path }

// Do sends a JSON request (nil in = no body) to a manager and decodes the
// JSON reply into out (nil = discard). Error replies come back as typed
// errors with their kind and message preserved.
func Do(ctx context.Context, c *http.Client, method, addr, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, URL(addr, path), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &UnreachableError{Addr: addr, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return DecodeError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return errdefs.Wrapf(errdefs.KindUnavailable, err, "bad reply from manager %s", addr)
	}
	return nil
}

// UnreachableError means the manager could not be reached (the request may
// be retried on another manager).
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("manager %s unreachable: %v", e.Addr, e.Err)
}
func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnreachable reports an UnreachableError.
func IsUnreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u)
}

// The error wire format: {"message": ..., "kind": N, "code": ...}. Message
// is what docker clients print; kind keeps the errdefs kind across the hop;
// code names a sentinel error (RegisterCode) so errors.Is still works.
type wireError struct {
	Message string       `json:"message"`
	Kind    errdefs.Kind `json:"kind"`
	Code    string       `json:"code,omitempty"`
}

var (
	codesMu sync.RWMutex
	codes   = map[string]error{}
)

// RegisterCode makes sentinel survive the wire: an error that Is sentinel
// is sent with code and rebuilt to wrap sentinel again.
func RegisterCode(code string, sentinel error) {
	codesMu.Lock()
	codes[code] = sentinel
	codesMu.Unlock()
}

// ErrNodeRemoved is the sentinel of a request refused because the caller's
// node was removed from the swarm (its certificate is revoked).
var ErrNodeRemoved = errors.New("node removed from the swarm")

func init() { RegisterCode("node_removed", ErrNodeRemoved) }

// StatusOf maps a kind to the HTTP status of a reply.
func StatusOf(k errdefs.Kind) int {
	switch k {
	case errdefs.KindNotFound:
		return http.StatusNotFound
	case errdefs.KindInvalidParameter:
		return http.StatusBadRequest
	case errdefs.KindConflict:
		return http.StatusConflict
	case errdefs.KindForbidden:
		return http.StatusForbidden
	case errdefs.KindUnavailable:
		return http.StatusServiceUnavailable
	case errdefs.KindNotImplemented:
		return http.StatusNotImplemented
	case errdefs.KindUnauthorized:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// EncodeError is the wire form of err.
func EncodeError(err error) ([]byte, int) {
	we := wireError{Message: err.Error(), Kind: errdefs.KindOf(err)}
	if we.Kind == errdefs.KindUnknown {
		we.Kind = errdefs.KindSystem
	}
	codesMu.RLock()
	for code, s := range codes {
		if errors.Is(err, s) {
			we.Code = code
			break
		}
	}
	codesMu.RUnlock()
	b, _ := json.Marshal(we)
	return b, StatusOf(we.Kind)
}

// WriteError replies with err in the wire format.
func WriteError(w http.ResponseWriter, err error) {
	b, status := EncodeError(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// DecodeError rebuilds a typed error from an error reply.
func DecodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return ParseError(b, resp.StatusCode)
}

// ParseError rebuilds a typed error from its wire form.
func ParseError(b []byte, status int) error {
	var we wireError
	if err := json.Unmarshal(b, &we); err != nil || we.Message == "" {
		k := errdefs.KindSystem
		switch status {
		case http.StatusNotFound:
			k = errdefs.KindNotFound
		case http.StatusServiceUnavailable, http.StatusMisdirectedRequest:
			k = errdefs.KindUnavailable
		case http.StatusForbidden:
			k = errdefs.KindForbidden
		case http.StatusUnauthorized:
			k = errdefs.KindUnauthorized
		case http.StatusBadRequest:
			k = errdefs.KindInvalidParameter
		}
		return &errdefs.Error{Kind: k, Msg: fmt.Sprintf("cluster request failed: %d %s", status, bytes.TrimSpace(b))}
	}
	var cause error
	if we.Code != "" {
		codesMu.RLock()
		s := codes[we.Code]
		codesMu.RUnlock()
		if s != nil {
			cause = &codedError{msg: we.Message, sentinel: s}
		}
	}
	if cause != nil {
		return &errdefs.Error{Kind: we.Kind, Cause: cause}
	}
	return &errdefs.Error{Kind: we.Kind, Msg: we.Message}
}

type codedError struct {
	msg      string
	sentinel error
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.sentinel }
