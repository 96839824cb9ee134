package api

import (
	"net/http"
	"path"
	"slices"
	"strings"
)

// probeMethods are the methods Routes tries when it lists what a path
// allows: every method a route of ours may use. CONNECT and TRACE are left
// out; the mux does not clean their paths and no route takes them.
var probeMethods = []string{
	http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
	http.MethodPatch, http.MethodPost, http.MethodPut,
}

// Routes serves mux, answering in the contract's error shape where the mux
// itself would answer text: a request for an API path (under /api/ or
// /.well-known/) that no API route takes is 404 not_found, or 405
// method_not_allowed with an Allow header when a route takes the path with
// another method. The pages' catch-all pattern ("/") counts as no route for
// API paths. Every other request, and every routed one, goes to mux
// untouched (the response writer is not wrapped, so WebSocket upgrades and
// redirects to cleaned paths work as before).
func Routes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isAPIPath(r.URL.Path) {
			mux.ServeHTTP(w, r)
			return
		}
		if _, pattern := mux.Handler(r); routed(pattern) {
			mux.ServeHTTP(w, r)
			return
		}
		allow := allowed(mux, r)
		if len(allow) == 0 {
			WriteError(w, Errorf(http.StatusNotFound, "not_found",
				"no API endpoint has the path %s; check it against the API reference", quotePath(r.URL.Path)))
			return
		}
		list := strings.Join(allow, ", ")
		w.Header().Set("Allow", list)
		WriteError(w, Errorf(http.StatusMethodNotAllowed, "method_not_allowed",
			"this path does not take %s; it takes %s", methodName(r.Method), list))
	})
}

// isAPIPath reports whether p, once cleaned as the mux cleans it, is an
// API path. "/api/../sales/x" is a page's, and the mux redirects it there.
func isAPIPath(p string) bool {
	p = path.Clean("/" + p)
	return p == "/api" || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/.well-known/")
}

// routed reports whether pattern, as mux.Handler returns it, is an API
// route: not "" (no match, 405 or a redirect to nowhere) and not a
// catch-all whose path is "/".
func routed(pattern string) bool {
	if pattern == "" {
		return false
	}
	if _, rest, ok := strings.Cut(pattern, " "); ok {
		pattern = strings.TrimLeft(rest, " \t")
	}
	i := strings.IndexByte(pattern, '/')
	return i >= 0 && pattern[i:] != "/"
}

// allowed lists, sorted, the methods an API route takes r's path with.
func allowed(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range probeMethods {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := mux.Handler(probe); routed(pattern) {
			allow = append(allow, m)
		}
	}
	slices.Sort(allow)
	return allow
}

// methodName quotes a client's method for a message, cut short: the
// server takes any token up to the header limit as a method.
func methodName(m string) string {
	if len(m) > 20 {
		m = m[:20] + "…"
	}
	return m
}
