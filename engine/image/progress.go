package image

import (
	"encoding/json"
	"io"
	"sync"

	"github.com/moby/moby/api/types/jsonstream"
)

// Message is one line of docker's JSON progress stream. It is
// jsonstream.Message plus the legacy "error" string older clients print.
type Message struct {
	Stream       string               `json:"stream,omitempty"`
	Status       string               `json:"status,omitempty"`
	Progress     *jsonstream.Progress `json:"progressDetail,omitempty"`
	ID           string               `json:"id,omitempty"`
	Error        *jsonstream.Error    `json:"errorDetail,omitempty"`
	ErrorMessage string               `json:"error,omitempty"`
	Aux          any                  `json:"aux,omitempty"`
}

// WriteStreamError ends a progress stream that already began with err, the
// way docker reports failures after its 200 was sent.
func WriteStreamError(w io.Writer, err error) error {
	return json.NewEncoder(w).Encode(Message{
		Error:        &jsonstream.Error{Message: err.Error()},
		ErrorMessage: err.Error(),
	})
}

// progress writes JSON messages; a nil writer discards them.
type progress struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		return &progress{}
	}
	return &progress{enc: json.NewEncoder(w)}
}

func (p *progress) write(m Message) {
	if p.enc == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.enc.Encode(m)
}

func (p *progress) status(id, status string) {
	m := Message{ID: id, Status: status}
	if id != "" {
		m.Progress = &jsonstream.Progress{}
	}
	p.write(m)
}

func (p *progress) bytes(id, status string, cur, total int64) {
	p.write(Message{ID: id, Status: status, Progress: &jsonstream.Progress{Current: cur, Total: total}})
}

func (p *progress) aux(v any) { p.write(Message{Progress: &jsonstream.Progress{}, Aux: v}) }

// counter reports bytes read through it every step bytes (not on a timer, so
// the stream is the same on every run).
type counter struct {
	r      io.Reader
	n      int64
	last   int64
	report func(n int64)
}

const progressStep = 512 << 10

func (c *counter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.n-c.last >= progressStep || (err == io.EOF && c.n != c.last) {
		c.last = c.n
		c.report(c.n)
	}
	return n, err
}
