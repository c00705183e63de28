package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/errdefs"
)

// StreamLayer carries Raft RPCs over the cluster port (raft.StreamLayer).
// Inbound connections come from the server's ALPN router, already
// authenticated as managers; outbound ones dial other managers with ALPN
// "shoal-raft" and the node certificate.
type StreamLayer struct {
	s         *Server
	advertise net.Addr
	ch        chan net.Conn
	done      chan struct{}
	once      sync.Once
	quit      chan struct{} // closed by StopDialing
	quitOnce  sync.Once
}

// RaftLayer returns the server's Raft stream layer; advertise is the
// address other managers reach this one at (the Raft server address). A
// node runs one at a time: a new one replaces the old (after a demotion and
// promotion).
func (s *Server) RaftLayer(advertise string) (*StreamLayer, error) {
	addr, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, errdefs.InvalidParameter("invalid advertise address %q: %v", advertise, err)
	}
	sl := &StreamLayer{s: s, advertise: addr, ch: make(chan net.Conn), done: make(chan struct{}), quit: make(chan struct{})}
	s.mu.Lock()
	old := s.raft
	s.raft = sl
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return sl, nil
}

func (sl *StreamLayer) deliver(c net.Conn) bool {
	t := time.NewTimer(handshakeTimeout)
	defer t.Stop()
	select {
	case sl.ch <- c:
		return true
	case <-sl.done:
	case <-t.C:
	}
	return false
}

// Accept implements net.Listener.
func (sl *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-sl.ch:
		return c, nil
	case <-sl.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener; the cluster port stays open.
func (sl *StreamLayer) Close() error {
	sl.once.Do(func() {
		close(sl.done)
		sl.s.mu.Lock()
		if sl.s.raft == sl {
			sl.s.raft = nil
		}
		sl.s.mu.Unlock()
	})
	return nil
}

// StopDialing makes pending and future dials fail at once. Call it before
// shutting Raft down: Raft waits for its RPCs, and Dial waits for peers.
func (sl *StreamLayer) StopDialing() {
	sl.quitOnce.Do(func() { close(sl.quit) })
}

// Addr implements net.Listener: the advertised address.
func (sl *StreamLayer) Addr() net.Addr { return sl.advertise }

// Dial implements raft.StreamLayer. A manager that is down is redialled
// until timeout instead of failing at once: Raft backs off exponentially
// (up to ~40 s) per failed attempt, so failing fast would leave a manager
// that comes back unreplicated for a long time; waiting in the dial keeps
// the number of failures low and connects as soon as it is up.
func (sl *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-sl.quit:
			return nil, net.ErrClosed
		default:
		}
		left := time.Until(deadline)
		c, err := DialRaft(sl.s.cfg.TLS, string(address), min(left, time.Second))
		if err == nil || left < 200*time.Millisecond {
			return c, err
		}
		var ne *net.OpError
		if !errors.As(err, &ne) || ne.Op != "dial" {
			return nil, err // the peer answered and refused TLS: do not insist
		}
		select {
		case <-sl.done:
			return nil, err
		case <-sl.quit:
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// DialRaft opens a Raft stream to the manager at addr.
func DialRaft(t *ca.NodeTLS, addr string, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, t.ClientConfig([]string{ProtoRaft}))
	if err != nil {
		return nil, err
	}
	if c.ConnectionState().NegotiatedProtocol != ProtoRaft {
		c.Close()
		return nil, errdefs.Unavailable("%s does not speak %s", addr, ProtoRaft)
	}
	return c, nil
}
