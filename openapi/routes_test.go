package openapi_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// assetTrees are the registered prefix patterns that serve file trees, not
// API operations: the pages' static files and the shop's theme.
var assetTrees = []string{"GET /static/", "GET /theme/"}

// registered walks the module's Go sources (tests aside) and returns every
// pattern given to a ServeMux's Handle or HandleFunc as a string literal,
// with where it is. The node's catch-all "/" (the pages' and the metrics
// listener's fallback) is no route and is left out.
func registered(t *testing.T) map[string]string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	fset := token.NewFileSet()
	out := map[string]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			c, ok := n.(*ast.CallExpr)
			if !ok || len(c.Args) != 2 {
				return true
			}
			sel, ok := c.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			lit, ok := c.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			pattern, err := strconv.Unquote(lit.Value)
			if err != nil || pattern == "/" {
				return true
			}
			rel, _ := filepath.Rel(root, path)
			out[pattern] = rel + ":" + strconv.Itoa(fset.Position(lit.Pos()).Line)
			return true
		})
		return nil
	})
	require.NoError(t, err)
	return out
}

// TestEveryRegisteredRouteIsDocumented compares the routes the code
// registers with the document's operations, both ways: a route added
// without documenting it, or an operation left after its route went,
// fails here.
func TestEveryRegisteredRouteIsDocumented(t *testing.T) {
	t.Parallel()
	doc := load(t)
	routes := registered(t)
	require.Greater(t, len(routes), 30, "the source walk found too few routes: %v", routes)
	inDoc := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inDoc[method+" "+path] = true
		}
	}
	var trees []string
	for pattern, where := range routes {
		method, path, ok := strings.Cut(pattern, " ")
		require.True(t, ok, "%s: pattern %q has no method: every route names its method", where, pattern)
		if strings.HasSuffix(path, "/") && path != "/" {
			trees = append(trees, pattern)
			continue
		}
		if path == "/{$}" {
			path = "/"
		}
		if !inDoc[method+" "+path] {
			t.Errorf("%s registers %s, which openapi/openapi.json does not document", where, pattern)
		}
		delete(inDoc, method+" "+path)
	}
	slices.Sort(trees)
	require.Equal(t, assetTrees, trees, "prefix routes (file trees) changed: document an API route, or list a new file tree here")
	for op := range inDoc {
		if op == "GET /metrics" {
			continue
		}
		t.Errorf("openapi/openapi.json documents %s, which no code registers", op)
	}
}

// TestEveryDocumentedRouteIsServed asks a real node for every operation of
// the document (sample path values, no token) and checks the node's router
// took it: not the API's 404 for an unknown path or its 405, and, from the
// request metric's route label, matched to that very pattern.
func TestEveryDocumentedRouteIsServed(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t, func(c *node.Config) { c.Dev = true })
	doc := load(t)
	param := regexp.MustCompile(`\{[a-z]+\}`)
	want := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			concrete := param.ReplaceAllString(path, "x")
			req, err := http.NewRequest(method, s.URL+concrete, nil)
			require.NoError(t, err)
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			require.NoError(t, err)
			r := &testenv.Response{Status: resp.StatusCode, Header: resp.Header}
			resp.Body.Close()
			where := method + " " + path
			require.NotEqual(t, http.StatusMethodNotAllowed, r.Status, "%s: the node does not take this method (Allow: %s)", where, r.Header.Get("Allow"))
			if strings.HasSuffix(path, "/ws") {
				require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s: a plain GET is no handshake", where)
				continue // upgrades are not in the latency metric
			}
			pattern := where
			if path == "/" {
				pattern = "GET /{$}"
			}
			want[pattern] = true
		}
	}
	// The node records a request's route after its handler returns, which
	// may be after the client has the whole answer: poll until every
	// route is there.
	delete(want, "GET /metrics") // the first scrape is the first /metrics request
	var metrics []byte
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		resp, err := http.Get(s.URL + "/metrics")
		if !assert.NoError(c, err) {
			return
		}
		defer resp.Body.Close()
		metrics, err = io.ReadAll(resp.Body)
		assert.NoError(c, err)
		var miss []string
		for pattern := range want {
			if !strings.Contains(string(metrics), `route="`+pattern+`"`) {
				miss = append(miss, pattern)
			}
		}
		assert.Empty(c, miss, "the node's router did not match these; /metrics has the routes %v", routeLabels(metrics))
	}, 5*time.Second, 50*time.Millisecond)
	require.NotContains(t, string(metrics), `route="unmatched"`, "a documented path fell through the router")
}

// routeLabels lists the request metric's route labels.
func routeLabels(metrics []byte) []string {
	var out []string
	for _, sub := range routeLabel.FindAllStringSubmatch(string(metrics), -1) {
		if !slices.Contains(out, sub[1]) {
			out = append(out, sub[1])
		}
	}
	slices.Sort(out)
	return out
}
