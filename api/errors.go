package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/shoal/shoal/errdefs"
)

// statusOf maps a typed error to the HTTP status docker uses for it. This is
// the only place kinds become statuses.
func statusOf(err error) int {
	switch errdefs.KindOf(err) {
	case errdefs.KindNotFound:
		return http.StatusNotFound
	case errdefs.KindInvalidParameter:
		return http.StatusBadRequest
	case errdefs.KindConflict:
		return http.StatusConflict
	case errdefs.KindForbidden:
		return http.StatusForbidden
	case errdefs.KindUnavailable:
		return http.StatusServiceUnavailable
	case errdefs.KindNotImplemented:
		return http.StatusNotImplemented
	case errdefs.KindNotModified:
		return http.StatusNotModified
	case errdefs.KindUnauthorized:
		return http.StatusUnauthorized
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &se) || errors.As(err, &te) {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

type errorResponse struct {
	Message string `json:"message"`
}

// WriteError writes err as docker does: a status and {"message": "..."}.
func WriteError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if status == http.StatusNotModified {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorResponse{Message: err.Error()})
}
