package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// A theme is the shop's branding, read once at start from --theme-dir and
// served under /theme/ (so a shop rebrands with no rebuild):
//
//	logo.svg or logo.png   shown in the page header (the SVG wins if both)
//	theme.css              loaded after app.css: custom properties such as
//	                       --accent, --bg, --font (see deploy/theme-example)
//	text.<lang>.json       {"title": …, "notice": …} and any catalogue key,
//	                       overriding static/i18n/<lang>.json for that language
//
// Only these names are read and served; anything else in the directory is
// ignored. Each has a size cap, so a theme is a few hundred KiB of memory at
// most, and nothing a request says can make the server read a file.
type theme struct {
	files map[string]*asset // by name under /theme/
	logo  string            // "/theme/logo.svg", "/theme/logo.png" or ""
	css   bool
	texts []string // languages with a text.<lang>.json
}

// Caps on theme files: a logo, a stylesheet and a few sentences.
const (
	maxLogoBytes = 256 << 10
	maxCSSBytes  = 64 << 10
	maxTextBytes = 16 << 10
	// maxTextLen bounds one text, in bytes: a notice is a sentence or two.
	maxTextLen = 1000
)

// Text keys a theme may set besides the catalogue's own.
var themeOnlyKeys = []string{"title", "notice"}

var textFile = regexp.MustCompile(`^text\.([a-z]{2,3})\.json$`)

// loadTheme reads dir. langs and keys are the catalogues' languages and
// keys, which text overrides must stay within. Every error names the file
// and says what to change.
func loadTheme(dir string, langs []string, keys map[string]bool) (*theme, error) {
	info, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("theme directory %s does not exist: create it or leave the flag empty", dir)
		}
		return nil, fmt.Errorf("theme directory %s: %w", dir, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%s is a file, not a directory: give the directory that holds theme.css, logo.svg and text.<lang>.json", dir)
	}
	th := &theme{files: map[string]*asset{}}

	for _, name := range []string{"logo.svg", "logo.png"} {
		body, err := readCapped(dir, name, maxLogoBytes)
		if err != nil {
			return nil, err
		}
		if body == nil {
			continue
		}
		if err := checkLogo(name, body); err != nil {
			return nil, err
		}
		th.files[name] = newAsset("theme/"+name, body)
		if th.logo == "" {
			th.logo = "/theme/" + name
		}
	}

	css, err := readCapped(dir, "theme.css", maxCSSBytes)
	if err != nil {
		return nil, err
	}
	if css != nil {
		if !utf8.Valid(css) {
			return nil, fmt.Errorf("theme.css in %s is not UTF-8 text: save it as UTF-8", dir)
		}
		th.files["theme.css"] = newAsset("theme/theme.css", css)
		th.css = true
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("theme directory %s: %w", dir, err)
	}
	for _, e := range entries {
		m := textFile.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		lang := m[1]
		if !slices.Contains(langs, lang) {
			return nil, fmt.Errorf("%s in %s: the page has no %q language (it has %s): rename the file or remove it",
				e.Name(), dir, lang, strings.Join(langs, ", "))
		}
		body, err := readCapped(dir, e.Name(), maxTextBytes)
		if err != nil {
			return nil, err
		}
		if err := checkTexts(e.Name(), body, keys); err != nil {
			return nil, fmt.Errorf("%s in %s: %w", e.Name(), dir, err)
		}
		th.files[e.Name()] = newAsset("theme/"+e.Name(), body)
		th.texts = append(th.texts, lang)
	}
	slices.Sort(th.texts)
	return th, nil
}

// readCapped reads dir/name, nil when it does not exist. A file over max,
// or anything other than a regular file, is an error.
func readCapped(dir, name string, max int64) ([]byte, error) {
	p := filepath.Join(dir, name)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("theme file %s: %w", p, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("theme file %s: %w", p, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("theme file %s is not a regular file", p)
	}
	body, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("theme file %s: %w", p, err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("theme file %s is over %d KiB: make it smaller (the page loads it on every visit)", p, max>>10)
	}
	return body, nil
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// checkLogo refuses a logo that is not what its name says, which a browser
// would show as a broken image.
func checkLogo(name string, body []byte) error {
	if strings.HasSuffix(name, ".png") {
		if !bytes.HasPrefix(body, pngMagic) {
			return fmt.Errorf("theme file %s is not a PNG image", name)
		}
		return nil
	}
	if !utf8.Valid(body) || !bytes.Contains(body, []byte("<svg")) {
		return fmt.Errorf("theme file %s is not an SVG image (no <svg element)", name)
	}
	return nil
}

// checkTexts accepts a flat JSON object of short strings whose keys are the
// catalogue's or "title"/"notice"; a typo in a key is an error rather than a
// text that silently never shows.
func checkTexts(name string, body []byte, keys map[string]bool) error {
	var texts map[string]string
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&texts); err != nil {
		return fmt.Errorf("not a JSON object of strings (like {\"title\": \"My shop\", \"notice\": \"…\"}): %v", err)
	}
	if dec.More() {
		return errors.New("has more after its JSON object")
	}
	for k, v := range texts {
		if !keys[k] && !slices.Contains(themeOnlyKeys, k) {
			return fmt.Errorf("unknown key %q: use title, notice or a key of web/static/i18n/%s.json", k, defaultLang)
		}
		if len(v) > maxTextLen {
			return fmt.Errorf("%q is over %d bytes: shorten it", k, maxTextLen)
		}
	}
	return nil
}
