package clientaddr

import (
	"net/netip"
	"strings"
	"testing"
)

// resolveSimply is Resolve written the obvious way (split everything, then
// walk from the right), to check the allocation-free walk against.
func resolveSimply(r *Resolver, peer netip.Addr, xff []string) netip.Addr {
	peer = peer.Unmap()
	if !r.Trusted(peer) {
		return peer
	}
	var entries []string
	for _, v := range xff {
		entries = append(entries, strings.Split(v, ",")...)
	}
	hop := peer
	for i := len(entries) - 1; i >= 0; i-- {
		e := strings.TrimSpace(entries[i])
		if e == "" {
			continue
		}
		a, ok := ParseEntry(e)
		if !ok {
			return hop
		}
		if !r.Trusted(a) {
			return a
		}
		hop = a
	}
	return hop
}

// FuzzResolve checks the X-Forwarded-For walk on any peer, header and
// trusted list: no panic, the same answer as the obvious walk, an untrusted
// peer is always the client, and the client is the peer or one of the
// header's entries.
func FuzzResolve(f *testing.F) {
	f.Add("10.0.0.1:4000", "198.51.100.7", "", "10.0.0.0/8")
	f.Add("10.0.0.1:4000", "1.1.1.1, 198.51.100.7, 10.9.9.9", "10.2.2.2", "10.0.0.0/8")
	f.Add("203.0.113.5:1", "10.0.0.1", "", "10.0.0.0/8")
	f.Add("[2001:db8::1]:80", "[2001:db8::7]:5555, bogus, 2001:db8::9", "", "2001:db8::/32")
	f.Add("[::ffff:10.0.0.1]:1", "::ffff:198.51.100.7,,, ", "unknown", "::ffff:10.0.0.0/104,192.0.2.1")
	f.Add("10.0.0.1:1", "fe80::1%eth0, 010.1.1.1, [1.2.3.4], 1.2.3.4:99999", "", "0.0.0.0/0")
	f.Add("@", "198.51.100.7", "", "::/0")
	f.Fuzz(func(t *testing.T, remote, xff1, xff2, trusted string) {
		r, err := Parse(trusted)
		if err != nil {
			return
		}
		var xff []string
		for _, v := range []string{xff1, xff2} {
			if v != "" {
				xff = append(xff, v)
			}
		}
		peer := Peer(remote)
		got := r.Resolve(peer, xff)
		if want := resolveSimply(r, peer, xff); got != want {
			t.Fatalf("Resolve(%q, %q) = %v, the obvious walk says %v", remote, xff, got, want)
		}
		if !r.Trusted(peer) && got != peer {
			t.Fatalf("untrusted peer %v, client %v", peer, got)
		}
		if got.IsValid() != peer.IsValid() {
			t.Fatalf("peer %v valid=%v, client %v valid=%v", peer, peer.IsValid(), got, got.IsValid())
		}
		if got.Is4In6() || got.Zone() != "" {
			t.Fatalf("client %v is not normalized", got)
		}
		if got != peer {
			found := false
			for _, v := range xff {
				for _, e := range strings.Split(v, ",") {
					if a, ok := ParseEntry(strings.TrimSpace(e)); ok && a == got {
						found = true
					}
				}
			}
			if !found {
				t.Fatalf("client %v is neither the peer %v nor an entry of %q", got, peer, xff)
			}
		}
		_ = Key(got)
	})
}

// FuzzParseEntry: an accepted entry is a plain address that reads back as
// itself.
func FuzzParseEntry(f *testing.F) {
	for _, s := range []string{"198.51.100.7", "198.51.100.7:80", "[2001:db8::1]:443", "[2001:db8::1]",
		"2001:db8::1", "::ffff:1.2.3.4", "fe80::1%eth0", "[1.2.3.4]", "unknown", "", "[", "]:1", "[::]:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := ParseEntry(s)
		if !ok {
			if a.IsValid() {
				t.Fatalf("%q refused but gave %v", s, a)
			}
			return
		}
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("%q gave %v", s, a)
		}
		if b, ok := ParseEntry(a.String()); !ok || b != a {
			t.Fatalf("%q gave %v, which reads back as %v, %v", s, a, b, ok)
		}
	})
}
