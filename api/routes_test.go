package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// routesMux has routes shaped like the node's, with the pages' catch-all
// when pages is set (a waiting-room node) and without (a checkout node).
func routesMux(pages bool) *http.ServeMux {
	mux := http.NewServeMux()
	route := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pattern", r.Pattern)
		_, _ = w.Write([]byte("sale=" + r.PathValue("sale")))
	}
	for _, p := range []string{
		"GET /api/v1/sales/{sale}", "POST /api/v1/sales/{sale}/join", "DELETE /api/v1/sales/{sale}/join",
		"PATCH /api/v1/admin/sales/{sale}", "GET /.well-known/jwks.json",
	} {
		mux.HandleFunc(p, route)
	}
	up := websocket.Upgrader{}
	mux.HandleFunc("GET /api/v1/sales/{sale}/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = ws.WriteMessage(websocket.TextMessage, []byte("hello "+r.PathValue("sale")))
	})
	if pages {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("page"))
		})
	}
	return mux
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		method, target string
		pages          bool // with the pages' catch-all
		status         int
		code           string // the error code; "" for a non-error answer
		allow          string
		body           string // for a non-error answer
	}{
		// Routed requests go through untouched, path values and all.
		{"GET", "/api/v1/sales/s1", true, 200, "", "", "sale=s1"},
		{"HEAD", "/api/v1/sales/s1", true, 200, "", "", "sale=s1"},
		{"POST", "/api/v1/sales/s1/join", true, 200, "", "", "sale=s1"},
		{"DELETE", "/api/v1/sales/s1/join", false, 200, "", "", "sale=s1"},
		{"PATCH", "/api/v1/admin/sales/s1", true, 200, "", "", "sale=s1"},
		{"GET", "/.well-known/jwks.json", true, 200, "", "", "sale="},

		// A known path with another method.
		{"GET", "/api/v1/sales/s1/join", true, 405, "method_not_allowed", "DELETE, POST", ""},
		{"PUT", "/api/v1/sales/s1/join", false, 405, "method_not_allowed", "DELETE, POST", ""},
		{"PUT", "/api/v1/admin/sales/s1", true, 405, "method_not_allowed", "PATCH", ""},
		{"POST", "/api/v1/sales/s1", true, 405, "method_not_allowed", "GET, HEAD", ""},
		{"OPTIONS", "/api/v1/sales/s1", true, 405, "method_not_allowed", "GET, HEAD", ""},
		{"BREW", "/api/v1/sales/s1", false, 405, "method_not_allowed", "GET, HEAD", ""},
		{"POST", "/.well-known/jwks.json", true, 405, "method_not_allowed", "GET, HEAD", ""},

		// Unknown API paths.
		{"GET", "/api/v1/nope", true, 404, "not_found", "", ""},
		{"GET", "/api/v1/nope", false, 404, "not_found", "", ""},
		{"DELETE", "/api/v1/sales/s1/join/extra", true, 404, "not_found", "", ""},
		{"GET", "/api/v1/sales/", true, 404, "not_found", "", ""},
		{"GET", "/api/", true, 404, "not_found", "", ""},
		{"GET", "/api", true, 404, "not_found", "", ""},
		{"GET", "/.well-known/security.txt", true, 404, "not_found", "", ""},
		{"GET", "/api/v1/x/../nope", true, 404, "not_found", "", ""},

		// Pages keep their own answers, whatever the method.
		{"GET", "/sales/s1", true, 200, "", "", "page"},
		{"POST", "/admin", true, 200, "", "", "page"},
		{"GET", "/apiary", true, 200, "", "", "page"},
		{"GET", "/sales/s1", false, 404, "", "", "404 page not found\n"},
	}
	for _, c := range cases {
		name := c.method + " " + c.target
		w := httptest.NewRecorder()
		Routes(routesMux(c.pages)).ServeHTTP(w, httptest.NewRequest(c.method, c.target, nil))
		require.Equal(t, c.status, w.Code, name)
		require.Equal(t, c.allow, w.Header().Get("Allow"), name)
		if c.code == "" {
			require.Equal(t, c.body, w.Body.String(), name)
			continue
		}
		require.Equal(t, "application/json", w.Header().Get("Content-Type"), name)
		var got struct {
			Error struct{ Code, Message string }
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got), name)
		require.Equal(t, c.code, got.Error.Code, name)
		require.NotEmpty(t, got.Error.Message, name)
	}
}

func TestRoutesMessages(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	Routes(routesMux(true)).ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/sales/s1/join", nil))
	require.JSONEq(t, `{"error":{"code":"method_not_allowed","message":"this path does not take GET; it takes DELETE, POST"}}`, w.Body.String())
	w = httptest.NewRecorder()
	Routes(routesMux(true)).ServeHTTP(w, httptest.NewRequest("GET", "/api/v2/sales", nil))
	require.JSONEq(t, `{"error":{"code":"not_found","message":"no API endpoint has the path \"/api/v2/sales\"; check it against the API reference"}}`, w.Body.String())
}

// The mux's own redirects to a cleaned path still happen.
func TestRoutesRedirects(t *testing.T) {
	t.Parallel()
	for target, to := range map[string]string{
		"/api/v1//sales/s1":    "/api/v1/sales/s1",
		"/api/v1/x/../sales/1": "/api/v1/sales/1",
		"/api/../sales/s1":     "/sales/s1",
	} {
		w := httptest.NewRecorder()
		Routes(routesMux(true)).ServeHTTP(w, httptest.NewRequest("GET", target, nil))
		require.Equal(t, http.StatusTemporaryRedirect, w.Code, target)
		require.Equal(t, to, w.Header().Get("Location"), target)
	}
}

// Over a real server: a WebSocket upgrades through Routes, and a HEAD or an
// unknown path answers as HTTP says.
func TestRoutesServer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Routes(routesMux(true)))
	t.Cleanup(srv.Close)

	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/api/v1/sales/s1/ws", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	_, msg, err := ws.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, "hello s1", string(msg))
	require.NoError(t, ws.Close())

	// A socket to an unknown path is refused with the JSON 404.
	_, resp, err = websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/api/v1/sales/s1/nope", nil)
	require.ErrorIs(t, err, websocket.ErrBadHandshake)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	req, err := http.NewRequest("HEAD", srv.URL+"/api/v1/nope", nil)
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	req, err = http.NewRequest("PUT", srv.URL+"/api/v1/sales/s1/join", strings.NewReader(`{}`))
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "DELETE, POST", resp.Header.Get("Allow"))
}
