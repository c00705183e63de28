package container

import (
	"encoding/binary"
	"io"
	"sync"
)

// Stream ids of docker's 8-byte stream framing (stdcopy).
const (
	streamStdout byte = 1
	streamStderr byte = 2
)

// stdWriter frames every Write as one stdcopy record: [stream 0 0 0 len32be] + data,
// written with a single Write so frames from two streams never interleave
// on a shared, locked writer.
type stdWriter struct {
	w      io.Writer
	stream byte
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 32*1024+8); return &b }}

func newStdWriter(w io.Writer, stream byte) io.Writer { return &stdWriter{w: w, stream: stream} }

func (s *stdWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	bp := framePool.Get().(*[]byte)
	buf := append((*bp)[:0], s.stream, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(buf[4:8], uint32(len(p)))
	buf = append(buf, p...)
	_, err := s.w.Write(buf)
	if cap(buf) <= 64*1024 {
		*bp = buf
		framePool.Put(bp)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}
