package identity

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// The HS256 fast path reads a token's header and claims with these helpers
// instead of decoding them into maps, yet must accept exactly what the
// general path (golang-jwt, which decodes both into map[string]any) accepts:
// keys match exactly (a struct would match "SUB" or "Exp" too), the last of
// duplicate keys wins, escaped keys count, and a number anywhere that does
// not fit a float64 spoils the whole object. FuzzHS256 holds the two paths
// to that.

// jsonMembers calls fn with each member of the JSON object b, in order: its
// key, decoded, and its value, raw. It reports false, having called fn for
// some members or none, when b is not a valid JSON object or holds a number
// that does not fit a float64: what encoding/json refuses when it decodes b
// into a map.
func jsonMembers(b []byte, fn func(key, val []byte)) bool {
	if !json.Valid(b) {
		return false
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false // null, an array or a scalar is not a claims set
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for i < len(b) {
		end := skipString(b, i)
		key, ok := jsonKey(b[i:end])
		if !ok {
			return false
		}
		i = skipSpace(b, end)
		i = skipSpace(b, i+1) // the colon
		vend, ok := skipValue(b, i)
		if !ok {
			return false
		}
		fn(key, b[i:vend])
		i = skipSpace(b, vend)
		if i < len(b) && b[i] == '}' {
			return true
		}
		i = skipSpace(b, i+1) // the comma
	}
	return false
}

// jsonKey decodes a key, a JSON string (escapes are rare in keys, and
// decoded as encoding/json decodes them).
func jsonKey(raw []byte) ([]byte, bool) {
	if len(raw) < 2 {
		return nil, false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return nil, false
			}
			return []byte(s), true
		}
	}
	return raw[1 : len(raw)-1], true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the JSON string that starts at i.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the JSON value that starts at i, and
// false when a number in it does not fit a float64.
func skipValue(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			i = skipString(b, i)
		case c == '{' || c == '[':
			depth++
			i++
			continue
		case c == '}' || c == ']':
			depth--
			i++
		case c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '-' || '0' <= c && c <= '9':
			j := i + 1
			for j < len(b) && isNumberByte(b[j]) {
				j++
			}
			if !fitsFloat64(b[i:j]) {
				return j, false
			}
			i = j
		default: // true, false, null
			for i < len(b) && 'a' <= b[i] && b[i] <= 'z' {
				i++
			}
		}
		if depth <= 0 {
			return i, depth == 0
		}
	}
	return i, false
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// fitsFloat64 reports whether encoding/json decodes the number into an any
// (it parses it as a float64 and refuses one out of range).
func fitsFloat64(num []byte) bool {
	if len(num) <= 20 { // no exponent and at most 20 digits: well inside
		plain := true
		for _, c := range num {
			plain = plain && c != 'e' && c != 'E'
		}
		if plain {
			return true
		}
	}
	_, err := strconv.ParseFloat(string(num), 64)
	return err == nil
}

// jsonNumber reads a raw value as golang-jwt reads a NumericDate out of a
// map: a number (float64), or not one.
func jsonNumber(raw []byte) (float64, bool) {
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// jsonString decodes a raw value as encoding/json decodes a string into an
// any (invalid UTF-8 and lone surrogates become U+FFFD); ok is false when
// the value is not a string.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	plain := raw[1 : len(raw)-1]
	if bytes.IndexByte(plain, '\\') < 0 && utf8.Valid(plain) {
		return string(plain), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// strictString decodes a JSON string whose every character is what it
// says: ok is false when its bytes are not valid UTF-8 or an escape holds a
// lone surrogate. encoding/json turns both into U+FFFD, so two different
// user ids ("a\xff" and "a\xfe") would come out as the same user.
func strictString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' || !utf8.Valid(raw) {
		return "", false
	}
	last := len(raw) - 1 // the closing quote
	for i := 1; i < last; i++ {
		if raw[i] != '\\' {
			continue
		}
		if i+1 >= last || raw[i+1] != 'u' {
			i++ // a one-letter escape
			continue
		}
		r, ok := hex4(raw, i+2, last)
		switch {
		case !ok:
			return "", false
		case 0xD800 <= r && r < 0xDC00: // a high surrogate: its low half must follow
			if i+7 >= last || raw[i+6] != '\\' || raw[i+7] != 'u' {
				return "", false
			}
			lo, ok := hex4(raw, i+8, last)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return "", false
			}
			i += 11
		case 0xDC00 <= r && r <= 0xDFFF: // a low half alone
			return "", false
		default:
			i += 5
		}
	}
	return jsonString(raw)
}

// hex4 reads the four hex digits at b[i:i+4], all before end.
func hex4(b []byte, i, end int) (rune, bool) {
	if i+4 > end {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
