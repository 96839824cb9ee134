// Package clientaddr finds the address a request came from, for the rate
// limits, the users-per-address cap, bans and the Secure flag of cookies.
// The TCP peer is the client unless it is one of the operator's proxies
// (--trusted-proxies); then the client is the right-most address of
// X-Forwarded-For that no trusted proxy wrote.
package clientaddr

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver knows which peers are trusted proxies. A nil *Resolver, or one
// with no prefixes, trusts none: every client is its TCP peer.
type Resolver struct {
	trusted []netip.Prefix
}

// New trusts the given prefixes (addresses inside them are masked to the
// prefix; IPv4-mapped IPv6 prefixes count as IPv4).
func New(prefixes ...netip.Prefix) *Resolver {
	r := &Resolver{}
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		r.trusted = append(r.trusted, unmapPrefix(p))
	}
	return r
}

// Parse reads a comma list of CIDRs such as "10.0.0.0/8, 2001:db8::/32"; a
// bare address trusts that one host. Empty entries are skipped, so "" trusts
// none. The error names the first entry that is neither.
func Parse(list string) (*Resolver, error) {
	var prefixes []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		prefixes = append(prefixes, p)
	}
	return New(prefixes...), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: write it as 10.0.0.0/8 or 2001:db8::/32", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an address: write it as 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmapPrefix turns ::ffff:10.0.0.0/104 into 10.0.0.0/8, because addresses
// are unmapped before they are compared.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() {
		bits := max(p.Bits()-96, 0)
		return netip.PrefixFrom(a.Unmap(), bits).Masked()
	}
	return p.Masked()
}

// String is the comma list of trusted prefixes (as --trusted-proxies takes
// it).
func (r *Resolver) String() string {
	if r == nil {
		return ""
	}
	s := make([]string, len(r.trusted))
	for i, p := range r.trusted {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Prefixes are the trusted prefixes.
func (r *Resolver) Prefixes() []netip.Prefix {
	if r == nil {
		return nil
	}
	return append([]netip.Prefix(nil), r.trusted...)
}

// Trusted reports whether a is inside a trusted prefix.
func (r *Resolver) Trusted(a netip.Addr) bool {
	if r == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr is the client address of req: its TCP peer, unless the peer is a
// trusted proxy; then the right-most X-Forwarded-For entry that is not
// itself trusted (several X-Forwarded-For headers count as one list, in
// order). IPv4-mapped IPv6 addresses are returned as IPv4.
//
// A malformed entry ends the walk: everything left of it was written by
// whoever sent it, which no trusted proxy vouches for, so the client is the
// last trusted hop reached (the proxy that passed the malformed entry on).
// When every entry is trusted the client is the left-most one. The result
// is invalid only when the peer itself is not an IP address (RemoteAddr
// of a unix socket).
func (r *Resolver) Addr(req *http.Request) netip.Addr {
	return r.Resolve(Peer(req.RemoteAddr), req.Header.Values("X-Forwarded-For"))
}

// Resolve is Addr on a peer and the X-Forwarded-For header values.
func (r *Resolver) Resolve(peer netip.Addr, xff []string) netip.Addr {
	peer = peer.Unmap()
	if !r.Trusted(peer) {
		return peer
	}
	hop := peer
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for list != "" {
			var entry string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				entry, list = list[j+1:], list[:j]
			} else {
				entry, list = list, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue // "a, , b" and a trailing comma: no hop, nothing to trust
			}
			a, ok := ParseEntry(entry)
			if !ok {
				return hop
			}
			if !r.Trusted(a) {
				return a
			}
			hop = a
		}
	}
	return hop
}

// Peer parses a RemoteAddr ("192.0.2.1:1234", "[2001:db8::1]:1234", or a
// bare address); anything else is the invalid Addr.
func Peer(remoteAddr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().WithZone("").Unmap()
	}
	if a, err := netip.ParseAddr(remoteAddr); err == nil {
		return a.WithZone("").Unmap()
	}
	return netip.Addr{}
}

// ParseEntry reads one X-Forwarded-For entry: an IPv4 or IPv6 address,
// optionally bracketed and optionally with a port, as proxies write them
// ("192.0.2.1", "192.0.2.1:443", "2001:db8::1", "[2001:db8::1]:443").
// Zones, host names and "unknown" are not addresses.
func ParseEntry(s string) (netip.Addr, bool) {
	if len(s) > 64 { // the longest address with port and brackets is 47 bytes
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(s)
		if err2 != nil {
			if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
				a, err = netip.ParseAddr(s[1 : len(s)-1])
			}
			if err != nil || !a.Is6() {
				return netip.Addr{}, false
			}
		} else {
			a = ap.Addr()
		}
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// IsHTTPS reports whether the client's request came over TLS: to this
// server, or to a trusted proxy that says so with X-Forwarded-Proto: https
// (the left-most value when a chain appended several: the one the client
// used). Only a trusted peer's header counts: anyone else could send it.
func (r *Resolver) IsHTTPS(req *http.Request) bool {
	if req.TLS != nil {
		return true
	}
	if !r.Trusted(Peer(req.RemoteAddr)) {
		return false
	}
	v := req.Header.Get("X-Forwarded-Proto")
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.EqualFold(strings.TrimSpace(v), "https")
}

// Key is the prefix a client is counted by: an IPv4 address on its own
// (/32), an IPv6 address as its /64, the block one household or server is
// given, so hopping between its 2^64 addresses buys nothing. The invalid
// Addr gives the invalid Prefix.
func Key(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}
