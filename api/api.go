// Package api holds the public API's wire conventions that every role shares:
// the error shape, JSON bodies with their size limit, bearer tokens and times.
package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxBody is the largest request body the API reads; larger ones are 413.
const MaxBody = 64 << 10

// Error is an API error: an HTTP status, a contract code and a message that
// says what to fix. Extra fields are merged into the error object.
type Error struct {
	Status     int
	Code       string
	Message    string
	Extra      map[string]any
	RetryAfter int // seconds; set for 429 and 503
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Common errors.
var (
	ErrUnauthorized = Errorf(http.StatusUnauthorized, "unauthorized", "a valid token is required in the Authorization header")
	ErrNotFound     = Errorf(http.StatusNotFound, "not_found", "not found")
)

// Unavailable is the 503 a store outage answers.
func Unavailable(what string) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message: what + " is unavailable; retry after the Retry-After delay", RetryAfter: 1}
}

// Invalid is a 422 invalid_request naming the field.
func Invalid(format string, args ...any) *Error {
	return Errorf(http.StatusUnprocessableEntity, "invalid_request", format, args...)
}

// WriteJSON writes v as JSON with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, fmt.Errorf("encode response: %w", err))
		return
	}
	WriteRaw(w, status, b)
}

// WriteRaw writes an already encoded JSON body.
func WriteRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}

// ErrorBody encodes an error in the contract's shape.
func ErrorBody(e *Error) []byte {
	obj := map[string]any{"code": e.Code, "message": e.Message}
	for k, v := range e.Extra {
		obj[k] = v
	}
	b, _ := json.Marshal(map[string]any{"error": obj})
	return b
}

// AsError maps any error to an API error: an *Error as is, anything else a 500.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var m interface{ APIError() *Error }
	if errors.As(err, &m) {
		return m.APIError()
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
}

// WriteError writes err in the contract's shape. Errors that are not *Error
// become a 500 with no detail (the caller logs them).
func WriteError(w http.ResponseWriter, err error) {
	e := AsError(err)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	WriteRaw(w, e.Status, ErrorBody(e))
}

// ReadBody reads a request body up to MaxBody; a larger one is 413.
func ReadBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "invalid_request", "reading the body: %v", err)
	}
	if len(b) > MaxBody {
		return nil, Errorf(http.StatusRequestEntityTooLarge, "too_large", "the body is over %d bytes", MaxBody)
	}
	return b, nil
}

// Bearer returns the token of an "Authorization: Bearer" header, or "".
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Time formats t as the contract's RFC 3339 UTC string ending in Z.
func Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// TimePtr formats an optional time as a string or JSON null.
func TimePtr(t *time.Time) *string {
	if t == nil || t.IsZero() {
		return nil
	}
	s := Time(*t)
	return &s
}

// AdminOnly wraps operator handlers: a request without the admin token as
// its bearer token is 401 unauthorized (an empty token lets nobody in).
func AdminOnly(token string) func(http.HandlerFunc) http.HandlerFunc {
	want := []byte(token)
	return func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got := []byte(Bearer(r))
			if len(want) == 0 || subtle.ConstantTimeCompare(got, want) != 1 {
				WriteError(w, Errorf(http.StatusUnauthorized, "unauthorized", "the admin token is required"))
				return
			}
			h(w, r)
		}
	}
}
