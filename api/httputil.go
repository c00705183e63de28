package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/shoal/shoal/errdefs"
)

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// DecodeJSON reads a JSON body into v. An empty body is an error unless
// allowEmpty, in which case v is left as is.
func DecodeJSON(r *http.Request, v any, allowEmpty bool) error {
	if r.Body == nil {
		if allowEmpty {
			return nil
		}
		return errdefs.InvalidParameter("request body is empty")
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			if allowEmpty {
				return nil
			}
			return errdefs.InvalidParameter("request body is empty")
		}
		return errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid JSON body")
	}
	return nil
}

// BoolValue reads a query flag as docker does: "", "0", "no", "false",
// "none" are false; anything else present is true.
func BoolValue(r *http.Request, k string) bool {
	s := strings.ToLower(strings.TrimSpace(r.URL.Query().Get(k)))
	return !(s == "" || s == "0" || s == "no" || s == "false" || s == "none")
}

// IntValue reads an integer query parameter; missing means def.
func IntValue(r *http.Request, k string, def int64) (int64, error) {
	s := r.URL.Query().Get(k)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errdefs.InvalidParameter("invalid value for %s: %q", k, s)
	}
	return v, nil
}

// Filters parses the "filters" query parameter (both the current map-of-bools
// and the older map-of-lists encodings).
func Filters(r *http.Request) (filters.Args, error) {
	args, err := filters.FromJSON(r.URL.Query().Get("filters"))
	if err != nil {
		return filters.NewArgs(), errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid filters")
	}
	return args, nil
}

// ValidateFilters refuses keys outside accepted, as docker does.
func ValidateFilters(args filters.Args, accepted ...string) error {
	ok := make(map[string]bool, len(accepted))
	for _, k := range accepted {
		ok[k] = true
	}
	for _, k := range args.Keys() {
		if !ok[k] {
			return errdefs.InvalidParameter("invalid filter '%s'", k)
		}
	}
	return nil
}
