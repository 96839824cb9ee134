package api

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type testItem struct {
	N int8 `json:"n"`
}

type testNote struct {
	Note string `json:"note"`
}

// testBody has a field of every kind a request body may have.
type testBody struct {
	Quantity *int           `json:"quantity"`
	Name     string         `json:"name"`
	Rate     *float64       `json:"rate"`
	Ratio    float32        `json:"ratio"`
	Small    int8           `json:"small"`
	Count    uint16         `json:"count"`
	Flag     bool           `json:"flag"`
	Tags     []string       `json:"tags"`
	Items    []testItem     `json:"items"`
	Meta     map[string]int `json:"meta"`
	Any      any            `json:"any"`
	Pair     [2]int         `json:"pair"`
	Quoted   int            `json:"quoted,string"`
	When     *time.Time     `json:"when"`
	Skipped  string         `json:"-"`
	testNote
}

// goWords are words of Go, not of JSON, that no message may contain once
// the client's own text (quoted) is taken out.
var goWords = regexp.MustCompile(`struct|\*|int8|int16|int32|int64|uint|float|map\[|\[\]|interface|Go |json:|time\.|api\.|reflect`)

var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)

func requireForPeople(t testing.TB, msg string) {
	t.Helper()
	require.NotRegexp(t, goWords, quoted.ReplaceAllString(msg, `""`), "a message names Go")
}

func TestDecode(t *testing.T) {
	t.Parallel()
	int64Range := "an integer between -9223372036854775808 and 9223372036854775807"
	cases := []struct {
		in         string
		allowEmpty bool
		want       string // the exact message; "" accepts
	}{
		{`{"quantity":2}`, false, ""},
		{" {\"quantity\":2}\r\n\t ", false, ""},
		{`{"quantity":null,"any":{"a":[1,"x",null,true,{}]}}`, false, ""},
		{`{"note":"promoted from an embedded struct"}`, false, ""},
		{`{"quoted":"12","when":"2026-01-01T00:00:00Z","pair":[1,2]}`, false, ""},
		{`{"count":65535,"small":-128,"ratio":3.4e38,"rate":1e-400}`, false, ""},
		{``, true, ""},
		{" \n\t", true, ""},
		{``, false, "a JSON body is required"},

		// Anything after the value.
		{`{"quantity":1}}`, false, "unexpected data after the JSON value at byte 15; send exactly one JSON object"},
		{`{"quantity":1}{}`, false, "unexpected data after the JSON value at byte 15; send exactly one JSON object"},
		{"{\"quantity\":1} \n x", false, "unexpected data after the JSON value at byte 18; send exactly one JSON object"},
		{"{}\v", false, "unexpected data after the JSON value at byte 3; send exactly one JSON object"},

		// Syntax.
		{`{"quantity":`, false, "malformed JSON: the body ends before its value does"},
		{`{"quantity":}`, false, "malformed JSON at byte 13: invalid character '}' looking for beginning of value"},
		{"{\"name\":\"\xff\"}", false, "the body is not valid UTF-8"},
		{strings.Repeat("[", 10001), false, "the JSON nests too deeply"},

		// The body's own type.
		{`[]`, false, "the body must be a JSON object"},
		{`"x"`, false, "the body must be a JSON object"},
		{`1`, false, "the body must be a JSON object"},
		{`true`, false, "the body must be a JSON object"},
		{`null`, false, "the body must be a JSON object"},
		{` null `, true, ""},

		// Fields of the wrong kind, by JSON path.
		{`{"quantity":"2"}`, false, `field "quantity": expected an integer, got a string`},
		{`{"quantity":{}}`, false, `field "quantity": expected an integer, got an object`},
		{`{"name":5}`, false, `field "name": expected a string, got a number`},
		{`{"flag":"yes"}`, false, `field "flag": expected true or false, got a string`},
		{`{"name":true}`, false, `field "name": expected a string, got true`},
		{`{"count":"1"}`, false, `field "count": expected an integer of 0 or more, got a string`},
		{`{"rate":[]}`, false, `field "rate": expected a number, got an array`},
		{`{"tags":"a"}`, false, `field "tags": expected an array, got a string`},
		{`{"tags":["a",1]}`, false, `field "tags[1]": expected a string, got a number`},
		{`{"items":[{"n":1},{"n":"x"}]}`, false, `field "items[1].n": expected an integer, got a string`},
		{`{"meta":{"a":1,"b":"x"}}`, false, `field "meta.b": expected an integer, got a string`},
		{`{"meta":[]}`, false, `field "meta": expected an object, got an array`},
		{`{"pair":[1,2,3]}`, false, `field "pair": at most 2 items`},

		// Numbers that do not fit: 422, never 500.
		{`{"quantity":1.5}`, false, `field "quantity": expected an integer (no fraction or exponent)`},
		{`{"quantity":1e2}`, false, `field "quantity": expected an integer (no fraction or exponent)`},
		{`{"quantity":99999999999999999999}`, false, `field "quantity": expected ` + int64Range},
		{`{"quantity":-99999999999999999999}`, false, `field "quantity": expected ` + int64Range},
		{`{"small":300}`, false, `field "small": expected an integer between -128 and 127`},
		{`{"items":[{"n":-129}]}`, false, `field "items[0].n": expected an integer between -128 and 127`},
		{`{"count":-1}`, false, `field "count": expected an integer between 0 and 65535`},
		{`{"count":65536}`, false, `field "count": expected an integer between 0 and 65535`},
		{`{"rate":1e400}`, false, `field "rate": expected a number within range (this one is too large)`},
		{`{"ratio":-1e39}`, false, `field "ratio": expected a number within range (this one is too large)`},
		{`{"any":{"deep":[1e400]}}`, false, `field "any.deep[0]": expected a number within range (this one is too large)`},

		// Names: unknown, other case, twice.
		{`{"colour":"red"}`, false, `unknown field "colour"`},
		{`{"items":[{"m":1}]}`, false, `unknown field "items[0].m"`},
		{`{"Quantity":1}`, false, `unknown field "Quantity"; did you mean "quantity"? (names are case-sensitive)`},
		{`{"Skipped":"x"}`, false, `unknown field "Skipped"`},
		{`{"quantity":1,"quantity":2}`, false, `field "quantity" appears twice; send each field once`},
		{`{"meta":{"a":1,"a":2}}`, false, `field "meta.a" appears twice; send each field once`},
		{`{"any":[{"x":1,"x":1}]}`, false, `field "any[0].x" appears twice; send each field once`},
		{`{"` + strings.Repeat("k", 500) + `":1}`, false, `unknown field "` + strings.Repeat("k", 100) + `…"`},

		// What only the decoder itself refuses keeps a message for people.
		{`{"quoted":12}`, false, "a value in the body cannot be read; check each field against the API reference"},
		{`{"when":5}`, false, "a value in the body cannot be read; check each field against the API reference"},
	}
	for _, c := range cases {
		var b testBody
		err := Decode([]byte(c.in), &b, c.allowEmpty)
		if len(c.in) > 80 {
			c.in = c.in[:80] + "..."
		}
		if c.want == "" {
			require.NoError(t, err, c.in)
			continue
		}
		require.Error(t, err, c.in)
		e, ok := err.(*Error)
		require.True(t, ok, "%q: %T is not an *api.Error", c.in, err)
		require.Equal(t, http.StatusUnprocessableEntity, e.Status, c.in)
		require.Equal(t, "invalid_request", e.Code)
		require.Equal(t, c.want, e.Message, c.in)
		requireForPeople(t, e.Message)
	}
}

