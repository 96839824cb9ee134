package checkout_test

import (
	"testing"
	"unicode/utf8"

	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/sale"
)

// FuzzIdempotencyKey: a key is accepted only if MySQL can keep it (at most
// 255 bytes of UTF-8), and the Redis key of a stored reply is one per (user,
// key): no user id and key a client sends can land on another's.
func FuzzIdempotencyKey(f *testing.F) {
	f.Add("alice", "k:1", "alice:k", "1")
	f.Add("a", "bc", "ab", "c")
	f.Add("u", "\xff", "u", "")
	k := sale.Keyspace{Prefix: "fz"}.Sale("s1")
	f.Fuzz(func(t *testing.T, user1, key1, user2, key2 string) {
		if err := checkout.CheckIdemKey(key1); err == nil && (len(key1) > 255 || !utf8.ValidString(key1)) {
			t.Fatalf("key %q accepted", key1)
		}
		same := user1 == user2 && key1 == key2
		if (k.Idem(user1, key1) == k.Idem(user2, key2)) != same {
			t.Fatalf("Idem(%q, %q) and Idem(%q, %q) collide or split", user1, key1, user2, key2)
		}
	})
}
