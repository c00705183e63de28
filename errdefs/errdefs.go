// Package errdefs defines the typed errors every Shoal package returns across
// its seams. Callers test the kind with the Is* functions (which unwrap), never
// by matching message text. The API layer maps each kind to an HTTP status in
// exactly one place (api/errors.go).
package errdefs

import (
	"errors"
	"fmt"
)

// Kind classifies an error for callers and for HTTP status mapping.
type Kind int

const (
	KindUnknown          Kind = iota
	KindNotFound              // 404: no such object
	KindInvalidParameter      // 400: the request itself is wrong
	KindConflict              // 409: clashes with current state (name in use, wrong version, in use)
	KindForbidden             // 403: not allowed in this role/state
	KindUnavailable           // 503: cannot serve now (no leader, node not in swarm)
	KindNotImplemented        // 501
	KindNotModified           // 304
	KindUnauthorized          // 401
	KindSystem                // 500: our fault
)

func (k Kind) String() string {
	switch k {
	case KindNotFound:
		return "not found"
	case KindInvalidParameter:
		return "invalid parameter"
	case KindConflict:
		return "conflict"
	case KindForbidden:
		return "forbidden"
	case KindUnavailable:
		return "unavailable"
	case KindNotImplemented:
		return "not implemented"
	case KindNotModified:
		return "not modified"
	case KindUnauthorized:
		return "unauthorized"
	case KindSystem:
		return "system"
	}
	return "unknown"
}

// Error is an error carrying a Kind. It wraps an optional cause.
type Error struct {
	Kind  Kind
	Msg   string
	Cause error
}

func (e *Error) Error() string {
	switch {
	case e.Msg != "" && e.Cause != nil:
		return e.Msg + ": " + e.Cause.Error()
	case e.Msg != "":
		return e.Msg
	case e.Cause != nil:
		return e.Cause.Error()
	}
	return e.Kind.String()
}

func (e *Error) Unwrap() error { return e.Cause }

func newf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// NotFound and friends build a typed error from a format string.
func NotFound(format string, args ...any) error { return newf(KindNotFound, format, args...) }
func InvalidParameter(format string, args ...any) error {
	return newf(KindInvalidParameter, format, args...)
}
func Conflict(format string, args ...any) error    { return newf(KindConflict, format, args...) }
func Forbidden(format string, args ...any) error   { return newf(KindForbidden, format, args...) }
func Unavailable(format string, args ...any) error { return newf(KindUnavailable, format, args...) }
func NotImplemented(format string, args ...any) error {
	return newf(KindNotImplemented, format, args...)
}
func NotModified(format string, args ...any) error  { return newf(KindNotModified, format, args...) }
func Unauthorized(format string, args ...any) error { return newf(KindUnauthorized, format, args...) }
func System(format string, args ...any) error       { return newf(KindSystem, format, args...) }

// Wrap gives err the kind k, keeping err reachable through errors.Is/As.
// A nil err stays nil.
func Wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Cause: err}
}

// Wrapf is Wrap with a message prefix.
func Wrapf(k Kind, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...), Cause: err}
}

// KindOf returns the kind of the outermost typed error in err's chain.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindUnknown
}

func IsNotFound(err error) bool         { return KindOf(err) == KindNotFound }
func IsInvalidParameter(err error) bool { return KindOf(err) == KindInvalidParameter }
func IsConflict(err error) bool         { return KindOf(err) == KindConflict }
func IsForbidden(err error) bool        { return KindOf(err) == KindForbidden }
func IsUnavailable(err error) bool      { return KindOf(err) == KindUnavailable }
func IsNotImplemented(err error) bool   { return KindOf(err) == KindNotImplemented }
func IsNotModified(err error) bool      { return KindOf(err) == KindNotModified }
func IsUnauthorized(err error) bool     { return KindOf(err) == KindUnauthorized }
func IsSystem(err error) bool           { return KindOf(err) == KindSystem }
