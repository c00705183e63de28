package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/network/netns"
)

// reserver holds a published port on the node.
type reserver interface {
	reserve(k Key) (reservation, error)
}

type reservation interface{ Close() error }

// socketReserver binds (never listens on) a socket on every address, as
// network/bridge does for its published ports. Connections never reach
// it while the port has backends: the DNAT rewrites them before the socket
// lookup. Without backends, TCP connections are refused by it.
//
// TCP ports also answer on 127.0.0.1, as docker's do: see loopbackRelay.
type socketReserver struct{ ns *netns.NS }

type fdReservation int

func (f fdReservation) Close() error { return unix.Close(int(f)) }

func (s socketReserver) reserve(k Key) (reservation, error) {
	var fd int
	err := do(s.ns, func() error {
		typ := unix.SOCK_STREAM
		if k.Proto == ProtoUDP {
			typ = unix.SOCK_DGRAM
		}
		var err error
		fd, err = unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if k.Proto == ProtoTCP {
			// Shared with the loopback relay's listener only: a socket
			// without SO_REUSEPORT (anyone else's) still cannot bind.
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
				unix.Close(fd)
				return err
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(k.Port)}); err != nil {
			unix.Close(fd)
			if errors.Is(err, unix.EADDRINUSE) {
				return errPortInUse
			}
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if k.Proto != ProtoTCP {
		return fdReservation(fd), nil
	}
	r, err := newLoopbackRelay(s.ns, k.Port)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	r.fd = fd
	return r, nil
}

// loopbackRelay makes 127.0.0.1:PORT answer. The mesh cannot DNAT loopback
// destinations: a packet with a 127.0.0.1 source may not leave on a real
// interface (route_localnet stays off there, as it should), and a backend
// may be on another node. So, like docker-proxy, a listener on 127.0.0.1
// relays each connection to the node's own address and port, where the
// mesh's DNAT balances it like any other. A port without backends resets
// the connection.
type loopbackRelay struct {
	fd   int // the wildcard reservation
	ns   *netns.NS
	port uint16
	ln   net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// relayDialTimeout bounds the dial to the node's own address (local: it
// either answers or is refused at once).
const relayDialTimeout = 5 * time.Second

func newLoopbackRelay(ns *netns.NS, port uint16) (*loopbackRelay, error) {
	r := &loopbackRelay{ns: ns, port: port, conns: map[net.Conn]struct{}{}}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	err := do(ns, func() error {
		var err error
		r.ln, err = lc.Listen(context.Background(), "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		return err
	})
	if err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, errPortInUse
		}
		return nil, err
	}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

func (r *loopbackRelay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		if !r.track(c, true) {
			c.Close()
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.track(c, false)
			r.relay(c.(*net.TCPConn))
		}()
	}
}

// track adds or forgets a connection; false once the relay is closed.
func (r *loopbackRelay) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !add {
		delete(r.conns, c)
		return true
	}
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *loopbackRelay) relay(in *net.TCPConn) {
	defer in.Close()
	out, err := r.dial()
	if err != nil {
		in.SetLinger(0) // a reset, as close as a relay gets to "refused"
		return
	}
	if !r.track(out, true) {
		out.Close()
		return
	}
	defer r.track(out, false)
	defer out.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(out, in)
		out.CloseWrite()
		close(done)
	}()
	io.Copy(in, out)
	in.CloseWrite()
	<-done
}

// dial connects to the port on one of the node's own non-loopback
// addresses, from inside the node's network namespace.
func (r *loopbackRelay) dial() (*net.TCPConn, error) {
	var c net.Conn
	err := do(r.ns, func() error {
		addr, err := nodeAddr()
		if err != nil {
			return err
		}
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(addr, r.port).String(), relayDialTimeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// nodeAddr returns an IPv4 address of this network namespace that is not
// loopback: the mesh's output hook DNATs connections to it.
func nodeAddr() (netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() {
				return p.Addr(), nil
			}
		}
	}
	return netip.Addr{}, errors.New("ingress: no non-loopback IPv4 address on this node")
}

// Close releases the port and ends the relayed connections.
func (r *loopbackRelay) Close() error {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	err := r.ln.Close()
	r.wg.Wait()
	return errors.Join(err, unix.Close(r.fd))
}
