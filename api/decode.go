package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Decode parses a request body strictly into v (a pointer). Every problem
// is a 422 invalid_request whose message names the field by its JSON path
// and the expected value in JSON words, never a Go type:
//
//   - the body is one JSON value in valid UTF-8, with nothing but JSON
//     whitespace after it;
//   - a struct takes only its fields' JSON names, matched exactly
//     (encoding/json alone would also take "Quantity" for "quantity");
//   - no object, at any depth, names a key twice (encoding/json keeps the
//     last, so a proxy reading the first would see another request);
//   - numbers fit the field: 1.5 or 1e3 is not an integer, 300 is not an int8;
//   - a fixed-size array takes at most its length.
//
// An empty body, or null, leaves v as it is when allowEmpty.
func Decode(body []byte, v any, allowEmpty bool) error {
	if len(trimJSONSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return Invalid("a JSON body is required")
	}
	if !utf8.Valid(body) {
		return Invalid("the body is not valid UTF-8")
	}
	// First the syntax, and where the value ends.
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return syntaxError(err)
	}
	if off := int(dec.InputOffset()); len(trimJSONSpace(body[off:])) > 0 {
		at := off + len(body[off:]) - len(bytes.TrimLeft(body[off:], jsonSpace)) + 1
		return Invalid("unexpected data after the JSON value at byte %d; send exactly one JSON object", at)
	}
	// JSON's own "nothing" stands for no body where a body is optional
	// (some client libraries send null for none).
	if allowEmpty && string(raw) == "null" {
		return nil
	}
	// Then the shape against v's type, for precise messages and the
	// checks encoding/json does not make.
	if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer {
		if err := check(raw, t.Elem()); err != nil {
			return err
		}
	}
	// Last, the decoding itself, which stays the judge of what is valid.
	dec = json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	return nil
}

// ReadJSON reads and decodes the request body strictly.
func ReadJSON(r *http.Request, v any, allowEmpty bool) error {
	b, err := ReadBody(r)
	if err != nil {
		return err
	}
	return Decode(b, v, allowEmpty)
}

// jsonSpace is JSON's whitespace (RFC 8259), narrower than unicode.IsSpace.
const jsonSpace = " \t\r\n"

func trimJSONSpace(b []byte) []byte { return bytes.Trim(b, jsonSpace) }

func syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se) && strings.HasSuffix(se.Error(), "exceeded max depth"):
		return Invalid("the JSON nests too deeply")
	case errors.As(err, &se):
		return Invalid("malformed JSON at byte %d: %s", se.Offset, se.Error())
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return Invalid("malformed JSON: the body ends before its value does")
	}
	return Invalid("malformed JSON")
}

// decodeError maps what encoding/json still refuses after check (base64,
// map keys, custom types) without passing on its Go type names.
func decodeError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ie *json.InvalidUnmarshalError
	if errors.As(err, &ie) {
		return fmt.Errorf("decode request body: %w", err) // a bug in the caller: a 500
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return Invalid("the body must be %s", bodyWord(te.Type))
		}
		return Invalid("field %s: expected %s", quotePath(te.Field), describe(te.Type))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return Invalid("unknown field %s", name)
	}
	return Invalid("a value in the body cannot be read; check each field against the API reference")
}

