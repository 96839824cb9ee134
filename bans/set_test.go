package bans

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func mustBan(t testing.TB, req CreateRequest, now time.Time) Ban {
	t.Helper()
	b, err := req.Build(now)
	require.NoError(t, err)
	return *b
}

func TestSetMatch(t *testing.T) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	user := mustBan(t, CreateRequest{UserID: ptr("alice")}, now)
	userInSale := mustBan(t, CreateRequest{UserID: ptr("bob"), SaleID: ptr("phone-drop")}, now)
	net24 := mustBan(t, CreateRequest{IP: ptr("203.0.113.7/24")}, now)
	host := mustBan(t, CreateRequest{IP: ptr("198.51.100.7"), SaleID: ptr("phone-drop")}, now)
	short := mustBan(t, CreateRequest{IP: ptr("192.0.2.9"), TTLSeconds: ptr(int64(1))}, now)
	v6 := mustBan(t, CreateRequest{IP: ptr("2001:db8:1:2::99")}, now)
	v6wide := mustBan(t, CreateRequest{IP: ptr("2001:db8:ff00::/40")}, now)
	s := NewSet([]Ban{v6wide, v6, short, host, net24, userInSale, user})
	require.Equal(t, 7, s.Len())

	addr := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		user string
		addr netip.Addr
		sale string
		at   time.Time
		want *Ban
	}{
		{"banned user, any sale", "alice", netip.Addr{}, "other", now, &user},
		{"banned user, no sale named", "alice", netip.Addr{}, "", now, &user},
		{"user ids are exact", "alice ", netip.Addr{}, "other", now, nil},
		{"user ids are exact (case)", "Alice", netip.Addr{}, "other", now, nil},
		{"sale-scoped user, its sale", "bob", netip.Addr{}, "phone-drop", now, &userInSale},
		{"sale-scoped user, another sale", "bob", netip.Addr{}, "other", now, nil},
		{"address inside a /24", "carol", addr("203.0.113.200"), "other", now, &net24},
		{"IPv4-mapped address inside a /24", "carol", addr("::ffff:203.0.113.200"), "other", now, &net24},
		{"address next to the /24", "carol", addr("203.0.114.0"), "other", now, nil},
		{"a user's ban wins over the address's", "alice", addr("203.0.113.1"), "x", now, &user},
		{"sale-scoped address, its sale", "", addr("198.51.100.7"), "phone-drop", now, &host},
		{"sale-scoped address, another sale", "", addr("198.51.100.7"), "other", now, nil},
		{"single address, its neighbour", "", addr("198.51.100.8"), "phone-drop", now, nil},
		{"ttl ban before its end", "", addr("192.0.2.9"), "x", now.Add(999 * time.Millisecond), &short},
		{"ttl ban at its end", "", addr("192.0.2.9"), "x", now.Add(time.Second), nil},
		{"ttl ban after its end", "", addr("192.0.2.9"), "x", now.Add(time.Hour), nil},
		{"IPv6 address bans its /64", "", addr("2001:db8:1:2:ffff::1"), "x", now, &v6},
		{"IPv6 next /64", "", addr("2001:db8:1:3::99"), "x", now, nil},
		{"IPv6 inside a /40", "", addr("2001:db8:ff12::1"), "x", now, &v6wide},
		{"IPv6 outside the /40", "", addr("2001:db8:fe00::1"), "x", now, nil},
		{"IPv4 never matches an IPv6 ban", "", addr("32.1.13.184"), "x", now, nil},
		{"nobody", "", netip.Addr{}, "x", now, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = now
			}
			got, ok := s.Match(tc.user, tc.addr, tc.sale, at)
			if tc.want == nil {
				require.False(t, ok, "matched %+v", got)
				require.Nil(t, got)
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.want.ID, got.ID)
			require.True(t, got.Matches(tc.user, tc.addr, tc.sale, at), "Ban.Matches agrees with the Set")
		})
	}

	// A nil Set (no load yet) bans nobody.
	var none *Set
	_, ok := none.Match("alice", addr("203.0.113.1"), "x", now)
	require.False(t, ok)
	require.Zero(t, none.Len())
	require.False(t, none.Has(user.ID))
	require.True(t, s.Has(user.ID))
}

