package ingress

import (
	"errors"

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
type socketReserver struct{ ns *netns.NS }

type fdReservation int

func (f fdReservation) Close() error { return unix.Close(int(f)) }

func (s socketReserver) reserve(k Key) (reservation, error) {
	var r reservation
	err := do(s.ns, func() error {
		typ := unix.SOCK_STREAM
		if k.Proto == ProtoUDP {
			typ = unix.SOCK_DGRAM
		}
		fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(k.Port)}); err != nil {
			unix.Close(fd)
			if errors.Is(err, unix.EADDRINUSE) {
				return errPortInUse
			}
			return err
		}
		r = fdReservation(fd)
		return nil
	})
	return r, err
}
