package openapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// checker sends requests to a real node and validates each request and
// its answer against the document with kin-openapi's openapi3filter. A
// mismatch fails the test with the route and the difference; the test
// goes on, so one run lists every mismatch.
type checker struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	s      *testenv.Server

	// errorf reports a mismatch (t.Errorf; a test of the checker itself
	// collects them instead).
	errorf func(format string, args ...any)

	mu sync.Mutex
	// ok counts, per operation ("METHOD /path"), the answers validated with
	// a success status: the run must reach every operation.
	ok map[string]int
}

func newChecker(t *testing.T, s *testenv.Server) *checker {
	t.Helper()
	return checkerFor(t, s, load(t))
}

// checkerFor checks against doc (a test of the checker changes it).
func checkerFor(t *testing.T, s *testenv.Server, doc *openapi3.T) *checker {
	t.Helper()
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	return &checker{t: t, doc: doc, router: router, s: s, errorf: t.Errorf, ok: map[string]int{}}
}

// call is one request of the scenario.
type call struct {
	method, path string
	token        string            // Authorization: Bearer, when set
	body         any               // string or []byte as is, else JSON-encoded; nil: no body
	headers      map[string]string // more request headers
	cookies      []*http.Cookie
	// breaksDoc marks a request the document itself refuses (a missing or
	// wrong token, an unknown field, a value out of range): the server must
	// answer an error, and the document must refuse the request too, so it
	// is at least as strict as the server.
	breaksDoc bool
}

// do sends c to the node, checks the request and the answer against the
// document, and returns the answer.
func (k *checker) do(c call) *testenv.Response {
	k.t.Helper()
	var raw []byte
	switch b := c.body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		enc, err := json.Marshal(b)
		require.NoError(k.t, err)
		raw = enc
	}
	build := func(base string) *http.Request {
		var rd io.Reader
		if c.body != nil {
			rd = bytes.NewReader(raw)
		}
		req, err := http.NewRequest(c.method, base+c.path, rd)
		require.NoError(k.t, err)
		if c.body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		for h, v := range c.headers {
			req.Header.Set(h, v)
		}
		for _, ck := range c.cookies {
			req.AddCookie(ck)
		}
		return req
	}
	route, in := k.request(c, build(k.s.URL))

	resp, err := http.DefaultClient.Do(build(k.s.URL))
	require.NoError(k.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(k.t, err)
	out := &testenv.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	if c.breaksDoc {
		require.GreaterOrEqual(k.t, out.Status, 400, "%s %s broke the document but the server took it: %s", c.method, c.path, body)
	}
	if route != nil {
		k.response(route, in, out)
	}
	return out
}

// request finds req's operation and validates req against it. It returns
// nil for a path or method the document does not have (the 404 and 405
// samples), after checking that the call expected that.
func (k *checker) request(c call, req *http.Request) (*routers.Route, *openapi3filter.RequestValidationInput) {
	k.t.Helper()
	where := c.method + " " + c.path
	route, params, err := k.router.FindRoute(req)
	if err != nil {
		if !c.breaksDoc {
			k.errorf("%s: the document has no such operation: %v", where, err)
		}
		return nil, nil
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: k.authenticate, MultiError: true}}
	err = openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case c.breaksDoc && err == nil:
		k.errorf("%s %s: the request should break the document, which took it: the document is looser than the server",
			route.Method, route.Path)
	case !c.breaksDoc && err != nil:
		k.errorf("%s %s: the request does not match the document: %v", route.Method, route.Path, err)
	}
	return route, in
}

// response validates an answer against its operation: the status must be
// documented, and its headers and body must match.
func (k *checker) response(route *routers.Route, in *openapi3filter.RequestValidationInput, out *testenv.Response) {
	k.t.Helper()
	err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: out.Status, Header: out.Header,
		Body:    io.NopCloser(bytes.NewReader(out.Body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	if err != nil {
		k.errorf("%s %s: the %d answer does not match the document: %v\nbody: %.500s", route.Method, route.Path, out.Status, err, out.Body)
		return
	}
	if out.Status < 400 {
		k.mu.Lock()
		k.ok[route.Method+" "+route.Path]++
		k.mu.Unlock()
	}
}

// schema validates v (decoded JSON) against a schema of the components.
func (k *checker) schema(name string, raw []byte) {
	k.t.Helper()
	ref := k.doc.Components.Schemas[name]
	require.NotNil(k.t, ref, "no schema %s", name)
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		k.errorf("%s: not JSON: %v: %s", name, err, raw)
		return
	}
	if err := ref.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		k.errorf("%s: %s does not match: %v", name, raw, err)
	}
}