// TestSetAgreesWithMatches checks the indexed lookup against the plain
// definition (Ban.Matches over every ban) on random bans and clients.
func TestSetAgreesWithMatches(t *testing.T) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(1, 2))
	bans := randomBans(t, r, 2000, now)
	s := NewSet(bans)
	sales := []string{"", "a", "b"}
	for range 20000 {
		user, addr := randomClient(r)
		sale := sales[r.IntN(len(sales))]
		at := now.Add(time.Duration(r.IntN(7200)) * time.Second)
		want := false
		for i := range bans {
			if bans[i].Matches(user, addr, sale, at) {
				want = true
				break
			}
		}
		got, ok := s.Match(user, addr, sale, at)
		require.Equal(t, want, ok, "user %q addr %s sale %q", user, addr, sale)
		if ok {
			require.True(t, got.Matches(user, addr, sale, at))
		}
	}
}

// randomBans makes n bans over a small space, so random clients hit some:
// users u0..u999, IPv4 prefixes /8 to /32 inside 10.0.0.0/8, IPv6 /16 to
// /64 inside 2001:db8::/32, some scoped to sale a or b, some expiring.
func randomBans(t testing.TB, r *rand.Rand, n int, now time.Time) []Ban {
	bans := make([]Ban, 0, n)
	for range n {
		var req CreateRequest
		switch r.IntN(3) {
		case 0:
			req.UserID = ptr(fmt.Sprintf("u%d", r.IntN(1000)))
		case 1:
			req.IP = ptr(fmt.Sprintf("10.%d.%d.%d/%d", r.IntN(4), r.IntN(256), r.IntN(256), 8+r.IntN(25)))
		default:
			req.IP = ptr(fmt.Sprintf("2001:db8:%x:%x::/%d", r.IntN(4), r.IntN(65536), 32+r.IntN(33)))
		}
		if r.IntN(4) == 0 {
			req.SaleID = ptr([]string{"a", "b"}[r.IntN(2)])
		}
		if r.IntN(4) == 0 {
			req.TTLSeconds = ptr(int64(1 + r.IntN(3600)))
		}
		bans = append(bans, mustBan(t, req, now))
	}
	return bans
}

func randomClient(r *rand.Rand) (string, netip.Addr) {
	user := fmt.Sprintf("u%d", r.IntN(20000))
	var addr netip.Addr
	switch r.IntN(3) {
	case 0:
		addr = netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
	case 1:
		addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256)), 15: 1})
	default:
		addr = netip.AddrFrom16(netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), 1, 1}).As16()) // IPv4-mapped
	}
	return user, addr
}

// BenchmarkMatch is the per-request cost with 10,000 bans: one user map
// lookup and one lookup per prefix length in use (25 IPv4 lengths and 33
// IPv6 ones here, the worst a busy operator makes).
func BenchmarkMatch(b *testing.B) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(3, 4))
	s := NewSet(randomBans(b, r, 10000, now))
	clients := make([]struct {
		user string
		addr netip.Addr
	}, 1024)
	for i := range clients {
		clients[i].user, clients[i].addr = randomClient(r)
	}
	b.Run("mixed", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c := clients[i%len(clients)]
			s.Match(c.user, c.addr, "a", now)
			i++
		}
	})
	b.Run("miss-v4", func(b *testing.B) {
		b.ReportAllocs()
		addr := netip.MustParseAddr("192.0.2.1")
		for b.Loop() {
			if _, ok := s.Match("nobody", addr, "a", now); ok {
				b.Fatal("matched")
			}
		}
	})
	b.Run("miss-v6", func(b *testing.B) {
		b.ReportAllocs()
		addr := netip.MustParseAddr("2001:db9::1")
		for b.Loop() {
			if _, ok := s.Match("nobody", addr, "a", now); ok {
				b.Fatal("matched")
			}
		}
	})
	b.Run("linear-scan-for-comparison", func(b *testing.B) {
		bans := s.Bans()
		addr := netip.MustParseAddr("192.0.2.1")
		for b.Loop() {
			for i := range bans {
				if bans[i].Matches("nobody", addr, "a", now) {
					b.Fatal("matched")
				}
			}
		}
	})
}
