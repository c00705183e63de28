// Package transport is the node's cluster port (default 2377): one TLS
// listener whose connections are routed by ALPN — "shoal-raft" to the Raft
// stream layer, "h2"/"http/1.1" to the cluster HTTP API. Every connection is
// TLS with the node certificate; client certificates are verified against
// the cluster root and checked against the cluster's revocations on every
// request. Only the endpoints registered with HandlePublic (join, CA fetch)
// accept clients without a certificate.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/errdefs"
)

// ALPN protocol names.
const (
	ProtoRaft  = "shoal-raft"
	ProtoH2    = "h2"
	ProtoHTTP1 = "http/1.1"
)

// DefaultPort is the swarm port.
const DefaultPort = 2377

// handshakeTimeout bounds a TLS handshake on the listener.
const handshakeTimeout = 10 * time.Second

// Authorizer decides whether an authenticated peer may use the port. The
// manager implements it over the store (revoked serials, removed or demoted
// nodes).
type Authorizer interface {
	// Authorize is asked for every authenticated request.
	Authorize(id ca.Identity) error
	// AuthorizeManager is asked for manager-only endpoints and Raft
	// connections: id must hold a manager certificate and still be a
	// manager.
	AuthorizeManager(id ca.Identity) error
}

// Config configures a Server.
type Config struct {
	ListenAddr string // host:port
	// Listener, if set, is an already bound listener to serve instead of
	// binding ListenAddr (a joining node binds before it asks to join).
	Listener net.Listener
	TLS      *ca.NodeTLS
	Log      *slog.Logger
}

// Server is the cluster port of a node.
type Server struct {
	cfg     Config
	log     *slog.Logger
	l       net.Listener
	tlsConf *tls.Config
	mux     *http.ServeMux
	public  *http.ServeMux
	http    *http.Server
	httpL   *chanListener

	mu    sync.Mutex
	auth  Authorizer
	raft  *StreamLayer
	conns map[net.Conn]struct{}
	done  chan struct{}
	wg    sync.WaitGroup
}

// Listen opens the cluster port and starts serving.
func Listen(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	l := cfg.Listener
	if l == nil {
		var err error
		if l, err = Bind(cfg.ListenAddr); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log,
		l:       l,
		tlsConf: cfg.TLS.ServerConfig([]string{ProtoRaft, ProtoH2, ProtoHTTP1}),
		mux:     http.NewServeMux(),
		public:  http.NewServeMux(),
		conns:   map[net.Conn]struct{}{},
		done:    make(chan struct{}),
	}
	s.httpL = newChanListener(l.Addr())
	// TLSConfig stays nil: the conns arrive already handshaken and
	// net/http then sets up HTTP/2 for those that negotiated "h2".
	s.http = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 30 * time.Second}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = s.http.Serve(s.httpL)
	}()
	go func() {
		defer s.wg.Done()
		s.acceptLoop()
	}()
	return s, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Mux is where authenticated cluster endpoints are registered. Handlers
// read the caller with ca.PeerIdentity; wrap manager-only ones in
// ManagerOnly.
func (s *Server) Mux() *http.ServeMux { return s.mux }

// HandlePublic registers an endpoint that needs no client certificate.
func (s *Server) HandlePublic(pattern string, h http.Handler) { s.public.Handle(pattern, h) }

// SetAuthorizer installs the revocation and role checks. Until one is set,
// every certificate of the cluster is accepted (a node that has no store
// yet).
func (s *Server) SetAuthorizer(a Authorizer) {
	s.mu.Lock()
	s.auth = a
	s.mu.Unlock()
}

func (s *Server) authorizer() Authorizer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth
}

// ManagerOnly wraps h so that only current managers may call it (403
// otherwise).
func (s *Server) ManagerOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := ca.PeerIdentity(r)
		if err == nil {
			if !id.IsManager() {
				err = errdefs.Forbidden("permission denied: node %s is not a manager", id.NodeID)
			} else if a := s.authorizer(); a != nil {
				err = a.AuthorizeManager(id)
			}
		}
		if err != nil {
			WriteError(w, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if h, pattern := s.public.Handler(r); pattern != "" {
		h.ServeHTTP(w, r)
		return
	}
	id, err := ca.PeerIdentity(r)
	if err == nil {
		if a := s.authorizer(); a != nil {
			err = a.Authorize(id)
		}
	}
	if err != nil {
		WriteError(w, err)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) acceptLoop() {
	var delay time.Duration
	for {
		c, err := s.l.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(delay*2, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			s.log.Error("cluster port accept failed", "err", err)
			return
		}
		delay = 0
		s.track(c, true)
		go s.route(c)
	}
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

// route handshakes and hands the connection to Raft or HTTP by ALPN.
func (s *Server) route(raw net.Conn) {
	tc := tls.Server(raw, s.tlsConf)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	s.track(raw, false)
	if err != nil {
		s.log.Debug("cluster port handshake failed", "remote", raw.RemoteAddr(), "err", err)
		raw.Close()
		return
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != ProtoRaft {
		if err := s.httpL.deliver(tc); err != nil {
			tc.Close()
		}
		return
	}
	id, err := ca.ConnIdentity(&cs)
	if err == nil && !id.IsManager() {
		err = errdefs.Forbidden("node %s is not a manager", id.NodeID)
	}
	if err == nil {
		if a := s.authorizer(); a != nil {
			err = a.AuthorizeManager(id)
		}
	}
	if err != nil {
		s.log.Info("refused raft connection", "remote", raw.RemoteAddr(), "err", err)
		tc.Close()
		return
	}
	s.mu.Lock()
	sl := s.raft
	s.mu.Unlock()
	if sl == nil || !sl.deliver(tc) {
		tc.Close()
	}
}

// Close stops the listener, Raft stream layer and HTTP server.
func (s *Server) Close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	err := s.l.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	sl := s.raft
	s.mu.Unlock()
	if sl != nil {
		sl.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.http.Shutdown(ctx) != nil {
		s.http.Close()
	}
	s.httpL.Close()
	s.wg.Wait()
	return err
}

// chanListener is a net.Listener fed with handshaken connections.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) error {
	select {
	case l.ch <- c:
		return nil
	case <-l.done:
		return net.ErrClosed
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// Bind binds the cluster port.
func Bind(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "failed to listen on remote API address")
	}
	return l, nil
}

// HostPort joins an IP and port ("10.0.0.1:2377").
func HostPort(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
