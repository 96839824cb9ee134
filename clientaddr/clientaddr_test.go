package clientaddr

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // String() of the resolver, or the error's text
		err  bool
	}{
		{in: "", want: ""},
		{in: " , ,", want: ""},
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"}, // masked: the host bits mean nothing
		{in: "10.0.0.0/8, 2001:db8::/32 ,192.0.2.7", want: "10.0.0.0/8,2001:db8::/32,192.0.2.7/32"},
		{in: "::1", want: "::1/128"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "10.0.0/8", err: true, want: `"10.0.0/8" is not a CIDR`},
		{in: "10.0.0.0/33", err: true, want: `"10.0.0.0/33" is not a CIDR`},
		{in: "10.0.0.0/8,proxy.internal", err: true, want: `"proxy.internal" is not a CIDR or an address`},
		{in: "fe80::1%eth0", err: true, want: `is not a CIDR or an address`},
		{in: "fe80::%eth0/64", err: true, want: `is not a CIDR`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := Parse(tc.in)
			if tc.err {
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, r.String())
		})
	}
}

func TestNilResolverTrustsNone(t *testing.T) {
	var r *Resolver
	require.False(t, r.Trusted(netip.MustParseAddr("127.0.0.1")))
	req := request("10.0.0.1:5000", "203.0.113.9")
	req.Header.Set("X-Forwarded-Proto", "https")
	require.Equal(t, netip.MustParseAddr("10.0.0.1"), r.Addr(req))
	require.False(t, r.IsHTTPS(req))
	require.Empty(t, r.String())
	require.Empty(t, r.Prefixes())
}

func request(remote string, xff ...string) *http.Request {
	req, _ := http.NewRequest("GET", "http://example.test/", nil)
	req.RemoteAddr = remote
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	return req
}

