// Package web serves the shopper's waiting page and the operator console: plain
// HTML, CSS and JavaScript embedded in the binary, with no build step. The pages
// talk only to the public JSON and WebSocket API (docs: DESIGN.md, "Public contract").
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed pages/*.html static
var files embed.FS

// contentSecurityPolicy allows nothing inline: every script and style is a file
// under /static/, so an injected string can never run.
const contentSecurityPolicy = "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'"

// contentTypes is fixed here rather than taken from package mime, whose answers
// depend on the host's mime.types (some say application/javascript, some nothing).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Handler serves the pages and their static assets:
//
//	GET /               index.html   (lists sales from GET /api/v1/sales, links to /sales/{id})
//	GET /sales/{sale}   sale.html    (the shopper's waiting page; JS reads the sale id from location.pathname)
//	GET /admin          admin.html   (the operator console)
//	GET /static/...     css/js assets, with Cache-Control: no-cache and correct content types
//
// Any other path is 404. Every response carries the Content-Security-Policy,
// X-Content-Type-Options, Referrer-Policy and X-Frame-Options headers.
func Handler() http.Handler {
	static := make(map[string]*asset)
	err := fs.WalkDir(files, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		a, err := load(name)
		if err != nil {
			return err
		}
		static[strings.TrimPrefix(name, "static/")] = a
		return nil
	})
	if err != nil {
		panic(err) // the files are embedded: only a broken build gets here, and the tests catch it
	}

	mux := http.NewServeMux()
	mux.Handle("GET /{$}", mustLoad("pages/index.html"))
	mux.Handle("GET /sales/{sale}", mustLoad("pages/sale.html"))
	mux.Handle("GET /admin", mustLoad("pages/admin.html"))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := static[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		a.ServeHTTP(w, r)
	})))
	return secure(mux)
}

// secure sets the headers every response of ours carries, 404s included.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY") // nobody frames the Buy button (clickjacking)
		next.ServeHTTP(w, r)
	})
}

// asset is one embedded file, read once, with a content hash for its ETag so that
// no-cache revalidation is a cheap 304.
type asset struct {
	name        string
	body        []byte
	contentType string
	etag        string
}

func load(name string) (*asset, error) {
	body, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("web: read embedded %s: %w", name, err)
	}
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		return nil, fmt.Errorf("web: no content type for %s: add its extension to contentTypes", name)
	}
	sum := sha256.Sum256(body)
	return &asset{
		name:        name,
		body:        body,
		contentType: ct,
		etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
	}, nil
}

func mustLoad(name string) *asset {
	a, err := load(name)
	if err != nil {
		panic(err)
	}
	return a
}

func (a *asset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}
