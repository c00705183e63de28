package shim

import (
	"bytes"
	"time"
	"unicode/utf8"
)

// MaxLogLine is where a line without a newline is cut into a partial
// message, as docker's json-file driver does (16 KiB).
const MaxLogLine = 16 * 1024

// AppendLogEntry appends one docker json-file record for msg:
// {"log":"...","stream":"stdout","time":"RFC3339Nano"}\n.
// It escapes like encoding/json (including <, > and &, and invalid UTF-8 as
// U+FFFD) without importing it, to keep the shim small.
func AppendLogEntry(dst []byte, stream string, msg []byte, t time.Time) []byte {
	dst = append(dst, `{"log":"`...)
	dst = appendJSONString(dst, msg)
	dst = append(dst, `","stream":"`...)
	dst = append(dst, stream...)
	dst = append(dst, `","time":"`...)
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, "\"}\n"...)
	return dst
}

const hexDigits = "0123456789abcdef"

func appendJSONString(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// lineSplitter turns a stream of chunks into log messages: each complete
// line (with its newline) is one message; a run of MaxLogLine bytes without
// a newline is emitted as a partial message; Flush emits the rest.
type lineSplitter struct {
	pending []byte
}

// Split appends chunk and calls emit for every complete message.
func (l *lineSplitter) Split(chunk []byte, emit func(msg []byte)) {
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			room := MaxLogLine - len(l.pending)
			if len(chunk) < room {
				l.pending = append(l.pending, chunk...)
				return
			}
			l.pending = append(l.pending, chunk[:room]...)
			chunk = chunk[room:]
			emit(l.pending)
			l.pending = l.pending[:0]
			continue
		}
		line := chunk[:i+1]
		chunk = chunk[i+1:]
		if len(l.pending) == 0 && len(line) <= MaxLogLine {
			emit(line)
			continue
		}
		for len(l.pending)+len(line) > MaxLogLine {
			room := MaxLogLine - len(l.pending)
			l.pending = append(l.pending, line[:room]...)
			line = line[room:]
			emit(l.pending)
			l.pending = l.pending[:0]
		}
		l.pending = append(l.pending, line...)
		emit(l.pending)
		l.pending = l.pending[:0]
	}
}

// Flush emits a trailing partial line, if any.
func (l *lineSplitter) Flush(emit func(msg []byte)) {
	if len(l.pending) > 0 {
		emit(l.pending)
		l.pending = l.pending[:0]
	}
}
