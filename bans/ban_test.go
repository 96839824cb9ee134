package bans

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
)

func ptr[T any](v T) *T { return &v }

// TestBuildRefuses checks every request the contract calls invalid is a
// 422 invalid_request whose message names the field.
func TestBuildRefuses(t *testing.T) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		req   CreateRequest
		field string
	}{
		{"neither", CreateRequest{}, "user_id or ip"},
		{"neither, reason only", CreateRequest{Reason: ptr("bot")}, "user_id or ip"},
		{"both", CreateRequest{UserID: ptr("alice"), IP: ptr("203.0.113.7")}, "user_id, ip"},
		{"empty user", CreateRequest{UserID: ptr("")}, "user_id:"},
		{"user over 255 bytes", CreateRequest{UserID: ptr(strings.Repeat("a", 256))}, "user_id:"},
		{"user not UTF-8", CreateRequest{UserID: ptr("al\xffice")}, "user_id:"},
		{"empty ip", CreateRequest{IP: ptr("")}, "ip:"},
		{"ip not an address", CreateRequest{IP: ptr("example.com")}, "ip:"},
		{"ip with a zone", CreateRequest{IP: ptr("fe80::1%eth0")}, "ip:"},
		{"CIDR with a zone", CreateRequest{IP: ptr("fe80::1%eth0/64")}, "ip:"},
		{"bad prefix length", CreateRequest{IP: ptr("203.0.113.0/33")}, "ip:"},
		{"ip with spaces", CreateRequest{IP: ptr(" 203.0.113.7")}, "ip:"},
		{"long garbage ip", CreateRequest{IP: ptr(strings.Repeat("1", 1000))}, "ip:"},
		{"every IPv4 client", CreateRequest{IP: ptr("0.0.0.0/0")}, "ip:"},
		{"every IPv6 client", CreateRequest{IP: ptr("::/0")}, "ip:"},
		{"IPv4 wider than /8", CreateRequest{IP: ptr("10.0.0.0/7")}, "ip:"},
		{"IPv6 wider than /16", CreateRequest{IP: ptr("2001::/15")}, "ip:"},
		{"mapped IPv4 wider than /8", CreateRequest{IP: ptr("::ffff:10.0.0.0/100")}, "ip:"},
		{"empty sale", CreateRequest{UserID: ptr("alice"), SaleID: ptr("")}, "sale_id:"},
		{"sale that cannot exist", CreateRequest{UserID: ptr("alice"), SaleID: ptr("No Such/Sale")}, "sale_id:"},
		{"ttl 0", CreateRequest{UserID: ptr("alice"), TTLSeconds: ptr(int64(0))}, "ttl_seconds:"},
		{"ttl negative", CreateRequest{UserID: ptr("alice"), TTLSeconds: ptr(int64(-5))}, "ttl_seconds:"},
		{"ttl over ten years", CreateRequest{UserID: ptr("alice"), TTLSeconds: ptr(int64(MaxTTL + 1))}, "ttl_seconds:"},
		{"reason over 200 characters", CreateRequest{UserID: ptr("alice"), Reason: ptr(strings.Repeat("é", 201))}, "reason:"},
		{"reason of 1 MB", CreateRequest{UserID: ptr("alice"), Reason: ptr(strings.Repeat("x", 1<<20))}, "reason:"},
		{"reason not UTF-8", CreateRequest{UserID: ptr("alice"), Reason: ptr("\xff")}, "reason:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.req.Build(now)
			require.Nil(t, b)
			e := api.AsError(err)
			require.Equal(t, http.StatusUnprocessableEntity, e.Status, "%v", err)
			require.Equal(t, "invalid_request", e.Code)
			require.True(t, strings.HasPrefix(e.Message, tc.field), "message %q names %q", e.Message, tc.field)
			require.Less(t, len(e.Message), 300, "the message does not echo a long input")
		})
	}
}

// TestParsePrefixNormalises pins what an ip ban covers and how it is shown.
func TestParsePrefixNormalises(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":             "203.0.113.7",
		"203.0.113.7/32":          "203.0.113.7",
		"203.0.113.7/24":          "203.0.113.0/24",
		"10.1.2.3/8":              "10.0.0.0/8",
		"::ffff:203.0.113.7":      "203.0.113.7",
		"::ffff:203.0.113.7/120":  "203.0.113.0/24",
		"::ffff:203.0.113.7/128":  "203.0.113.7",
		"2001:db8::1":             "2001:db8::/64",
		"2001:db8::1/128":         "2001:db8::/64",
		"2001:db8:0:0:1::/80":     "2001:db8::/64",
		"2001:db8:aaaa:bbbb::/48": "2001:db8:aaaa::/48",
		"2001:DB8::/32":           "2001:db8::/32",
		"2001::/16":               "2001::/16",
	} {
		p, err := ParsePrefix(in)
		require.NoError(t, err, in)
		require.Equal(t, want, FormatPrefix(p), in)
	}
}

