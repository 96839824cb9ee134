// Package bans keeps the operators' bans (DESIGN.md, "Abuse defence",
// "Bans"): a user id or an address prefix refused on every shopper call,
// in every sale or in one, until lifted or until it expires.
//
// MySQL holds them (Store), so they survive a Redis loss. Every node keeps
// an immutable in-memory Set of the live bans, which a Watcher reloads
// within 500 ms of a change anywhere in the cluster; shopper calls ask the
// Set, never MySQL. Handler serves the operators' endpoints.
//
// What an ip ban covers (the contract leaves it to us):
//   - an IPv4 address bans that address; the API shows it without "/32";
//   - an IPv4 CIDR is masked to its network (203.0.113.7/24 is
//     203.0.113.0/24) and may not be wider than /8;
//   - an IPv6 client counts as its /64 (it picks any address inside at
//     will), so an IPv6 address, or a prefix narrower than /64, bans its
//     /64 and is shown so ("2001:db8::1" is "2001:db8::/64"); no IPv6 ban
//     is wider than /16;
//   - an IPv4-mapped IPv6 address or prefix (::ffff:203.0.113.7) is the
//     IPv4 one, as clientaddr sees clients;
//   - 0.0.0.0/0, ::/0 and anything wider than the limits above are refused
//     (they would lock out every shopper, or a good part of a continent).
package bans

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flashsale/flashsale/api"
)

// Limits of a ban request.
const (
	// MaxReason is the longest reason, in characters.
	MaxReason = 200
	// MaxTTL is the longest ttl_seconds: ten years. Longer is "until
	// deleted", which leaving ttl_seconds out says.
	MaxTTL = 10 * 365 * 24 * 60 * 60
	// MinBitsV4 and MinBitsV6 are the widest prefixes a ban may name.
	MinBitsV4 = 8
	MinBitsV6 = 16
	// ClientBitsV6 is the prefix an IPv6 client counts as.
	ClientBitsV6 = 64
)

// Ban is one ban. Exactly one of UserID and IP is set.
type Ban struct {
	ID        string
	UserID    string       // the banned user; "" for an address ban
	IP        netip.Prefix // the banned prefix, normalised; invalid for a user ban
	SaleID    string       // the one sale it acts in; "" for every sale
	Reason    string
	CreatedAt time.Time
	ExpiresAt time.Time // zero: until lifted
}

