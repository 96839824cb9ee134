package bans

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
)

const adminToken = "admin-secret"

// server serves the ban endpoints behind a trivial admin check, through
// api.Routes as the node does.
func server(t *testing.T) (*httptest.Server, *Store, *atomic.Int32) {
	t.Helper()
	s, db := newStore(t)
	addSale(t, db, "phone-drop")
	h := NewHandler(s, quiet)
	var changed atomic.Int32
	h.Changed = func() { changed.Add(1) }
	mux := http.NewServeMux()
	h.Register(mux, func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if api.Bearer(r) != adminToken {
				api.WriteError(w, api.ErrUnauthorized)
				return
			}
			next(w, r)
		}
	})
	srv := httptest.NewServer(api.Routes(mux))
	t.Cleanup(srv.Close)
	return srv, s, &changed
}

func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	var out map[string]any
	if len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, &out), string(b))
	}
	return res.StatusCode, res.Header, out
}

func TestHTTPRoundTrip(t *testing.T) {
	t.Parallel()
	srv, _, changed := server(t)

	code, _, got := call(t, srv, "POST", "/api/v1/admin/bans", `{"ip":"203.0.113.7/24","reason":"bot farm"}`)
	require.Equal(t, http.StatusCreated, code, got)
	id, _ := got["id"].(string)
	require.Regexp(t, `^ban_`, id)
	created, _ := got["created_at"].(string)
	at, err := time.Parse(time.RFC3339, created)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(created, "Z"))
	require.WithinDuration(t, time.Now(), at, 5*time.Second)
	require.Equal(t, map[string]any{"id": id, "user_id": nil, "ip": "203.0.113.0/24", "sale_id": nil,
		"reason": "bot farm", "created_at": created, "expires_at": nil}, got)
	require.Equal(t, int32(1), changed.Load(), "the node is told, to act at once")

	code, _, got = call(t, srv, "POST", "/api/v1/admin/bans",
		`{"user_id":"auth0|ünï","sale_id":"phone-drop","ttl_seconds":60}`)
	require.Equal(t, http.StatusCreated, code, got)
	userBan := got["id"].(string)
	require.Equal(t, "auth0|ünï", got["user_id"])
	require.Nil(t, got["ip"])
	require.Equal(t, "phone-drop", got["sale_id"])
	require.Equal(t, "", got["reason"])
	exp, err := time.Parse(time.RFC3339, got["expires_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Minute), exp, 5*time.Second)

	code, _, got = call(t, srv, "GET", "/api/v1/admin/bans", "")
	require.Equal(t, http.StatusOK, code)
	list := got["bans"].([]any)
	require.Len(t, list, 2)
	require.Equal(t, userBan, list[0].(map[string]any)["id"], "newest first")
	require.Equal(t, id, list[1].(map[string]any)["id"])

	code, _, got = call(t, srv, "DELETE", "/api/v1/admin/bans/"+id, "")
	require.Equal(t, http.StatusNoContent, code, got)
	require.Equal(t, int32(3), changed.Load())
	code, _, got = call(t, srv, "DELETE", "/api/v1/admin/bans/"+id, "")
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "not_found", got["error"].(map[string]any)["code"])
	code, _, _ = call(t, srv, "DELETE", "/api/v1/admin/bans/ban_nosuch", "")
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, int32(3), changed.Load(), "a refused call changes nothing")

	code, _, got = call(t, srv, "GET", "/api/v1/admin/bans", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, got["bans"].([]any), 1)
}

func TestHTTPEmptyList(t *testing.T) {
	t.Parallel()
	srv, _, _ := server(t)
	req, err := http.NewRequest("GET", srv.URL+"/api/v1/admin/bans", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "application/json", res.Header.Get("Content-Type"))
	require.JSONEq(t, `{"bans":[]}`, string(b))
}

// TestHTTPRefuses: every bad request is the contract's error shape with
// the field named, and stores nothing.
func TestHTTPRefuses(t *testing.T) {
	t.Parallel()
	srv, s, changed := server(t)
	for _, tc := range []struct {
		name, body string
		status     int
		code, says string
	}{
		{"neither", `{}`, 422, "invalid_request", "user_id or ip"},
		{"both", `{"user_id":"a","ip":"203.0.113.7"}`, 422, "invalid_request", "user_id, ip"},
		{"every IPv4 client", `{"ip":"0.0.0.0/0"}`, 422, "invalid_request", "ip:"},
		{"every IPv6 client", `{"ip":"::/0"}`, 422, "invalid_request", "ip:"},
		{"not an address", `{"ip":"localhost"}`, 422, "invalid_request", "ip:"},
		{"empty user", `{"user_id":""}`, 422, "invalid_request", "user_id:"},
		{"user over 255 bytes", `{"user_id":"` + strings.Repeat("a", 256) + `"}`, 422, "invalid_request", "user_id:"},
		{"non-UTF-8 user", "{\"user_id\":\"al\xffice\"}", 422, "invalid_request", "UTF-8"},
		{"no such sale", `{"user_id":"a","sale_id":"nope"}`, 422, "invalid_request", "sale_id: no such sale"},
		{"ttl 0", `{"user_id":"a","ttl_seconds":0}`, 422, "invalid_request", "ttl_seconds:"},
		{"ttl fraction", `{"user_id":"a","ttl_seconds":1.5}`, 422, "invalid_request", "ttl_seconds"},
		{"ttl huge", `{"user_id":"a","ttl_seconds":1e30}`, 422, "invalid_request", "ttl_seconds"},
		{"long reason", `{"user_id":"a","reason":"` + strings.Repeat("x", 201) + `"}`, 422, "invalid_request", "reason:"},
		{"reason of 1 MB", `{"user_id":"a","reason":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "too_large", ""},
		{"unknown field", `{"user_id":"a","expires_at":null}`, 422, "invalid_request", "expires_at"},
		{"no body", ``, 422, "invalid_request", "body"},
		{"trailing data", `{"user_id":"a"} {}`, 422, "invalid_request", "after"},
		{"not an object", `["a"]`, 422, "invalid_request", "object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, got := call(t, srv, "POST", "/api/v1/admin/bans", tc.body)
			require.Equal(t, tc.status, code, got)
			e := got["error"].(map[string]any)
			require.Equal(t, tc.code, e["code"])
			require.Contains(t, e["message"], tc.says)
		})
	}
	list, err := s.List(t.Context(), time.Now())
	require.NoError(t, err)
	require.Empty(t, list)
	require.Zero(t, changed.Load())
}

// TestHTTPRoutes: the admin wrapper guards each endpoint; other methods
// are 405 with Allow.
func TestHTTPRoutes(t *testing.T) {
	t.Parallel()
	srv, _, _ := server(t)
	for _, r := range []struct{ method, path string }{
		{"POST", "/api/v1/admin/bans"}, {"GET", "/api/v1/admin/bans"}, {"DELETE", "/api/v1/admin/bans/ban_x"},
	} {
		req, err := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(`{"user_id":"a"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer not-the-admin")
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusUnauthorized, res.StatusCode, r)
	}
	code, h, got := call(t, srv, "GET", "/api/v1/admin/bans/ban_x", "")
	require.Equal(t, http.StatusMethodNotAllowed, code)
	require.Equal(t, "DELETE", h.Get("Allow"))
	require.Equal(t, "method_not_allowed", got["error"].(map[string]any)["code"])
}