var (
	anyType         = reflect.TypeFor[any]()
	numberType      = reflect.TypeFor[json.Number]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// frame is an object or array being walked. t is its type with pointers
// removed, or nil when its contents are not checked (a json.Unmarshaler or
// a field with the ",string" option decodes itself).
type frame struct {
	obj  bool
	t    reflect.Type
	path string
	keys map[string]struct{} // the object's keys so far
	key  bool                // the object's next token is a key
	n    int                 // the array's next index

	// The type and path of the value after the last key.
	next     reflect.Type
	nextPath string
}

// check walks raw (valid JSON) against t and reports the first problem in
// document order. It keeps its own stack: depth is bounded by the decoder's
// own limit, not by Go's.
func check(raw []byte, root reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return syntaxError(err)
		}
		t, path := root, ""
		if len(stack) > 0 {
			top := stack[len(stack)-1]
			if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
				stack = stack[:len(stack)-1]
				continue
			}
			switch {
			case top.obj && top.key:
				k, _ := tok.(string)
				if err := top.addKey(k); err != nil {
					return err
				}
				continue
			case top.obj:
				t, path = top.next, top.nextPath
				top.key = true
			default:
				path = fmt.Sprintf("%s[%d]", top.path, top.n)
				if top.t != nil && top.t.Kind() == reflect.Array && top.n >= top.t.Len() {
					return Invalid("field %s: at most %d items", quotePath(top.path), top.t.Len())
				}
				t = elem(top.t)
				top.n++
			}
		}
		if tok == nil && path == "" {
			if rt := resolve(t); rt != nil && (rt.Kind() == reflect.Struct || rt.Kind() == reflect.Map) {
				return mismatch(path, rt, "null")
			}
		}
		f, err := value(tok, resolve(t), path)
		if err != nil {
			return err
		}
		if f != nil {
			stack = append(stack, f)
		}
	}
}

// addKey records an object key and what its value must be.
func (f *frame) addKey(k string) error {
	p := k
	if f.path != "" {
		p = f.path + "." + k
	}
	if _, dup := f.keys[k]; dup {
		return Invalid("field %s appears twice; send each field once", quotePath(p))
	}
	f.keys[k] = struct{}{}
	f.key = false
	f.nextPath = p
	f.next = nil
	if f.t == nil {
		return nil
	}
	switch f.t.Kind() {
	case reflect.Struct:
		fi, ok := structFields(f.t)[k]
		if !ok {
			for name := range structFields(f.t) {
				if strings.EqualFold(name, k) {
					return Invalid("unknown field %s; did you mean %q? (names are case-sensitive)", quotePath(p), name)
				}
			}
			return Invalid("unknown field %s", quotePath(p))
		}
		f.next = fi
	case reflect.Map, reflect.Interface:
		f.next = elem(f.t)
	}
	return nil
}

// value checks one token against t (nil: unchecked) and returns the frame
// to push when it opens an object or array.
func value(tok json.Token, t reflect.Type, path string) (*frame, error) {
	switch tok := tok.(type) {
	case nil: // null leaves any field as it is
		return nil, nil
	case json.Delim:
		f := &frame{obj: tok == '{', path: path, key: tok == '{'}
		if f.obj {
			f.keys = make(map[string]struct{})
		}
		if t == nil {
			return f, nil
		}
		switch k := t.Kind(); {
		case k == reflect.Interface:
		case f.obj && (k == reflect.Struct || k == reflect.Map) && !isText(t):
		case !f.obj && (k == reflect.Slice || k == reflect.Array):
		default:
			got := "an array"
			if f.obj {
				got = "an object"
			}
			return nil, mismatch(path, t, got)
		}
		f.t = t
		return f, nil
	case string:
		if t == nil || isText(t) || t.Kind() == reflect.String || t.Kind() == reflect.Interface ||
			(t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8) {
			return nil, nil
		}
		return nil, mismatch(path, t, "a string")
	case bool:
		if t == nil || t.Kind() == reflect.Bool || t.Kind() == reflect.Interface {
			return nil, nil
		}
		return nil, mismatch(path, t, strconv.FormatBool(tok))
	case json.Number:
		if t == nil {
			return nil, nil
		}
		return nil, number(string(tok), t, path)
	}
	return nil, nil
}

