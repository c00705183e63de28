package bridge

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestMain doubles as tiny servers the end-to-end tests start inside network
// namespaces (re-executing the test binary under nsenter): busybox-static has
// no UDP server, and no HTTP server that tells the client's address.
func TestMain(m *testing.M) {
	switch os.Getenv("SHBR_HELPER") {
	case "":
		os.Exit(m.Run())
	case "udp-echo":
		udpEcho(os.Getenv("SHBR_ADDR"))
	case "whoami":
		whoami(os.Getenv("SHBR_ADDR"))
	default:
		fmt.Fprintln(os.Stderr, "unknown helper")
		os.Exit(2)
	}
}

// udpEcho answers every datagram with "echo:" + its payload.
func udpEcho(addr string) {
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			os.Exit(1)
		}
		_, _ = c.WriteTo(append([]byte("echo:"), buf[:n]...), from)
	}
}

// whoami answers every HTTP request with the client's IP address.
func whoami(addr string) {
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.RemoteAddr, ":")
		fmt.Fprint(w, host)
	}))
}
