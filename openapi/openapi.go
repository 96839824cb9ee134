// Package openapi serves the OpenAPI 3.1 document of flashsale's HTTP API
// (GET /api/v1/openapi.json). The document is hand-written JSON, embedded:
// there is no build step, and its tests hold it to a real node (every
// route in it, every request and answer of an end-to-end run valid
// against it).
package openapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed openapi.json
var document []byte

// etag names this build's document: it changes only with the binary, so a
// client may keep its copy and revalidate cheaply.
var etag = func() string {
	sum := sha256.Sum256(document)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// Document returns a copy of the OpenAPI document's JSON.
func Document() []byte { return bytes.Clone(document) }

// Handler serves the document as application/json, cacheable for an hour
// and revalidated by its ETag (If-None-Match answers 304).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("ETag", etag)
		// ServeContent answers If-None-Match (304), HEAD and ranges; the
		// zero time leaves Last-Modified out (the ETag is the validator).
		http.ServeContent(w, r, "openapi.json", time.Time{}, bytes.NewReader(document))
	})
}
