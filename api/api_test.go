package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadBodyLimit(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", MaxBody+1)))
	_, err := ReadBody(r)
	e := AsError(err)
	require.Equal(t, http.StatusRequestEntityTooLarge, e.Status)
	require.Equal(t, "too_large", e.Code)
	r = httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", MaxBody)))
	b, err := ReadBody(r)
	require.NoError(t, err)
	require.Len(t, b, MaxBody)
}

func TestWriteError(t *testing.T) {
	w := httptest.NewRecorder()
	e := Unavailable("MySQL")
	e.Extra = map[string]any{"order_id": "ord_1"}
	WriteError(w, e)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.JSONEq(t, `{"error":{"code":"unavailable","message":"MySQL is unavailable; retry after the Retry-After delay","order_id":"ord_1"}}`, w.Body.String())

	// Anything that is not an API error is a 500 with no detail.
	w = httptest.NewRecorder()
	WriteError(w, http.ErrBodyNotAllowed)
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.NotContains(t, w.Body.String(), "body")
}

func TestBearer(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	require.Equal(t, "", Bearer(r))
	r.Header.Set("Authorization", "bearer abc ")
	require.Equal(t, "abc", Bearer(r))
	r.Header.Set("Authorization", "Basic abc")
	require.Equal(t, "", Bearer(r))
}
