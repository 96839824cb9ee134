package sale_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
)

// oddUsers are user ids a shop may send (DESIGN.md, "Hostile and odd
// input"): every byte that could split a record is in one of them.
var oddUsers = []string{
	"alice", "auth0|abc123", "google-oauth2|123", "a:b", "{x}", "|", "||||||", "a|b|c|d|e|f|g|h",
	"-", "c", "1|1|j|1|held|5|-", " lead and trail ", "Zoë 🛒", "日本語|ユーザー", "x\ty\nz",
	strings.Repeat("|", 255), strings.Repeat("é", 127),
}

// recordScript decodes a record with the prelude's codec and encodes it
// again: ARGV[1] kind (adm, pend, hold), ARGV[2] the record. It returns the
// decoded fields, then the record encoded anew.
var recordScript = sale.NewScript(`
local kind, rec = ARGV[1], ARGV[2]
if kind == 'adm' then
  local a = adm_dec(rec)
  return {a.jti, tostring(a.iat), tostring(a.exp), tostring(a.r), adm_enc(a)}
elseif kind == 'pend' then
  local m = pend_dec(rec)
  if m == nil then return {'nil'} end
  return {m.user, tostring(m.qty), m.jti, m.from, m.kind, m.ms, m.comp and 'c' or '-', pend_enc(m)}
else
  local h = hold_dec(rec)
  if h == nil then return {'nil'} end
  return {h.user, tostring(h.qty), h.status, hold_enc(h.qty, h.user)}
end`)

// TestRecordCodecsAgree: Go and the scripts read and write the same records,
// for every odd user id, so no user-supplied byte can split one.
func TestRecordCodecsAgree(t *testing.T) {
	t.Parallel()
	rdb, _ := testenv.Redis(t)
	ctx := context.Background()
	run := func(kind, rec string) []string {
		v, err := recordScript.Run(ctx, rdb, nil, kind, rec).StringSlice()
		require.NoError(t, err, "%s %q", kind, rec)
		return v
	}

	a := sale.Admission{JTI: "a1b2c3-1f", IssuedAt: 1764612000, Expires: 1764612300, Reserved: 3}
	require.Equal(t, []string{"a1b2c3-1f", "1764612000", "1764612300", "3", a.Encode()}, run("adm", a.Encode()))
	got, ok := sale.ParseAdmission(a.Encode())
	require.True(t, ok)
	require.Equal(t, a, got)

	for _, user := range oddUsers {
		for _, comp := range []bool{false, true} {
			p := sale.Pending{User: user, Quantity: 2, JTI: "jti-9", FromTicket: true, Kind: "held", AtMs: 1764612000123, Compensating: comp}
			flag := map[bool]string{false: "-", true: "c"}[comp]
			require.Equal(t, []string{user, "2", "jti-9", "1", "held", "1764612000123", flag, p.Encode()},
				run("pend", p.Encode()), "user %q", user)
			back, ok := sale.ParsePending(p.Encode())
			require.True(t, ok, "user %q", user)
			require.Equal(t, p, back)
		}
		rec := sale.HoldRecord(user, 4)
		require.Equal(t, []string{user, "4", "held", rec}, run("hold", rec), "user %q", user)
		u, q, ok := sale.ParseHoldRecord(rec)
		require.True(t, ok)
		require.Equal(t, user, u)
		require.Equal(t, 4, q)
	}
}

// TestRecordParseRefusesJunk: a record that is not one of ours is refused,
// never read as another user's.
func TestRecordParseRefusesJunk(t *testing.T) {
	t.Parallel()
	for _, rec := range []string{"", "alice", "1|j|1|held|5|-", "x|j|1|held|5|-|u", "1|j|2|held|5|-|u", "1|j|1|held|5|?|u"} {
		_, ok := sale.ParsePending(rec)
		require.False(t, ok, "%q", rec)
	}
	for _, rec := range []string{"", "1|paid|u", "x|held|u", "1"} {
		_, _, ok := sale.ParseHoldRecord(rec)
		require.False(t, ok, "%q", rec)
	}
	for _, rec := range []string{"", "j|1|2", "j|x|2|1", "j|1|2|y"} {
		_, ok := sale.ParseAdmission(rec)
		require.False(t, ok, "%q", rec)
	}
}
