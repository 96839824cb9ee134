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
	".png":  "image/png",
	".json": "application/json",
}

// Options configure NewHandler. The zero Options serve the pages unbranded.
type Options struct {
	// ThemeDir is --theme-dir: a directory with the shop's logo, theme.css
	// and text overrides, read once at start (theme.go). Empty: no theme.
	ThemeDir string
}

// Handler is NewHandler with no theme; it cannot fail (everything it serves
// is embedded).
func Handler() http.Handler {
	h, err := NewHandler(Options{})
	if err != nil {
		panic(err) // the files are embedded: only a broken build gets here, and the tests catch it
	}
	return h
}

// NewHandler serves the pages and their static assets:
//
//	GET /               index.html   (lists sales from GET /api/v1/sales, links to /sales/{id})
//	GET /sales/{sale}   sale.html    (the shopper's waiting page; JS reads the sale id from location.pathname)
//	GET /admin          admin.html   (the operator console)
//	GET /static/...     css/js assets and static/i18n/<lang>.json catalogues, with
//	                    Cache-Control: no-cache and correct content types
//	GET /theme/...      the theme's files, when opts.ThemeDir is set
//
// The shopper pages come in one variant per language, chosen by
// Accept-Language (Vary says so), with the theme's stylesheet and logo
// written in. Any other path is 404. Every response carries the
// Content-Security-Policy, X-Content-Type-Options, Referrer-Policy and
// X-Frame-Options headers. An unreadable or invalid theme is an error that
// names the file and the fix.
func NewHandler(opts Options) (http.Handler, error) {
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
		return nil, err
	}
	langs, keys, err := catalogues()
	if err != nil {
		return nil, err
	}
	th := &theme{}
	if opts.ThemeDir != "" {
		if th, err = loadTheme(opts.ThemeDir, langs, keys); err != nil {
			return nil, err
		}
	}
	index, err := newPage("pages/index.html", langs, th)
	if err != nil {
		return nil, err
	}
	sale, err := newPage("pages/sale.html", langs, th)
	if err != nil {
		return nil, err
	}
	admin, err := load("pages/admin.html")
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("GET /{$}", index)
	mux.Handle("GET /sales/{sale}", sale)
	mux.Handle("GET /admin", admin)
	mux.Handle("GET /static/", http.StripPrefix("/static/", serveFrom(static)))
	mux.Handle("GET /theme/", http.StripPrefix("/theme/", serveFrom(th.files)))
	return secure(mux), nil
}

// serveFrom serves the assets of a fixed map by name; any other name is 404,
// so no request reaches the file system.
func serveFrom(assets map[string]*asset) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		a.ServeHTTP(w, r)
	})
}

// page is a shopper page in its variants, by pageVariant.
type page struct {
	langs    []string
	variants map[string]*asset
}

// pageVariant names a variant: the language, and whether Accept-Language
// chose it (when it did not, the page asks navigator.languages).
func pageVariant(lang string, negotiated bool) string {
	return fmt.Sprintf("%s/%t", lang, negotiated)
}

// Markers in the shopper pages that newPage fills in. They are HTML
// comments, so the embedded files are valid pages as they are.
const (
	markHTML      = `<html lang="en">`
	markThemeHead = "<!--theme-head-->"
	markThemeLogo = "<!--theme-logo-->"
)

// newPage builds a page's variants: every language, told or not by
// Accept-Language, with the theme written in.
func newPage(name string, langs []string, th *theme) (*page, error) {
	src, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("web: read embedded %s: %w", name, err)
	}
	for _, m := range []string{markHTML, markThemeHead, markThemeLogo} {
		if bytes.Count(src, []byte(m)) != 1 {
			return nil, fmt.Errorf("web: %s must hold %q once", name, m)
		}
	}
	var head, logo strings.Builder
	if th.css {
		head.WriteString(`<link rel="stylesheet" href="/theme/theme.css">`)
	}
	if len(th.texts) > 0 {
		fmt.Fprintf(&head, `<meta name="flashsale-theme-texts" content="%s">`, strings.Join(th.texts, " "))
	}
	if th.logo != "" {
		// alt="": the link's text (the shop's title) names it already
		fmt.Fprintf(&logo, `<img class="logo" src="%s" alt="">`, th.logo)
	}
	p := &page{langs: langs, variants: map[string]*asset{}}
	for _, lang := range langs {
		for _, negotiated := range []bool{true, false} {
			html := fmt.Sprintf(`<html lang="%s" data-lang-negotiated="%t">`, lang, negotiated)
			// The catalogue is fetched as soon as the page's own scripts
			// run; preloading it saves that round trip.
			preload := fmt.Sprintf(`<link rel="preload" href="/static/i18n/%s.json" as="fetch" crossorigin>`, lang)
			body := strings.NewReplacer(markHTML, html, markThemeHead, preload+head.String(), markThemeLogo, logo.String()).
				Replace(string(src))
			p.variants[pageVariant(lang, negotiated)] = newAsset(name, []byte(body))
		}
	}
	return p, nil
}

func (p *page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Accept-Language")
	lang, ok := negotiate(r.Header.Get("Accept-Language"), p.langs)
	p.variants[pageVariant(lang, ok)].ServeHTTP(w, r)
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
	if _, ok := contentTypes[path.Ext(name)]; !ok {
		return nil, fmt.Errorf("web: no content type for %s: add its extension to contentTypes", name)
	}
	return newAsset(name, body), nil
}

// newAsset is body served as name, its content type by its extension (an
// unknown one is served as bytes, never guessed from the content).
func newAsset(name string, body []byte) *asset {
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		ct = "application/octet-stream"
	}
	sum := sha256.Sum256(body)
	return &asset{
		name:        name,
		body:        body,
		contentType: ct,
		etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
	}
}

func (a *asset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}