func TestAddr(t *testing.T) {
	r, err := Parse("10.0.0.0/8, 2001:db8:ffff::/48, 192.0.2.1")
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		remote string
		xff    []string
		want   string // "" for the invalid Addr
	}{
		{"untrusted peer, no header", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer's header is ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"untrusted peer cannot pose as a proxy", "203.0.113.5:4000", []string{"10.0.0.1"}, "203.0.113.5"},
		{"trusted peer, no header: the peer", "10.0.0.1:4000", nil, "10.0.0.1"},
		{"trusted peer, one entry", "10.0.0.1:4000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"right-most untrusted wins over a forged left part", "10.0.0.1:4000",
			[]string{"1.1.1.1, 2.2.2.2, 198.51.100.7"}, "198.51.100.7"},
		{"trusted hops are skipped", "10.0.0.1:4000",
			[]string{"1.1.1.1, 198.51.100.7, 10.9.9.9, 192.0.2.1"}, "198.51.100.7"},
		{"several headers are one list, in order", "10.0.0.1:4000",
			[]string{"1.1.1.1, 198.51.100.7", "10.2.2.2"}, "198.51.100.7"},
		{"every entry trusted: the left-most", "10.0.0.1:4000", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"empty header: the peer", "10.0.0.1:4000", []string{""}, "10.0.0.1"},
		{"empty entries are skipped", "10.0.0.1:4000", []string{"198.51.100.7, ,,"}, "198.51.100.7"},
		{"spaces and tabs", "10.0.0.1:4000", []string{" \t198.51.100.7\t "}, "198.51.100.7"},
		{"entry with a port", "10.0.0.1:4000", []string{"198.51.100.7:5555"}, "198.51.100.7"},
		{"bracketed IPv6 with a port", "10.0.0.1:4000", []string{"[2001:db8::7]:5555"}, "2001:db8::7"},
		{"bracketed IPv6", "10.0.0.1:4000", []string{"[2001:db8::7]"}, "2001:db8::7"},
		{"IPv6 entry", "10.0.0.1:4000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv4-mapped entry is IPv4", "10.0.0.1:4000", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
		{"IPv4-mapped trusted entry is trusted", "10.0.0.1:4000", []string{"198.51.100.7, ::ffff:10.1.1.1"}, "198.51.100.7"},
		{"trusted IPv6 peer", "[2001:db8:ffff:1::1]:4000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"IPv6 peer just outside the trusted /48", "[2001:db8:fffe::1]:4000", []string{"198.51.100.7"}, "2001:db8:fffe::1"},
		{"IPv4-mapped peer is IPv4 and trusted", "[::ffff:10.0.0.1]:4000", []string{"198.51.100.7"}, "198.51.100.7"},
		// A malformed entry: whoever wrote it is not vouched for, so the
		// last trusted hop that passed it on is the client.
		{"malformed right-most entry: the peer", "10.0.0.1:4000", []string{"198.51.100.7, bogus"}, "10.0.0.1"},
		{"malformed behind a trusted hop: that hop", "10.0.0.1:4000", []string{"198.51.100.7, bogus, 10.5.5.5"}, "10.5.5.5"},
		{"malformed left of the client is never reached", "10.0.0.1:4000", []string{"bogus, 198.51.100.7"}, "198.51.100.7"},
		{"unknown", "10.0.0.1:4000", []string{"unknown"}, "10.0.0.1"},
		{"host name", "10.0.0.1:4000", []string{"client.example.com"}, "10.0.0.1"},
		{"zone", "10.0.0.1:4000", []string{"fe80::1%eth0"}, "10.0.0.1"},
		{"leading zeros", "10.0.0.1:4000", []string{"010.1.1.1"}, "10.0.0.1"},
		{"port out of range", "10.0.0.1:4000", []string{"198.51.100.7:70000"}, "10.0.0.1"},
		{"bracketed IPv4", "10.0.0.1:4000", []string{"[198.51.100.7]"}, "10.0.0.1"},
		{"huge entry", "10.0.0.1:4000", []string{strings.Repeat("1", 10000)}, "10.0.0.1"},
		{"unix socket peer", "@", []string{"198.51.100.7"}, ""},
		{"bare address peer", "203.0.113.5", nil, "203.0.113.5"},
		{"IPv6 peer", "[2001:db8::5]:80", nil, "2001:db8::5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Addr(request(tc.remote, tc.xff...))
			if tc.want == "" {
				require.False(t, got.IsValid(), "got %v", got)
				return
			}
			require.Equal(t, netip.MustParseAddr(tc.want), got)
		})
	}
}

func TestLongTrustedChain(t *testing.T) {
	// A client behind a trusted proxy can send a long list of trusted
	// addresses; the walk is linear and ends at the right answer.
	r, err := Parse("10.0.0.0/8")
	require.NoError(t, err)
	xff := strings.Repeat("10.0.0.9, ", 6000) + "198.51.100.7, 10.1.1.1"
	require.Equal(t, netip.MustParseAddr("198.51.100.7"), r.Addr(request("10.0.0.1:1", xff)))
	xff = "198.51.100.7, " + strings.Repeat("10.0.0.9, ", 6000)
	require.Equal(t, netip.MustParseAddr("198.51.100.7"), r.Addr(request("10.0.0.1:1", xff)))
}

func TestIsHTTPS(t *testing.T) {
	r, err := Parse("10.0.0.0/8")
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		remote string
		proto  string
		tls    bool
		want   bool
	}{
		{"plain from anyone", "203.0.113.5:1", "", false, false},
		{"TLS to us", "203.0.113.5:1", "", true, true},
		{"TLS to us whatever the header", "203.0.113.5:1", "http", true, true},
		{"untrusted peer's header is ignored", "203.0.113.5:1", "https", false, false},
		{"trusted proxy says https", "10.0.0.1:1", "https", false, true},
		{"trusted proxy says HTTPS", "10.0.0.1:1", " HTTPS ", false, true},
		{"trusted proxy says http", "10.0.0.1:1", "http", false, false},
		{"trusted proxy, no header", "10.0.0.1:1", "", false, false},
		{"chain: the client's leg is the left-most", "10.0.0.1:1", "https, http", false, true},
		{"chain: plain client leg", "10.0.0.1:1", "http, https", false, false},
		{"garbage", "10.0.0.1:1", "httpsx", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request(tc.remote)
			if tc.proto != "" {
				req.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			if tc.tls {
				req.TLS = &tls.ConnectionState{}
			}
			require.Equal(t, tc.want, r.IsHTTPS(req))
		})
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"198.51.100.7", "198.51.100.7/32"},
		{"::ffff:198.51.100.7", "198.51.100.7/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"::1", "::/64"},
	} {
		require.Equal(t, netip.MustParsePrefix(tc.want), Key(netip.MustParseAddr(tc.in)), tc.in)
	}
	require.Equal(t, Key(netip.MustParseAddr("2001:db8:1:2::a")), Key(netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:ffff")),
		"one /64 is one client")
	require.NotEqual(t, Key(netip.MustParseAddr("2001:db8:1:2::a")), Key(netip.MustParseAddr("2001:db8:1:3::a")))
	require.False(t, Key(netip.Addr{}).IsValid())
	require.Equal(t, netip.MustParsePrefix("fe80::/64"), Key(netip.MustParseAddr("fe80::1%eth0")))
}
