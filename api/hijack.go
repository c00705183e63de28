package api

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/errdefs"
)

// hijackedConn is a connection taken over from the HTTP server for a raw
// stream (attach, exec). Reads come through the server's buffer first, so
// input the client sent right after its request is not lost.
type hijackedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *hijackedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the stream, so the client sees the end of output
// while it may still be sending.
func (c *hijackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// hijack takes over the connection and answers as docker does:
// "101 UPGRADED" with Upgrade: tcp when the client asked for an upgrade
// (the docker CLI does), else "200 OK", with the stream's media type.
func hijack(w http.ResponseWriter, r *http.Request, contentType string) (*hijackedConn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, errdefs.System("cannot hijack the connection: %v", err)
	}
	conn.SetDeadline(time.Time{}) // the server's timeouts do not apply to streams
	var b strings.Builder
	upgrade := strings.EqualFold(r.Header.Get("Connection"), "Upgrade") || r.Header.Get("Upgrade") != ""
	if upgrade {
		b.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: " + contentType + "\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n")
	} else {
		b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: " + contentType + "\r\n")
	}
	for _, k := range []string{"Api-Version", "Docker-Experimental", "Ostype", "Server"} {
		if v := w.Header().Get(k); v != "" {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := brw.Writer.WriteString(b.String()); err != nil {
		conn.Close()
		return nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	return &hijackedConn{Conn: conn, r: brw.Reader}, nil
}

func (s *Server) containerAttach(w http.ResponseWriter, r *http.Request) error {
	b := s.b.Containers
	ins, err := b.Inspect(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	tty := ins.Config != nil && ins.Config.Tty
	opts := backend.AttachOptions{
		UseStdin:   BoolValue(r, "stdin"),
		UseStdout:  BoolValue(r, "stdout"),
		UseStderr:  BoolValue(r, "stderr"),
		Logs:       BoolValue(r, "logs"),
		Stream:     BoolValue(r, "stream"),
		DetachKeys: r.URL.Query().Get("detachKeys"),
	}
	conn, err := hijack(w, r, streamType(r, tty))
	if err != nil {
		return err
	}
	defer conn.Close()
	// The request's context ends with the handler; the stream lives on
	// the hijacked connection instead.
	ctx := r.Context()
	if opts.UseStdin {
		opts.Stdin = conn
	}
	opts.Stdout = conn
	if err := b.Attach(ctx, ins.ID, opts); err != nil {
		writeStreamError(conn, tty, err)
	}
	return nil
}

// writeStreamError reports a failure on a stream whose headers are gone,
// as docker does: as text on the output.
func writeStreamError(w io.Writer, tty bool, err error) {
	msg := []byte("Error: " + err.Error() + "\n")
	if tty {
		w.Write(msg)
		return
	}
	hdr := []byte{1, 0, 0, 0, byte(len(msg) >> 24), byte(len(msg) >> 16), byte(len(msg) >> 8), byte(len(msg))}
	w.Write(append(hdr, msg...))
}
