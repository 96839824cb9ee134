package web

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// defaultLang is the language of a request whose Accept-Language names none
// we have, and the catalogue every other must match key for key.
const defaultLang = "en"

// catalogueDir holds one catalogue per language, static/i18n/<lang>.json: a
// flat JSON object of key → text, or key → {"one": …, "other": …} for text
// that depends on a count (the plural categories of Intl.PluralRules).
const catalogueDir = "static/i18n"

var langFile = regexp.MustCompile(`^([a-z]{2,3})\.json$`)

// catalogues reads the embedded catalogues: the languages (sorted, the
// default first) and the default's keys. A catalogue that is not a flat
// object of strings and plural objects is a broken build.
func catalogues() (langs []string, keys map[string]bool, err error) {
	entries, err := fs.ReadDir(files, catalogueDir)
	if err != nil {
		return nil, nil, fmt.Errorf("web: read %s: %w", catalogueDir, err)
	}
	for _, e := range entries {
		if m := langFile.FindStringSubmatch(e.Name()); m != nil {
			langs = append(langs, m[1])
		}
	}
	slices.SortFunc(langs, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == defaultLang:
			return -1
		case b == defaultLang:
			return 1
		}
		return strings.Compare(a, b)
	})
	if len(langs) == 0 || langs[0] != defaultLang {
		return nil, nil, fmt.Errorf("web: no %s/%s.json", catalogueDir, defaultLang)
	}
	cat, err := readCatalogue(defaultLang)
	if err != nil {
		return nil, nil, err
	}
	keys = make(map[string]bool, len(cat))
	for k := range cat {
		keys[k] = true
	}
	return langs, keys, nil
}

// readCatalogue decodes one embedded catalogue.
func readCatalogue(lang string) (map[string]json.RawMessage, error) {
	b, err := files.ReadFile(path.Join(catalogueDir, lang+".json"))
	if err != nil {
		return nil, fmt.Errorf("web: read catalogue %s: %w", lang, err)
	}
	var cat map[string]json.RawMessage
	if err := json.Unmarshal(b, &cat); err != nil {
		return nil, fmt.Errorf("web: catalogue %s.json: %w", lang, err)
	}
	return cat, nil
}

// maxAcceptLanguage bounds the work one Accept-Language header can cause.
const (
	maxAcceptLanguage  = 1024
	maxLanguageEntries = 32
)

// negotiate picks the language for an Accept-Language header: the listed
// language with the highest q that we have (by its primary subtag, so
// de-AT gets de), the earlier one on a tie. ok is false when none matches
// (the page then asks navigator.languages, then falls back to English).
func negotiate(header string, langs []string) (lang string, ok bool) {
	if len(header) > maxAcceptLanguage {
		header = header[:maxAcceptLanguage]
	}
	bestQ := 0.0
	for i, part := range strings.Split(header, ",") {
		if i >= maxLanguageEntries {
			break
		}
		tag, params, _ := strings.Cut(part, ";")
		q := 1.0
		if v, found := strings.CutPrefix(strings.TrimSpace(params), "q="); found {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 || f > 1 {
				continue // a malformed entry says nothing
			}
			q = f
		}
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if q > bestQ && slices.Contains(langs, primary) {
			lang, bestQ, ok = primary, q, true
		}
	}
	if !ok {
		return defaultLang, false
	}
	return lang, true
}
