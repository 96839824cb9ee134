package web

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readJSON decodes an embedded catalogue into plain values.
func catalogue(t *testing.T, lang string) map[string]any {
	t.Helper()
	b, err := files.ReadFile("static/i18n/" + lang + ".json")
	require.NoError(t, err)
	var cat map[string]any
	require.NoError(t, json.Unmarshal(b, &cat), lang)
	return cat
}

var placeholder = regexp.MustCompile(`\{(\w+)\}`)

// placeholders are the {names} of a text, or of each form of a plural.
func placeholders(t *testing.T, key string, v any) []string {
	t.Helper()
	var texts []string
	switch v := v.(type) {
	case string:
		texts = []string{v}
	case map[string]any:
		require.Contains(t, v, "other", "%s: a plural needs its \"other\" form", key)
		for form, s := range v {
			require.Contains(t, []string{"zero", "one", "two", "few", "many", "other"}, form, "%s: plural form", key)
			str, ok := s.(string)
			require.True(t, ok, "%s.%s is not a string", key, form)
			texts = append(texts, str)
		}
	default:
		t.Fatalf("%s: %T is neither a text nor a plural", key, v)
	}
	set := map[string]bool{}
	for _, s := range texts {
		require.NotEmpty(t, strings.TrimSpace(s), "%s is empty", key)
		for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
			set[m[1]] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// TestCatalogues keeps the languages in step: every catalogue has the
// English keys, no others, and the same {placeholders} in each text; the
// language switch offers exactly the catalogues.
func TestCatalogues(t *testing.T) {
	t.Parallel()
	langs, keys, err := catalogues()
	require.NoError(t, err)
	require.Equal(t, "en", langs[0])
	require.Subset(t, langs, []string{"en", "de", "es"}, "English and at least German and Spanish")

	en := catalogue(t, "en")
	for _, lang := range langs {
		cat := catalogue(t, lang)
		require.ElementsMatch(t, slices.Collect(maps.Keys(en)), slices.Collect(maps.Keys(cat)), "%s.json has other keys than en.json", lang)
		for k, v := range cat {
			require.Equal(t, placeholders(t, k, en[k]), placeholders(t, k, v), "%s.json %q: placeholders", lang, k)
		}
	}
	require.Len(t, keys, len(en))

	option := regexp.MustCompile(`<option value="([a-z]+)" lang="([a-z]+)">`)
	for _, name := range []string{"pages/sale.html", "pages/index.html"} {
		html, err := files.ReadFile(name)
		require.NoError(t, err)
		var offered []string
		for _, m := range option.FindAllStringSubmatch(string(html), -1) {
			require.Equal(t, m[1], m[2], "%s: an option's lang is its value", name)
			offered = append(offered, m[1])
		}
		require.ElementsMatch(t, langs, offered, "%s: the language switch offers every catalogue", name)
	}
}

// TestCatalogueCoversThePages finds every key the pages use (data-i18n
// attributes, key-like string literals in the scripts, and the families
// built from a code) in the English catalogue, and so in every one.
func TestCatalogueCoversThePages(t *testing.T) {
	t.Parallel()
	en := catalogue(t, "en")
	used := map[string]string{} // key → where
	attr := regexp.MustCompile(`data-i18n(?:-label)?="([^"]+)"`)
	for _, name := range []string{"pages/sale.html", "pages/index.html"} {
		html, err := files.ReadFile(name)
		require.NoError(t, err)
		for _, m := range attr.FindAllStringSubmatch(string(html), -1) {
			used[m[1]] = name
		}
	}
	literal := regexp.MustCompile(`"([a-z][a-zA-Z]*\.[a-zA-Z_.]+|leave|loading|title|notice)"`)
	for _, name := range []string{"static/sale.js", "static/index.js"} {
		js, err := files.ReadFile(name)
		require.NoError(t, err)
		for _, m := range literal.FindAllStringSubmatch(string(js), -1) {
			if strings.HasSuffix(m[1], ".") || strings.HasSuffix(m[1], ".js") || strings.HasSuffix(m[1], ".json") {
				continue // a prefix of a family below, or a file
			}
			used[m[1]] = name
		}
	}
	for _, s := range []string{"upcoming", "open", "paused", "closed", "sold_out"} {
		used["state."+s] = "stateLabel"
	}
	for _, s := range []string{"held", "paid", "cancelled", "expired", "unknown"} {
		used["orderStatus."+s] = "renderOrder"
	}
	for _, s := range []string{"paid", "cancelled", "expired"} {
		used["orderMessage."+s] = "renderOrder"
	}
	for _, code := range []string{"network", "unavailable", "rate_limited", "banned", "sold_out", "sale_closed",
		"ticket_expired", "ticket_used", "already_bought", "order_not_held", "not_in_queue", "ip_limit", "queue_not_open"} {
		used["error."+code] = "sayError"
	}
	require.Greater(t, len(used), 100, "the pages use this many texts")
	for key, where := range used {
		if key == "title" || key == "notice" {
			continue // a theme's own
		}
		require.Contains(t, en, key, "%s uses %q, which en.json lacks", where, key)
	}
}

// TestDesignNamesInEnglish keeps the accessible names and words the Pages
// contract names (DESIGN.md) in the English texts.
func TestDesignNamesInEnglish(t *testing.T) {
	t.Parallel()
	en := catalogue(t, "en")
	for key, want := range map[string]string{
		"join.button": "Join", "join.again": "Join", "admitted.buy": "Buy", "order.pay": "Pay", "order.cancel": "Cancel",
		"waiting.paused": "paused", "eta.paused": "paused", "soldOut.text": "sold out", "closed.title": "closed",
		"notice.soldOut": "sold out", "notice.closed": "closed", "prequeue.text": "drawn at random",
		"shop.continue": "Continue",
	} {
		require.Contains(t, en[key], want, key)
	}
}

func TestNegotiate(t *testing.T) {
	t.Parallel()
	langs := []string{"en", "de", "es"}
	tests := []struct {
		header, lang string
		ok           bool
	}{
		{"", "en", false},
		{"de", "de", true},
		{"de-AT,de;q=0.9,en;q=0.8", "de", true},
		{"fr-FR,fr;q=0.9,es;q=0.5,en;q=0.4", "es", true},
		{"en;q=0.5, ES-mx", "es", true},
		{"fr", "en", false},
		{"de;q=0, es;q=0.1", "es", true},
		{"de;q=x, es;q=0.1", "es", true}, // a malformed entry is skipped
		{"*", "en", false},
		{strings.Repeat("xx,", 5000) + "de", "en", false}, // bounded
	}
	for _, tt := range tests {
		lang, ok := negotiate(tt.header, langs)
		require.Equal(t, tt.lang, lang, "%.60q", tt.header)
		require.Equal(t, tt.ok, ok, "%.60q", tt.header)
	}
}

// TestPageLanguage: the shopper pages come in the language Accept-Language
// asks for, say whether it did, preload its catalogue and vary by it.
func TestPageLanguage(t *testing.T) {
	t.Parallel()
	srv := setup(t)
	etags := map[string]bool{}
	for _, tt := range []struct{ header, want string }{
		{"de-DE,de;q=0.9", `<html lang="de" data-lang-negotiated="true">`},
		{"es", `<html lang="es" data-lang-negotiated="true">`},
		{"en-GB", `<html lang="en" data-lang-negotiated="true">`},
		{"fr", `<html lang="en" data-lang-negotiated="false">`},
	} {
		for _, path := range []string{"/", "/sales/phone-drop"} {
			res, body := get(t, srv.URL+path, "Accept-Language", tt.header)
			require.Equal(t, 200, res.StatusCode)
			require.Contains(t, body, tt.want, "%s %s", path, tt.header)
			require.Equal(t, "Accept-Language", res.Header.Get("Vary"))
			lang := regexp.MustCompile(`lang="([a-z]+)"`).FindStringSubmatch(tt.want)[1]
			require.Contains(t, body, `<link rel="preload" href="/static/i18n/`+lang+`.json" as="fetch" crossorigin>`)
			require.NotContains(t, body, "<!--theme", "markers are filled")
			require.NotContains(t, body, "/theme/", "no theme: nothing refers to one")
			etags[res.Header.Get("ETag")] = true
		}
	}
	require.Len(t, etags, 8, "each variant has its own ETag")

	res, body := get(t, srv.URL+"/static/i18n/de.json")
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, "application/json", res.Header.Get("Content-Type"))
	require.Contains(t, body, `"Warteraum"`)
}

// writeTheme makes a theme directory of files.
func writeTheme(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return dir
}

const testSVG = `<svg xmlns="http://www.w3.org/2000/svg" width="80" height="20"><rect width="80" height="20" fill="#c00"/></svg>`

func TestTheme(t *testing.T) {
	t.Parallel()
	dir := writeTheme(t, map[string]string{
		"logo.svg":     testSVG,
		"theme.css":    ":root { --accent: #c00; }",
		"text.de.json": `{"title": "Mein Laden", "notice": "Nur eins pro Person."}`,
		"text.en.json": `{"title": "My shop", "join.button": "Join the line"}`,
		"secret.txt":   "not served",
		"notes.md":     "ignored",
	})
	h, err := NewHandler(Options{ThemeDir: dir})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	for _, path := range []string{"/", "/sales/phone-drop"} {
		res, body := get(t, srv.URL+path)
		require.Equal(t, 200, res.StatusCode)
		require.Equal(t, wantCSP, res.Header.Get("Content-Security-Policy"), "a theme loosens nothing")
		// after app.css, so its custom properties win
		require.Regexp(t, `/static/app\.css">\s*<link rel="preload"[^>]*><link rel="stylesheet" href="/theme/theme\.css">`, body)
		require.Contains(t, body, `<meta name="flashsale-theme-texts" content="de en">`)
		require.Contains(t, body, `<a class="brand" href="/"><img class="logo" src="/theme/logo.svg" alt="">`)
	}
	for path, ct := range map[string]string{
		"/theme/logo.svg":     "image/svg+xml",
		"/theme/theme.css":    "text/css; charset=utf-8",
		"/theme/text.de.json": "application/json",
	} {
		res, body := get(t, srv.URL+path)
		require.Equal(t, 200, res.StatusCode, path)
		require.Equal(t, ct, res.Header.Get("Content-Type"), path)
		require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
		require.Equal(t, wantCSP, res.Header.Get("Content-Security-Policy"))
		require.NotEmpty(t, body)
	}
	for _, path := range []string{"/theme/secret.txt", "/theme/notes.md", "/theme/", "/theme/logo.png", "/theme/../web.go",
		"/theme/%2e%2e/web.go", "/theme/text.fr.json"} {
		res, _ := get(t, srv.URL+path)
		// 404, or for a path with dots, the mux's redirect to its clean
		// form (outside /theme/, where it is 404 too)
		require.Contains(t, []int{404, 307}, res.StatusCode, path)
		require.NotContains(t, res.Header.Get("Location"), "/theme/", path)
	}

	// No theme: /theme/ is empty.
	res, _ := get(t, setup(t).URL+"/theme/logo.svg")
	require.Equal(t, 404, res.StatusCode)
}

// TestExampleTheme keeps deploy/theme-example (the README's example) a
// theme that loads, with every part a theme can have.
func TestExampleTheme(t *testing.T) {
	t.Parallel()
	langs, keys, err := catalogues()
	require.NoError(t, err)
	th, err := loadTheme("../deploy/theme-example", langs, keys)
	require.NoError(t, err)
	require.Equal(t, "/theme/logo.svg", th.logo)
	require.True(t, th.css)
	require.Equal(t, []string{"de", "en", "es"}, th.texts)
}

func TestThemePNGLogo(t *testing.T) {
	t.Parallel()
	dir := writeTheme(t, map[string]string{"logo.png": "\x89PNG\r\n\x1a\n" + "rest"})
	h, err := NewHandler(Options{ThemeDir: dir})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, body := get(t, srv.URL+"/")
	require.Contains(t, body, `<img class="logo" src="/theme/logo.png" alt="">`)
	require.NotContains(t, body, "theme.css", "no theme.css, no link to one")
	require.NotContains(t, body, "flashsale-theme-texts")
	res, _ := get(t, srv.URL+"/theme/logo.png")
	require.Equal(t, "image/png", res.Header.Get("Content-Type"))
}

// TestThemeErrors: a theme that cannot work stops the start with the file
// and the fix, rather than serving a page that breaks.
func TestThemeErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "theme.css")
	require.NoError(t, os.WriteFile(file, []byte(":root{}"), 0o644))
	tests := []struct {
		name  string
		dir   string
		files map[string]string
		want  string
	}{
		{name: "missing", dir: filepath.Join(t.TempDir(), "nope"), want: "does not exist"},
		{name: "a file", dir: file, want: "is a file, not a directory"},
		{name: "big css", files: map[string]string{"theme.css": strings.Repeat("a", maxCSSBytes+1)}, want: "theme.css is over 64 KiB"},
		{name: "big logo", files: map[string]string{"logo.svg": "<svg>" + strings.Repeat(" ", maxLogoBytes)}, want: "logo.svg is over 256 KiB"},
		{name: "not a png", files: map[string]string{"logo.png": "<svg></svg>"}, want: "logo.png is not a PNG image"},
		{name: "not an svg", files: map[string]string{"logo.svg": "hello"}, want: "logo.svg is not an SVG image"},
		{name: "binary css", files: map[string]string{"theme.css": "\xff\xfe"}, want: "not UTF-8"},
		{name: "bad json", files: map[string]string{"text.en.json": `{"title": 1}`}, want: "text.en.json in"},
		{name: "trailing json", files: map[string]string{"text.en.json": `{"title": "a"} {}`}, want: "more after its JSON object"},
		{name: "unknown key", files: map[string]string{"text.de.json": `{"titel": "a"}`}, want: `unknown key "titel"`},
		{name: "long text", files: map[string]string{"text.en.json": `{"notice": "` + strings.Repeat("a", maxTextLen+1) + `"}`}, want: `"notice" is over 1000 bytes`},
		{name: "unknown language", files: map[string]string{"text.fr.json": `{}`}, want: `no "fr" language (it has en, de, es)`},
		{name: "big text", files: map[string]string{"text.en.json": strings.Repeat(" ", maxTextBytes+1)}, want: "over 16 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := tt.dir
			if dir == "" {
				dir = writeTheme(t, tt.files)
			}
			_, err := NewHandler(Options{ThemeDir: dir})
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

// maxPageWeight is the budget of the waiting page's JS and CSS, gzipped
// (issue 11): no build step, no CDN, and still quick on a phone at the
// moment of a drop.
const maxPageWeight = 60 << 10

// TestPageWeight gzips what the waiting page loads (its HTML, scripts,
// styles, the proof-of-work worker and every catalogue, though a page
// loads one or two) and keeps it under the budget. README states the
// figure this logs.
func TestPageWeight(t *testing.T) {
	t.Parallel()
	html, err := files.ReadFile("pages/sale.html")
	require.NoError(t, err)
	loaded := []string{"pages/sale.html", "static/pow-worker.js", "static/favicon.svg"}
	for _, m := range regexp.MustCompile(`(?:src|href)="/(static/[^"]+)"`).FindAllStringSubmatch(string(html), -1) {
		if !slices.Contains(loaded, m[1]) {
			loaded = append(loaded, m[1])
		}
	}
	require.Contains(t, loaded, "static/sale.js")
	require.Contains(t, loaded, "static/app.css")
	langs, _, err := catalogues()
	require.NoError(t, err)
	for _, lang := range langs {
		loaded = append(loaded, "static/i18n/"+lang+".json")
	}

	total, jsCSS := 0, 0
	for _, name := range loaded {
		body, err := files.ReadFile(name)
		require.NoError(t, err)
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		require.NoError(t, err)
		_, err = zw.Write(body)
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		t.Logf("%-26s %6d bytes, %5d gzipped", name, len(body), buf.Len())
		total += buf.Len()
		if strings.HasSuffix(name, ".js") || strings.HasSuffix(name, ".css") {
			jsCSS += buf.Len()
		}
	}
	t.Logf("waiting page: JS and CSS %.1f KB gzipped; with its HTML, icon and %d catalogues %.1f KB", float64(jsCSS)/1024, len(langs), float64(total)/1024)
	require.LessOrEqual(t, total, maxPageWeight, "the waiting page weighs %d bytes gzipped, over the %d budget", total, maxPageWeight)
}
