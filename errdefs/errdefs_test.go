package errdefs

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestKinds(t *testing.T) {
	tests := []struct {
		name string
		err  error
		kind Kind
		msg  string
	}{
		{"notfound", NotFound("no such container: %s", "x"), KindNotFound, "no such container: x"},
		{"wrapped by fmt", fmt.Errorf("outer: %w", Conflict("in use")), KindConflict, "outer: in use"},
		{"wrap keeps cause", Wrap(KindSystem, io.EOF), KindSystem, "EOF"},
		{"wrapf", Wrapf(KindInvalidParameter, io.EOF, "bad tar"), KindInvalidParameter, "bad tar: EOF"},
		{"plain", errors.New("x"), KindUnknown, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := KindOf(tc.err); got != tc.kind {
				t.Fatalf("kind = %v, want %v", got, tc.kind)
			}
			if tc.err.Error() != tc.msg {
				t.Fatalf("msg = %q, want %q", tc.err.Error(), tc.msg)
			}
		})
	}
	if !errors.Is(Wrap(KindSystem, io.EOF), io.EOF) {
		t.Fatal("Wrap must keep the cause reachable")
	}
	if Wrap(KindSystem, nil) != nil {
		t.Fatal("Wrap(nil) must be nil")
	}
}
