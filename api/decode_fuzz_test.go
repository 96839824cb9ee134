package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecode holds Decode to its promises on any body: no panic; every
// refusal is a 422 (or a 413 for size) in words for people; and whatever it
// accepts, encoding/json reads the same way and reads back after encoding.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		``, ` `, `{}`, `null`, `[]`, `"x"`, `1`,
		`{"quantity":2}`, `{"quantity":1}}`, `{"quantity":1} x`, `{"quantity":`,
		`{"quantity":1.5}`, `{"quantity":99999999999999999999}`, `{"small":300}`, `{"count":-1}`,
		`{"rate":1e400}`, `{"ratio":3.4e38}`, `{"flag":true,"name":"n","tags":["a","b"]}`,
		`{"items":[{"n":1},{"n":-128}],"meta":{"a":1,"b":2}}`, `{"any":{"k":[1,"s",null,false,{"x":[]}]}}`,
		`{"pair":[1,2]}`, `{"pair":[1,2,3]}`, `{"quoted":"12"}`, `{"when":"2026-01-01T00:00:00+01:00"}`,
		`{"note":"n"}`, `{"Quantity":1}`, `{"quantity":1,"quantity":2}`, `{"meta":{"a":1,"a":2}}`,
		"{\"name\":\"\xff\"}", `{"name":"\ud800"}`, `[[[[[[[[[[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v testBody
		err := ReadJSON(httptest.NewRequest("POST", "/", bytes.NewReader(body)), &v, true)
		if err != nil {
			e, ok := err.(*Error)
			require.True(t, ok, "%T is not an *api.Error: %v", err, err)
			require.Contains(t, []int{http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge}, e.Status, e.Message)
			requireForPeople(t, e.Message)
			return
		}
		if len(trimJSONSpace(body)) > 0 {
			var plain testBody
			require.NoError(t, json.Unmarshal(body, &plain), "accepted, yet encoding/json refuses it")
			require.Equal(t, plain, v, "read otherwise than by encoding/json")
		}
		out, err := json.Marshal(v)
		require.NoError(t, err)
		var again testBody
		require.NoError(t, Decode(out, &again, false), "refuses its own encoding %s", out)
		require.Equal(t, v, again, "does not read back its own encoding")
	})
}
