package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const wantCSP = "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'"

func setup(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(body)
}

func TestPages(t *testing.T) {
	t.Parallel()
	srv := setup(t)

	tests := []struct {
		path, title string
	}{
		{"/", "<title>Sales</title>"},
		{"/sales/phone-drop", "<title>Waiting room</title>"},
		{"/sales/any-sale-id-1", "<title>Waiting room</title>"},
		{"/admin", "<title>Operator console</title>"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			res, body := get(t, srv.URL+tt.path)
			require.Equal(t, http.StatusOK, res.StatusCode)
			require.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"))
			require.Equal(t, wantCSP, res.Header.Get("Content-Security-Policy"))
			require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
			require.Equal(t, "no-referrer", res.Header.Get("Referrer-Policy"))
			require.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
			require.Contains(t, body, tt.title)
		})
	}
}

func TestStatic(t *testing.T) {
	t.Parallel()
	srv := setup(t)

	tests := []struct {
		path, contentType string
	}{
		{"/static/app.css", "text/css; charset=utf-8"},
		{"/static/api.js", "text/javascript; charset=utf-8"},
		{"/static/index.js", "text/javascript; charset=utf-8"},
		{"/static/sale.js", "text/javascript; charset=utf-8"},
		{"/static/admin.js", "text/javascript; charset=utf-8"},
		{"/static/favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			res, body := get(t, srv.URL+tt.path)
			require.Equal(t, http.StatusOK, res.StatusCode)
			require.Equal(t, tt.contentType, res.Header.Get("Content-Type"))
			require.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
			require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
			require.NotEmpty(t, body)

			// no-cache revalidates: the ETag makes that a 304.
			etag := res.Header.Get("ETag")
			require.NotEmpty(t, etag)
			res, body = get(t, srv.URL+tt.path, "If-None-Match", etag)
			require.Equal(t, http.StatusNotModified, res.StatusCode)
			require.Empty(t, body)
		})
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	srv := setup(t)

	for _, p := range []string{
		"/nope",
		"/index.html",
		"/admin/",
		"/admin/x",
		"/sales",
		"/sales/",
		"/sales/phone-drop/extra",
		"/static/",
		"/static/missing.js",
		"/static/pages/sale.html", // pages are served only at their routes
		"/pages/sale.html",
		"/web.go",
	} {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			res, _ := get(t, srv.URL+p)
			require.Equal(t, http.StatusNotFound, res.StatusCode)
			require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	srv := setup(t)

	res, err := http.Post(srv.URL+"/admin", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusMethodNotAllowed, res.StatusCode)
}

// htmlFiles answers every embedded page, by name.
func htmlFiles(t *testing.T) map[string]string {
	t.Helper()
	pages := map[string]string{}
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(name) != ".html" {
			return err
		}
		b, err := files.ReadFile(name)
		pages[name] = string(b)
		return err
	})
	require.NoError(t, err)
	require.Len(t, pages, 3)
	return pages
}

var staticRef = regexp.MustCompile(`(?:src|href)="(/static/[^"]*)"`)

func TestStaticReferencesExist(t *testing.T) {
	t.Parallel()
	srv := setup(t)

	for name, html := range htmlFiles(t) {
		refs := staticRef.FindAllStringSubmatch(html, -1)
		require.NotEmpty(t, refs, name)
		for _, ref := range refs {
			file := strings.TrimPrefix(ref[1], "/")
			_, err := fs.Stat(files, file)
			require.NoError(t, err, "%s refers to %s, which is not embedded", name, ref[1])

			res, _ := get(t, srv.URL+ref[1])
			require.Equal(t, http.StatusOK, res.StatusCode, "%s refers to %s", name, ref[1])
		}
	}
}

// TestPagesHaveNothingInline keeps the pages working under the CSP: no inline
// script, no style attribute or element, no on* handler attribute.
func TestPagesHaveNothingInline(t *testing.T) {
	t.Parallel()

	inline := []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), // a script with a body
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle=`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`javascript:`),
	}
	for name, html := range htmlFiles(t) {
		for _, re := range inline {
			require.False(t, re.MatchString(html), "%s matches %s", name, re)
		}
		for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1) {
			require.Contains(t, tag, ` src="/static/`, "%s: %s", name, tag)
		}
	}
}

// TestPageIDs pins the element ids browser tests rely on.
func TestPageIDs(t *testing.T) {
	t.Parallel()

	ids := map[string][]string{
		"pages/index.html": {"sales", "error"},
		"pages/sale.html": {
			"position", "queue-length", "eta", "state", "join", "buy", "quantity",
			"order-status", "order-id", "pay", "cancel", "leave", "signin-user", "signin", "error",
		},
		"pages/admin.html": {
			"admin-token", "admin-signin", "sales", "create-sale", "summary", "rate",
			"max-active", "apply", "pause", "resume", "close", "consistent", "error",
		},
	}
	pages := htmlFiles(t)
	for name, want := range ids {
		html, ok := pages[name]
		require.True(t, ok, name)
		for _, id := range want {
			require.Equal(t, 1, strings.Count(html, ` id="`+id+`"`), "%s: id %q", name, id)
		}
	}

	// The create form's inputs are named like the JSON fields.
	admin := pages["pages/admin.html"]
	for _, field := range []string{
		"id", "name", "price_cents", "currency", "stock", "starts_at", "ends_at", "admission_rate",
		"max_active", "ticket_ttl_seconds", "hold_ttl_seconds", "per_user_limit", "queue_mode",
	} {
		require.Contains(t, admin, ` name="`+field+`"`, field)
	}
}
