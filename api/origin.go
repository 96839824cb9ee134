package api

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// CheckCookieOrigin refuses cross-site request forgery on a call that
// changes state and is authenticated by a cookie alone (call it only then:
// a token in the Authorization header is no browser's ambient credential).
// It answers a 403 forbidden when the request's Origin is not allowed (see
// OriginAllowed), or, without an Origin, when Sec-Fetch-Site is anything
// but same-origin or none. A request with neither header is no browser's
// and passes.
func CheckCookieOrigin(r *http.Request, allowed []string) error {
	if len(r.Header.Values("Origin")) > 0 {
		if OriginAllowed(r, allowed) {
			return nil
		}
		return Errorf(http.StatusForbidden, "forbidden",
			"cross-site request refused: its Origin is neither this site nor one of --allowed-origins; "+
				"a call from another site must send its token in the Authorization header, not a cookie")
	}
	site := r.Header.Values("Sec-Fetch-Site")
	if len(site) == 0 {
		return nil
	}
	if len(site) == 1 {
		switch strings.ToLower(strings.TrimSpace(site[0])) {
		case "same-origin", "none":
			return nil
		}
	}
	return Errorf(http.StatusForbidden, "forbidden",
		"cross-site request refused: the browser says it came from another site (Sec-Fetch-Site); "+
			"a call from another site must send its token in the Authorization header, not a cookie")
}

// OriginAllowed reports whether r may come from its Origin: true without
// an Origin header (no browser sent it), else when the Origin is
//
//   - the request's own: http or https with the host and port of the Host
//     header. Either scheme, because behind a TLS-terminating proxy the
//     request arrives as http while the browser's origin is https; a Host
//     without a port stands for the default port of the Origin's scheme;
//   - or one of allowed, each "scheme://host[:port]" (a trailing "/" is
//     ignored), compared case-insensitively on scheme and host, with the
//     default port of http (80) and https (443) written or not.
//
// "null", an Origin with a path, a user or a query, and a request with two
// Origin headers are not allowed. The WebSocket's Origin check and the
// cookie check above share this rule.
func OriginAllowed(r *http.Request, allowed []string) bool {
	vals := r.Header.Values("Origin")
	switch len(vals) {
	case 0:
		return true
	case 1:
	default:
		return false
	}
	o, ok := parseOrigin(vals[0])
	if !ok {
		return false
	}
	if o.scheme == "http" || o.scheme == "https" {
		host, port := splitHost(r.Host)
		if port == "" {
			port = defaultPort(o.scheme)
		}
		if host != "" && o.host == host && o.port == port {
			return true
		}
	}
	for _, a := range allowed {
		if ao, ok := parseOrigin(a); ok && ao == o {
			return true
		}
	}
	return false
}

// origin is a serialised origin, normalised: scheme and host in lower
// case, the port always written (the scheme's default when absent).
type origin struct{ scheme, host, port string }

func parseOrigin(s string) (origin, bool) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return origin{}, false
	}
	o := origin{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Hostname()), port: u.Port()}
	if o.port == "" {
		o.port = defaultPort(o.scheme)
	}
	return o, o.host != ""
}

// splitHost splits a Host header into a lower-case host and its port ("" when
// absent), without the brackets of an IPv6 literal.
func splitHost(h string) (host, port string) {
	if host, port, err := net.SplitHostPort(h); err == nil {
		return strings.ToLower(host), port
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")), ""
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}