func TestBuild(t *testing.T) {
	now := time.Date(2026, 12, 1, 18, 0, 0, 123456789, time.FixedZone("x", 3600))
	b, err := (&CreateRequest{IP: ptr("203.0.113.7/24"), SaleID: ptr("phone-drop"),
		TTLSeconds: ptr(int64(60)), Reason: ptr(strings.Repeat("é", 200))}).Build(now)
	require.NoError(t, err)
	require.Regexp(t, `^ban_[a-z2-7]{26}$`, b.ID)
	require.Equal(t, "", b.UserID)
	require.Equal(t, netip.MustParsePrefix("203.0.113.0/24"), b.IP)
	require.Equal(t, "phone-drop", b.SaleID)
	require.Equal(t, time.Date(2026, 12, 1, 17, 0, 0, 123000000, time.UTC), b.CreatedAt, "UTC, to the millisecond MySQL keeps")
	require.Equal(t, b.CreatedAt.Add(time.Minute), b.ExpiresAt)

	// A user id is any UTF-8 of 1 to 255 bytes, byte for byte.
	for _, u := range []string{"auth0|abc", "a:b", "{x}", "ünï", "alice ", strings.Repeat("é", 127) + "a"} {
		b, err := (&CreateRequest{UserID: ptr(u)}).Build(now)
		require.NoError(t, err, u)
		require.Equal(t, u, b.UserID)
		require.True(t, b.ExpiresAt.IsZero(), "no ttl: until lifted")
	}
}

// TestBanJSON pins the contract's shape, nulls included.
func TestBanJSON(t *testing.T) {
	created := time.Date(2026, 12, 1, 18, 0, 0, 500000000, time.UTC)
	b := Ban{ID: "ban_x", IP: netip.MustParsePrefix("203.0.113.0/24"), Reason: "farm", CreatedAt: created}
	got, err := json.Marshal(b)
	require.NoError(t, err)
	require.Equal(t, `{"id":"ban_x","user_id":null,"ip":"203.0.113.0/24","sale_id":null,"reason":"farm","created_at":"2026-12-01T18:00:00Z","expires_at":null}`, string(got))

	b = Ban{ID: "ban_y", UserID: "alice", SaleID: "phone-drop", CreatedAt: created, ExpiresAt: created.Add(time.Hour)}
	got, err = json.Marshal(&b)
	require.NoError(t, err)
	require.Equal(t, `{"id":"ban_y","user_id":"alice","ip":null,"sale_id":"phone-drop","reason":"","created_at":"2026-12-01T18:00:00Z","expires_at":"2026-12-01T19:00:00Z"}`, string(got))
}

// TestDecodeRequest checks the body's strictness comes from api.Decode:
// unknown fields and wrong types are 422 naming the field.
func TestDecodeRequest(t *testing.T) {
	for body, field := range map[string]string{
		`{"ip":"203.0.113.7","until":"x"}`:        "until",
		`{"ip":"203.0.113.7","ttl_seconds":1.5}`:  "ttl_seconds",
		`{"ip":"203.0.113.7","ttl_seconds":"60"}`: "ttl_seconds",
		`{"ip":42}`:                     "ip",
		`{"user_id":["a"]}`:             "user_id",
		`{"user_id":"a","user_id":"b"}`: "user_id",
	} {
		var req CreateRequest
		e := api.AsError(api.Decode([]byte(body), &req, false))
		require.Equal(t, http.StatusUnprocessableEntity, e.Status, body)
		require.Contains(t, e.Message, field, body)
	}
	// null is the same as leaving a field out.
	var req CreateRequest
	require.NoError(t, api.Decode([]byte(`{"user_id":null,"ip":"203.0.113.7","sale_id":null,"ttl_seconds":null,"reason":null}`), &req, false))
	b, err := req.Build(time.Now())
	require.NoError(t, err)
	require.Equal(t, "203.0.113.7", b.IPString())
}