// componentResponse validates an answer no operation gives (the API's 404
// for an unknown path, 405 for a known path's other method) against a
// response of the components: its headers and its JSON body.
func (k *checker) componentResponse(name string, out *testenv.Response) {
	k.t.Helper()
	ref := k.doc.Components.Responses[name]
	require.NotNil(k.t, ref, "no response %s", name)
	for h, hr := range ref.Value.Headers {
		if hr.Value.Required && out.Header.Get(h) == "" {
			k.errorf("response %s: header %s missing", name, h)
		}
	}
	require.Equal(k.t, "application/json", out.Header.Get("Content-Type"))
	mt := ref.Value.Content.Get("application/json")
	var v any
	require.NoError(k.t, json.Unmarshal(out.Body, &v))
	if err := mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		k.errorf("response %s: %s does not match: %v", name, out.Body, err)
	}
}

// dial opens the sale's WebSocket as a browser of the node's origin would,
// validating the upgrade request and its 101 against the document.
func (k *checker) dial(saleID, qt string) *frames {
	k.t.Helper()
	path := "/api/v1/sales/" + saleID + "/ws?qt=" + url.QueryEscape(qt)
	req, err := http.NewRequest("GET", k.s.URL+path, nil)
	require.NoError(k.t, err)
	route, in := k.request(call{method: "GET", path: path}, req)
	ws, resp, err := websocket.DefaultDialer.Dial(strings.Replace(k.s.URL, "http", "ws", 1)+path,
		http.Header{"Origin": {k.s.URL}})
	require.NoError(k.t, err)
	k.t.Cleanup(func() { ws.Close() })
	if route != nil {
		k.response(route, in, &testenv.Response{Status: resp.StatusCode, Header: resp.Header})
	}
	return &frames{k: k, ws: ws}
}

// frames reads a socket's frames, each validated against the Frame schema.
type frames struct {
	k  *checker
	ws *websocket.Conn
}

// until reads frames until one has type typ (within 15 s) and returns it.
func (f *frames) until(typ string) map[string]any {
	f.k.t.Helper()
	require.NoError(f.k.t, f.ws.SetReadDeadline(time.Now().Add(15*time.Second)))
	for {
		_, raw, err := f.ws.ReadMessage()
		require.NoError(f.k.t, err, "waiting for a %s frame", typ)
		f.k.schema("Frame", raw)
		var m map[string]any
		require.NoError(f.k.t, json.Unmarshal(raw, &m))
		if m["type"] == typ {
			return m
		}
	}
}

// authenticate is the security check of the requests: a token of the kind
// each scheme names, sent where the scheme says. It reads the tokens'
// claims without checking signatures (the node does that): it tells a
// document that asks for the wrong kind of token from one that is right.
func (k *checker) authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	bearer := ""
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		bearer = h[len("Bearer "):]
	}
	cookie := func(name string) string {
		if c, err := r.Cookie(name); err == nil {
			return c.Value
		}
		return ""
	}
	var ok bool
	switch in.SecuritySchemeName {
	case "userToken":
		ok = k.userToken(bearer)
	case "userCookie":
		ok = k.userToken(cookie("fs_token"))
	case "queueToken":
		ok = use(bearer) == "queue"
	case "queueCookie":
		ok = use(cookie("fs_qt")) == "queue"
	case "queueQuery":
		ok = use(r.URL.Query().Get("qt")) == "queue"
	case "ticket":
		ok = use(bearer) == "ticket"
	case "adminToken":
		ok = bearer != "" && bearer == k.s.AdminToken
	case "serviceToken":
		ok = bearer != "" && bearer == k.s.ServiceToken
	default:
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	if !ok {
		return in.NewError(errors.New("no " + in.SecuritySchemeName))
	}
	return nil
}

// userToken reports whether tok is a user token of the node's shop: HS256
// with its identity secret.
func (k *checker) userToken(tok string) bool {
	if tok == "" {
		return false
	}
	_, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return k.s.Secret, nil },
		jwt.WithValidMethods([]string{"HS256"}))
	return err == nil
}

// use is the "use" claim of a JWT, unverified ("" when it is none).
func use(tok string) string {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		return ""
	}
	u, _ := claims["use"].(string)
	return u
}

// missed lists the operations of the document no validated answer
// reached with a success.
func (k *checker) missed() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for path, item := range k.doc.Paths.Map() {
		for method := range item.Operations() {
			if k.ok[method+" "+path] == 0 {
				out = append(out, method+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}