// The values a body decodes to are encoding/json's.
func TestDecodeValues(t *testing.T) {
	t.Parallel()
	var b testBody
	require.NoError(t, Decode([]byte(`{"quantity":3,"name":"x","small":-5,"items":[{"n":2}],"meta":{"a":1},
		"any":{"k":[1.5,"s"]},"quoted":"7","note":"n","pair":[4]}`), &b, false))
	require.Equal(t, 3, *b.Quantity)
	require.Equal(t, int8(-5), b.Small)
	require.Equal(t, []testItem{{N: 2}}, b.Items)
	require.Equal(t, map[string]int{"a": 1}, b.Meta)
	require.Equal(t, map[string]any{"k": []any{1.5, "s"}}, b.Any)
	require.Equal(t, 7, b.Quoted)
	require.Equal(t, "n", b.Note)
	require.Equal(t, [2]int{4, 0}, b.Pair)
}

// A target that is not a pointer is the caller's bug: a 500, not a 422.
func TestDecodeNotAPointer(t *testing.T) {
	t.Parallel()
	err := Decode([]byte(`{}`), testBody{}, false)
	require.Error(t, err)
	require.Equal(t, http.StatusInternalServerError, AsError(err).Status)
}

func TestReadJSON(t *testing.T) {
	t.Parallel()
	var b testBody
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"quantity":4}`))
	require.NoError(t, ReadJSON(r, &b, false))
	require.Equal(t, 4, *b.Quantity)

	r = httptest.NewRequest("POST", "/", strings.NewReader(`{"name":"`+strings.Repeat("x", MaxBody)+`"}`))
	e := AsError(ReadJSON(r, &b, false))
	require.Equal(t, http.StatusRequestEntityTooLarge, e.Status)
}