// number checks that the literal s fits t as encoding/json will parse it.
func number(s string, t reflect.Type, path string) error {
	if t == numberType {
		return nil
	}
	integral := !strings.ContainsAny(s, ".eE")
	switch k := t.Kind(); {
	case isText(t):
	case k >= reflect.Int && k <= reflect.Int64:
		if _, err := strconv.ParseInt(s, 10, t.Bits()); err == nil {
			return nil
		}
		if integral {
			lim := int64(1)<<(t.Bits()-1) - 1
			return rangeError(path, fmt.Sprintf("an integer between %d and %d", -lim-1, lim))
		}
		return rangeError(path, "an integer (no fraction or exponent)")
	case k >= reflect.Uint && k <= reflect.Uintptr:
		if _, err := strconv.ParseUint(s, 10, t.Bits()); err == nil {
			return nil
		}
		if integral {
			return rangeError(path, fmt.Sprintf("an integer between 0 and %d", uint64(math.MaxUint64)>>(64-t.Bits())))
		}
		return rangeError(path, "an integer (no fraction or exponent)")
	case k == reflect.Float32 || k == reflect.Float64 || k == reflect.Interface:
		bits := 64
		if k == reflect.Float32 {
			bits = 32
		}
		if _, err := strconv.ParseFloat(s, bits); err == nil {
			return nil
		}
		return rangeError(path, "a number within range (this one is too large)")
	}
	return mismatch(path, t, "a number")
}

func rangeError(path, want string) error {
	if path == "" {
		return Invalid("the body must be %s", want)
	}
	return Invalid("field %s: expected %s", quotePath(path), want)
}

func mismatch(path string, t reflect.Type, got string) error {
	if path == "" {
		return Invalid("the body must be %s", bodyWord(t))
	}
	return Invalid("field %s: expected %s, got %s", quotePath(path), describe(t), got)
}

// resolve removes pointers from t; nil means the value is not checked
// because it decodes itself.
func resolve(t reflect.Type) reflect.Type {
	for t != nil {
		if t.Implements(unmarshalerType) {
			return nil
		}
		if t.Kind() != reflect.Pointer {
			if reflect.PointerTo(t).Implements(unmarshalerType) {
				return nil
			}
			return t
		}
		t = t.Elem()
	}
	return nil
}

// elem is the type of a container's members (nil stays nil).
func elem(t reflect.Type) reflect.Type {
	if t == nil {
		return nil
	}
	switch t.Kind() {
	case reflect.Interface:
		return anyType
	case reflect.Slice, reflect.Array, reflect.Map:
		return t.Elem()
	}
	return nil
}

func isText(t reflect.Type) bool {
	return t.Implements(textType) || reflect.PointerTo(t).Implements(textType)
}

// describe names what a field of type t takes, in JSON words.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == numberType {
		return "a number"
	}
	if isText(t) {
		return "a string"
	}
	switch k := t.Kind(); {
	case k == reflect.Bool:
		return "true or false"
	case k >= reflect.Int && k <= reflect.Int64:
		return "an integer"
	case k >= reflect.Uint && k <= reflect.Uintptr:
		return "an integer of 0 or more"
	case k == reflect.Float32 || k == reflect.Float64:
		return "a number"
	case k == reflect.String:
		return "a string"
	case k == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return "a base64 string"
	case k == reflect.Slice || k == reflect.Array:
		return "an array"
	case k == reflect.Struct || k == reflect.Map:
		return "an object"
	case k == reflect.Interface:
		return "a JSON value"
	}
	return "another kind of value"
}

// bodyWord is describe for the whole body.
func bodyWord(t reflect.Type) string {
	switch d := describe(t); d {
	case "an object":
		return "a JSON object"
	case "an array":
		return "a JSON array"
	default:
		return d
	}
}

// quotePath quotes a field path for a message, cut short when a client
// sent a long key.
func quotePath(p string) string {
	const max = 100
	if len(p) > max {
		p = strings.ToValidUTF8(p[:max], "") + "…"
	}
	return strconv.Quote(p)
}

// fieldCache maps a struct type to its fields' JSON names and types; it is
// bounded by the program's types, not by input.
var fieldCache sync.Map

// structFields lists the names encoding/json decodes into t's fields. It
// may list more than encoding/json accepts (a name two embedded structs
// share): the decoder, which runs after, refuses those.
func structFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := make(map[string]reflect.Type)
	for _, f := range reflect.VisibleFields(t) {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				continue // inlined: VisibleFields lists its fields too
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.Contains(","+opts+",", ",string,") {
			m[name] = nil // quoted scalars: the decoder checks them
			continue
		}
		m[name] = f.Type
	}
	fieldCache.Store(t, m)
	return m
}
