package bans

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"time"
)

// Set is an immutable snapshot of the live bans, built for the question
// every shopper call asks: is this user or this address banned here, now?
// A nil *Set bans nobody.
//
// Users are one map lookup. Address bans sit in one map per prefix length
// present, keyed by the masked network as an integer (the address's 32
// bits for IPv4, its top 64 for IPv6: no IPv6 ban is narrower than a /64),
// so an address costs one lookup per length in use, longest first: a few
// tens of nanoseconds with 10,000 bans (BenchmarkMatch).
type Set struct {
	bans  []Ban // newest first
	ids   map[string]struct{}
	users map[string][]*Ban
	v4    []table4 // longest prefix first
	v6    []table6
	// nextExpiry is the earliest expires_at in the set (zero: none), after
	// which a Watcher reloads to drop what no longer acts.
	nextExpiry time.Time
}

type table4 struct {
	bits int
	nets map[uint32][]*Ban
}

type table6 struct {
	bits int
	nets map[uint64][]*Ban
}

// NewSet indexes bans (newest first, as Store.List gives them). Bans that
// set neither a user nor a prefix are left out.
func NewSet(bans []Ban) *Set {
	s := &Set{bans: slices.Clone(bans), ids: make(map[string]struct{}, len(bans)), users: map[string][]*Ban{}}
	by4 := map[int]map[uint32][]*Ban{}
	by6 := map[int]map[uint64][]*Ban{}
	for i := range s.bans {
		b := &s.bans[i]
		s.ids[b.ID] = struct{}{}
		if !b.ExpiresAt.IsZero() && (s.nextExpiry.IsZero() || b.ExpiresAt.Before(s.nextExpiry)) {
			s.nextExpiry = b.ExpiresAt
		}
		switch bits := b.IP.Bits(); {
		case b.UserID != "":
			s.users[b.UserID] = append(s.users[b.UserID], b)
		case !b.IP.IsValid():
		case b.IP.Addr().Is4():
			if by4[bits] == nil {
				by4[bits] = map[uint32][]*Ban{}
			}
			k := key4(b.IP.Addr(), bits)
			by4[bits][k] = append(by4[bits][k], b)
		case bits <= ClientBitsV6:
			if by6[bits] == nil {
				by6[bits] = map[uint64][]*Ban{}
			}
			k := key6(b.IP.Addr(), bits)
			by6[bits][k] = append(by6[bits][k], b)
		}
	}
	for bits, nets := range by4 {
		s.v4 = append(s.v4, table4{bits, nets})
	}
	for bits, nets := range by6 {
		s.v6 = append(s.v6, table6{bits, nets})
	}
	slices.SortFunc(s.v4, func(a, b table4) int { return b.bits - a.bits })
	slices.SortFunc(s.v6, func(a, b table6) int { return b.bits - a.bits })
	return s
}

func key4(a netip.Addr, bits int) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:]) & (^uint32(0) << (32 - bits))
}

func key6(a netip.Addr, bits int) uint64 {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]) & (^uint64(0) << (64 - bits))
}

// Match returns a ban that refuses user, coming from addr, in saleID at
// now: a ban of the user, or of a prefix holding addr (an IPv4-mapped
// address counts as IPv4), that acts in every sale or in saleID, and has
// not expired (expires_at ≤ now stops a ban even before the next reload).
// An empty user or an invalid addr is not looked up. A user's ban wins
// over an address's, a longer prefix over a shorter. The *Ban is the
// Set's: read it, do not change it.
func (s *Set) Match(user string, addr netip.Addr, saleID string, now time.Time) (*Ban, bool) {
	if s == nil {
		return nil, false
	}
	if user != "" {
		if b := first(s.users[user], saleID, now); b != nil {
			return b, true
		}
	}
	if !addr.IsValid() {
		return nil, false
	}
	addr = addr.Unmap()
	if addr.Is4() {
		for _, t := range s.v4 {
			if b := first(t.nets[key4(addr, t.bits)], saleID, now); b != nil {
				return b, true
			}
		}
		return nil, false
	}
	for _, t := range s.v6 {
		if b := first(t.nets[key6(addr, t.bits)], saleID, now); b != nil {
			return b, true
		}
	}
	return nil, false
}

// first is the first ban of list that acts in saleID at now.
func first(list []*Ban, saleID string, now time.Time) *Ban {
	for _, b := range list {
		if !b.Expired(now) && (b.SaleID == "" || b.SaleID == saleID) {
			return b
		}
	}
	return nil
}

// Len is how many bans the set holds (expired ones included until the
// next reload).
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.bans)
}

// Bans returns a copy of the set's bans, newest first.
func (s *Set) Bans() []Ban {
	if s == nil {
		return nil
	}
	return slices.Clone(s.bans)
}

// Has reports whether the set holds the ban id.
func (s *Set) Has(id string) bool {
	if s == nil {
		return false
	}
	_, ok := s.ids[id]
	return ok
}
