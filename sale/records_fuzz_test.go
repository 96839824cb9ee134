package sale_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/flashsale/flashsale/sale"
)

// FuzzRecords: whatever a user id holds, every record that carries it reads
// back exactly as written, and reading any string never panics and never
// yields a record that does not write back to the same string.
func FuzzRecords(f *testing.F) {
	for _, u := range []string{"alice", "auth0|abc", "|", "1|1|j|1|held|5|-|bob", "a:b", "{x}", "Zoë"} {
		f.Add(u, "jti-1", 3, int64(1764612000123), "1|j|1|held|5|c|"+u)
	}
	f.Fuzz(func(t *testing.T, user, jti string, qty int, ms int64, raw string) {
		if user == "" || len(user) > 255 || !utf8.ValidString(user) || strings.Contains(jti, "|") || jti == "" {
			return // not a user id the identity check lets in, or a jti we never mint
		}
		for _, comp := range []bool{false, true} {
			p := sale.Pending{User: user, Quantity: qty, JTI: jti, FromTicket: comp, Kind: "sold", AtMs: ms, Compensating: comp}
			back, ok := sale.ParsePending(p.Encode())
			if !ok || back != p {
				t.Fatalf("pending %+v read back as %+v (%v)", p, back, ok)
			}
		}
		if u, q, ok := sale.ParseHoldRecord(sale.HoldRecord(user, qty)); !ok || u != user || q != qty {
			t.Fatalf("hold record of %q, %d read back as %q, %d (%v)", user, qty, u, q, ok)
		}
		// arbitrary input: no panic; what is accepted writes back the same
		if p, ok := sale.ParsePending(raw); ok && p.Encode() != raw {
			if _, again := sale.ParsePending(p.Encode()); !again {
				t.Fatalf("ParsePending(%q) = %+v, which does not encode to a mark", raw, p)
			}
		}
		if a, ok := sale.ParseAdmission(raw); ok {
			if b, ok := sale.ParseAdmission(a.Encode()); !ok || b != a {
				t.Fatalf("admission %q read back as %+v", raw, b)
			}
		}
		_, _, _ = sale.ParseHoldRecord(raw)
	})
}