// banJSON is the contract's shape, field for field and in its order.
type banJSON struct {
	ID        string  `json:"id"`
	UserID    *string `json:"user_id"`
	IP        *string `json:"ip"`
	SaleID    *string `json:"sale_id"`
	Reason    string  `json:"reason"`
	CreatedAt string  `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
}

// MarshalJSON writes the contract's shape:
// {"id":"ban_...","user_id":null,"ip":"203.0.113.0/24","sale_id":null,
// "reason":"...","created_at":"...","expires_at":null}.
func (b Ban) MarshalJSON() ([]byte, error) {
	j := banJSON{ID: b.ID, UserID: optional(b.UserID), SaleID: optional(b.SaleID),
		Reason: b.Reason, CreatedAt: api.Time(b.CreatedAt), ExpiresAt: api.TimePtr(&b.ExpiresAt)}
	if b.IP.IsValid() {
		s := FormatPrefix(b.IP)
		j.IP = &s
	}
	return json.Marshal(j)
}

// IPString is the ban's ip as the API shows it, or "" for a user ban.
func (b *Ban) IPString() string {
	if !b.IP.IsValid() {
		return ""
	}
	return FormatPrefix(b.IP)
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Expired reports whether the ban has stopped acting at now (expires_at ≤
// now).
func (b *Ban) Expired(now time.Time) bool {
	return !b.ExpiresAt.IsZero() && !now.Before(b.ExpiresAt)
}

// Matches reports whether the ban refuses user, coming from addr, in
// saleID at now. An empty user or an invalid addr matches no ban of that
// kind; an empty saleID is matched by bans of every sale only.
func (b *Ban) Matches(user string, addr netip.Addr, saleID string, now time.Time) bool {
	if b.Expired(now) || (b.SaleID != "" && b.SaleID != saleID) {
		return false
	}
	if b.UserID != "" {
		return user == b.UserID
	}
	return addr.IsValid() && b.IP.Contains(addr.Unmap())
}

// CreateRequest is the body of POST /api/v1/admin/bans. A field left out
// and a field sent as null are the same.
type CreateRequest struct {
	UserID     *string `json:"user_id"`
	IP         *string `json:"ip"`
	SaleID     *string `json:"sale_id"`
	TTLSeconds *int64  `json:"ttl_seconds"`
	Reason     *string `json:"reason"`
}

// salePattern is what a sale id can be (sale ids are slugs); anything else
// names no sale, without asking MySQL.
var salePattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Build validates the request and returns the ban it describes, created at
// now (to the millisecond MySQL keeps) with a new id. The error is a 422
// invalid_request naming the field. Whether the sale exists is the Store's
// check.
func (r *CreateRequest) Build(now time.Time) (*Ban, error) {
	now = now.UTC().Truncate(time.Millisecond)
	b := &Ban{ID: NewID(), CreatedAt: now}
	switch {
	case r.UserID != nil && r.IP != nil:
		return nil, api.Invalid("user_id, ip: send exactly one of them, not both; ban a user and an address with two bans")
	case r.UserID == nil && r.IP == nil:
		return nil, api.Invalid("user_id or ip: one is required: a user id, or an address or CIDR such as 203.0.113.0/24")
	case r.UserID != nil:
		u := *r.UserID
		if len(u) < 1 || len(u) > 255 || !utf8.ValidString(u) {
			return nil, api.Invalid("user_id: must be 1 to 255 bytes of UTF-8, the user's id as the shop's tokens name it")
		}
		b.UserID = u
	default:
		p, err := ParsePrefix(*r.IP)
		if err != nil {
			return nil, err
		}
		b.IP = p
	}
	if r.SaleID != nil {
		switch s := *r.SaleID; {
		case s == "":
			return nil, api.Invalid("sale_id: must name a sale; leave it out to ban from every sale")
		case !salePattern.MatchString(s):
			return nil, errNoSale
		default:
			b.SaleID = s
		}
	}
	if r.TTLSeconds != nil {
		ttl := *r.TTLSeconds
		if ttl < 1 || ttl > MaxTTL {
			return nil, api.Invalid("ttl_seconds: must be between 1 and %d (ten years); leave it out for a ban until deleted", MaxTTL)
		}
		b.ExpiresAt = now.Add(time.Duration(ttl) * time.Second)
	}
	if r.Reason != nil {
		if !utf8.ValidString(*r.Reason) || utf8.RuneCountInString(*r.Reason) > MaxReason {
			return nil, api.Invalid("reason: at most %d characters of UTF-8", MaxReason)
		}
		b.Reason = *r.Reason
	}
	return b, nil
}

var errNoSale = api.Invalid("sale_id: no such sale; create the sale first, or leave sale_id out to ban from every sale")

// ParsePrefix reads an ip field: an address or a CIDR, IPv4 or IPv6, and
// normalises it as the package doc says. The error is a 422 naming ip.
func ParsePrefix(s string) (netip.Prefix, error) {
	bad := func() (netip.Prefix, error) {
		if len(s) > 50 || !utf8.ValidString(s) {
			return netip.Prefix{}, api.Invalid("ip: not an address or a CIDR; write it as 203.0.113.7, 203.0.113.0/24 or 2001:db8::/48")
		}
		return netip.Prefix{}, api.Invalid("ip: %q is not an address or a CIDR; write it as 203.0.113.7, 203.0.113.0/24 or 2001:db8::/48", s)
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return bad()
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return bad()
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = normalise(p)
	switch {
	case p.Addr().Is4() && p.Bits() < MinBitsV4:
		return netip.Prefix{}, api.Invalid("ip: %s would ban more than a /%d of IPv4 (0.0.0.0/0 is every client); ban a /%d or narrower", FormatPrefix(p), MinBitsV4, MinBitsV4)
	case p.Addr().Is6() && p.Bits() < MinBitsV6:
		return netip.Prefix{}, api.Invalid("ip: %s would ban more than a /%d of IPv6 (::/0 is every client); ban a /%d or narrower", FormatPrefix(p), MinBitsV6, MinBitsV6)
	}
	return p, nil
}

// normalise masks p to its network, turns an IPv4-mapped prefix into its
// IPv4 one, and widens an IPv6 prefix narrower than a client's /64 to it.
func normalise(p netip.Prefix) netip.Prefix {
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	if a.Is6() && bits > ClientBitsV6 {
		bits = ClientBitsV6
	}
	return netip.PrefixFrom(a, bits).Masked()
}

// FormatPrefix writes a normalised prefix as the API shows it: a single
// IPv4 address without "/32", anything else as a CIDR.
func FormatPrefix(p netip.Prefix) string {
	if p.Addr().Is4() && p.Bits() == 32 {
		return p.Addr().String()
	}
	return p.String()
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID makes a ban id: "ban_" and 26 random base32 characters.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "ban_" + idEncoding.EncodeToString(b)
}
