package openapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/openapi"
)

// load parses and validates the embedded document as kin-openapi reads
// OpenAPI 3.1 (JSON Schema 2020-12 for the schemas).
func load(t testing.TB) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapi.Document())
	require.NoError(t, err, "the document does not parse")
	require.NoError(t, doc.Validate(context.Background()), "the document is not valid OpenAPI")
	return doc
}

// TestDocumentIsValidOpenAPI31 loads the document with kin-openapi and
// validates it: structure, references, schemas, examples.
func TestDocumentIsValidOpenAPI31(t *testing.T) {
	t.Parallel()
	doc := load(t)
	require.True(t, doc.IsOpenAPI31OrLater(), "the document must be OpenAPI 3.1, is %s", doc.OpenAPI)
	require.Equal(t, "3.1.0", doc.OpenAPI)
}

// TestValidationCatchesABrokenDocument proves the validity check can fail:
// a dangling reference and a bad schema type are refused.
func TestValidationCatchesABrokenDocument(t *testing.T) {
	t.Parallel()
	for name, edit := range map[string]func(string) string{
		"dangling $ref": func(s string) string {
			return strings.Replace(s, `"#/components/schemas/SaleList"`, `"#/components/schemas/NoSuchSchema"`, 1)
		},
		"bad type": func(s string) string {
			return strings.Replace(s, `"type": "boolean"`, `"type": "bool"`, 1)
		},
		"response without a description": func(s string) string {
			return strings.Replace(s, `"204": {"description": "Left."}`, `"204": {}`, 1)
		},
	} {
		broken := edit(string(openapi.Document()))
		require.NotEqual(t, string(openapi.Document()), broken, "%s: the edit changed nothing", name)
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData([]byte(broken))
		if err == nil {
			err = doc.Validate(context.Background())
		}
		require.Error(t, err, "%s: a broken document passed", name)
	}
}

// contractCodes are the error codes of DESIGN.md with their statuses.
var contractCodes = map[string]string{
	"unauthorized": "401", "ticket_invalid": "401", "ticket_expired": "401", "ticket_used": "401",
	"forbidden": "403", "wrong_sale": "403", "banned": "403", "ip_limit": "403",
	"challenge_required": "403", "challenge_failed": "403",
	"not_found": "404", "not_in_queue": "404", "method_not_allowed": "405",
	"already_bought": "409", "sale_exists": "409", "order_not_held": "409", "invalid_state": "409",
	"queue_not_open": "409", "idempotency_in_progress": "409",
	"sold_out": "410", "sale_closed": "410", "too_large": "413",
	"invalid_request": "422", "idempotency_mismatch": "422", "rate_limited": "429", "unavailable": "503",
}

// errorCodes lists the codes an error response's schema allows: the enum
// its allOf narrows error.code to.
func errorCodes(t *testing.T, s *openapi3.SchemaRef) []string {
	t.Helper()
	var codes []string
	for _, part := range s.Value.AllOf {
		if part.Ref != "" {
			continue // the Error shape itself: every code
		}
		if e := part.Value.Properties["error"]; e != nil {
			if c := e.Value.Properties["code"]; c != nil {
				for _, v := range c.Value.Enum {
					codes = append(codes, v.(string))
				}
			}
		}
	}
	return codes
}

// TestErrorsFollowTheContract holds every operation's error answers to the
// contract: each names the codes it may carry, every one a code of the
// contract with that status, 429 and 503 say Retry-After, and every code of
// the contract is answered somewhere.
func TestErrorsFollowTheContract(t *testing.T) {
	t.Parallel()
	doc := load(t)
	var enum []string
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		enum = append(enum, v.(string))
	}
	for code := range contractCodes {
		require.Contains(t, enum, code, "ErrorCode lacks the contract's code %s", code)
	}
	require.Len(t, enum, len(contractCodes), "ErrorCode has codes the contract does not: %v", enum)

	seen := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			require.NotEmpty(t, op.OperationID, "%s has no operationId", where)
			for status, resp := range op.Responses.Map() {
				if status[0] != '4' && status[0] != '5' {
					continue
				}
				mt := resp.Value.Content.Get("application/json")
				if mt == nil {
					require.Equal(t, "/api/v1/sales/{sale}/ws", path, "%s %s: an error without a JSON body", where, status)
					continue
				}
				if path == "/metrics" || path == "/readyz" {
					continue // not API errors: the metrics listener's 404, readiness's own shape
				}
				codes := errorCodes(t, mt.Schema)
				require.NotEmpty(t, codes, "%s %s: the error schema names no codes", where, status)
				for _, c := range codes {
					require.Equal(t, contractCodes[c], status, "%s answers %s with status %s", where, c, status)
					seen[c] = true
				}
				if status == "429" || status == "503" {
					h := resp.Value.Headers["Retry-After"]
					require.NotNil(t, h, "%s %s lacks Retry-After", where, status)
					require.True(t, h.Value.Required, "%s %s: Retry-After must be required", where, status)
				}
			}
		}
	}
	// 405 is answered for every path, not by an operation.
	seen["method_not_allowed"] = true
	for code := range contractCodes {
		require.True(t, seen[code], "no operation answers %s", code)
	}
}

// TestHandlerServesTheDocument checks the route's answer: the embedded
// JSON, application/json, cacheable, revalidated by ETag.
func TestHandlerServesTheDocument(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(openapi.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/openapi.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Contains(t, resp.Header.Get("Cache-Control"), "public")
	require.Regexp(t, regexp.MustCompile(`^"[0-9a-f]{16}"$`), resp.Header.Get("ETag"))
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "3.1.0", body["openapi"])
	file, err := os.ReadFile("openapi.json")
	require.NoError(t, err)
	require.Equal(t, file, openapi.Document(), "the embedded document is the file")

	req, err := http.NewRequest("GET", srv.URL+"/api/v1/openapi.json", nil)
	require.NoError(t, err)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	again.Body.Close()
	require.Equal(t, http.StatusNotModified, again.StatusCode)

	// Document hands out a copy: a caller cannot change what is served.
	d := openapi.Document()
	d[0] = 'X'
	require.Equal(t, byte('{'), openapi.Document()[0])
	require.True(t, slices.Equal(file, openapi.Document()))
}
