package openapi_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/openapi"
	"github.com/flashsale/flashsale/testenv"
)

// TestCheckerCatchesMismatches proves the traffic check can fail: against
// a real node, each document below is wrong in one way, and the checker
// reports that difference, naming the route.
func TestCheckerCatchesMismatches(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, nil)["id"].(string)
	cases := []struct {
		name      string
		from, to  string // one edit of the document's JSON
		call      call
		want      string // in the report
		wantRoute string
	}{
		{
			name: "the answer has a field the document lacks",
			from: `"all_reserved": {"type": "boolean", "description": "Every remaining`, to: `"all_reserved_x": {"type": "boolean", "description": "Every remaining`,
			call: call{method: "GET", path: "/api/v1/sales/" + saleID},
			want: "all_reserved", wantRoute: "GET /api/v1/sales/{sale}",
		},
		{
			name: "the answer's status is not documented",
			from: `"200": {"description": "The sale.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Sale"}}}},
          "404": {"$ref": "#/components/responses/NotFound"},
          "503": {"$ref": "#/components/responses/Unavailable"}
        }
      }
    },
    "/.well-known/jwks.json"`,
			to: `"200": {"description": "The sale.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Sale"}}}},
          "503": {"$ref": "#/components/responses/Unavailable"}
        }
      }
    },
    "/.well-known/jwks.json"`,
			call: call{method: "GET", path: "/api/v1/sales/no-such-sale"},
			want: "status is not supported", wantRoute: "GET /api/v1/sales/{sale}",
		},
		{
			name: "the document takes a body the server refuses",
			from: `"required": ["name", "price_cents", "currency", "stock"],`, to: `"required": ["name", "price_cents", "currency", "stock"], "additionalProperties": true,`,
			call: call{method: "POST", path: "/api/v1/admin/sales", token: s.AdminToken, breaksDoc: true,
				body: map[string]any{"name": "X", "price_cents": 1, "currency": "EUR", "stock": 1, "colour": "red"}},
			want: "looser than the server", wantRoute: "POST /api/v1/admin/sales",
		},
		{
			name: "the document asks for another token",
			from: `"operationId": "adminListSales",
        "tags": ["admin"],
        "summary": "The sales (uncached)",
        "security": [{"adminToken": []}],`,
			to: `"operationId": "adminListSales",
        "tags": ["admin"],
        "summary": "The sales (uncached)",
        "security": [{"serviceToken": []}],`,
			call: call{method: "GET", path: "/api/v1/admin/sales", token: s.AdminToken},
			want: "does not match the document", wantRoute: "GET /api/v1/admin/sales",
		},
		{
			name: "an error code the document does not list",
			from: `"ErrorNotFound": {"allOf": [{"$ref": "#/components/schemas/Error"}, {"properties": {"error": {"properties": {"code": {"enum": ["not_found"]}}}}}]}`,
			to:   `"ErrorNotFound": {"allOf": [{"$ref": "#/components/schemas/Error"}, {"properties": {"error": {"properties": {"code": {"enum": ["not_in_queue"]}}}}}]}`,
			call: call{method: "GET", path: "/api/v1/sales/no-such-sale"},
			want: "not one of the allowed values", wantRoute: "GET /api/v1/sales/{sale}",
		},
	}
	for _, c := range cases {
		src := string(openapi.Document())
		require.Equal(t, 1, strings.Count(src, c.from), "%s: the edit must match once", c.name)
		doc, err := openapi3.NewLoader().LoadFromData([]byte(strings.Replace(src, c.from, c.to, 1)))
		require.NoError(t, err, c.name)
		require.NoError(t, doc.Validate(context.Background()), c.name)
		k := checkerFor(t, s, doc)
		var reports []string
		k.errorf = func(format string, args ...any) { reports = append(reports, fmt.Sprintf(format, args...)) }
		k.do(c.call)
		require.NotEmpty(t, reports, "%s: the checker saw no difference", c.name)
		require.Contains(t, reports[0], c.wantRoute, c.name)
		require.Contains(t, reports[0], c.want, c.name)

		// The real document has none of these differences.
		k = newChecker(t, s)
		k.errorf = func(format string, args ...any) {
			t.Errorf("%s: the real document: "+format, append([]any{c.name}, args...)...)
		}
		k.do(c.call)
	}
}
