package sale

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

// Keyspace builds every Redis key. One sale's keys share the hash tag {sale}
// so Redis Cluster keeps them on one slot and one Lua script may touch them
// all. Tests give each run its own Prefix.
type Keyspace struct {
	Prefix string // default "fs"
}

func (ks Keyspace) prefix() string {
	if ks.Prefix == "" {
		return "fs"
	}
	return ks.Prefix
}

// Sales is the set of sale ids the admitters and sweepers walk.
func (ks Keyspace) Sales() string { return ks.prefix() + ":sales" }

// Keys are one sale's keys.
type Keys struct {
	Cfg     string // hash: live settings and stored state, with a version
	Q       string // zset: waiting users by place
	Lane    string // zset: skipped users who came back, by original place
	Seen    string // prefix of the presence hashes: user → last presence (Redis ms); see SeenKey
	Skipped string // hash: user → "place:skipped-at-ms"
	Expired string // set: users whose ticket expired unused
	Adm     string // zset: live tickets, user → exp (ms): the lease set
	Tix     string // hash: user → admission record "jti|iat|exp|reserved"
	Units   string // hash: remaining, reserved, held, sold, stock
	Buyers  string // hash: user → order id
	JTI     string // hash: used ticket id → order id
	Pending string // hash: order id → "user|qty|jti|fromTicket|kind|ms": Redis step done, MySQL not yet
	Holds   string // zset: held order id → hold expiry (ms)
	Orders  string // hash: order id → "user|qty|status" for orders that hold units
	Lease   string // string: "holder|fence" of the admitter leader, with a TTL
	Fence   string // counter: fencing tokens
	Bucket  string // string: the rate limiter's "tat|interval" (ms): GCRA state
	Ev      string // stream: admissions, expiries, state changes, orders
	Stats   string // hash: counters (admitted_total, skipped_total, seq, ...)
	Ranks   string // string: the rank table the leader publishes each tick
	Rebuild string // string: lock while units are rebuilt from MySQL
	// SrcJoins and SrcUsers are zsets of client prefixes (IPv4 /24, IPv6
	// /48) by joins and by users newly placed in the queue (sources).
	SrcJoins string
	SrcUsers string
	// Passes is a zset of the holders of an operator's pass waiting for
	// the next admitter tick (they wait in Lane too).
	Passes  string
	idem    string
	ipUsers string
	pass    string
}

// Sale returns the keys of one sale.
func (ks Keyspace) Sale(id string) Keys {
	p := ks.prefix() + ":{" + id + "}:"
	return Keys{
		Cfg: p + "cfg", Q: p + "q", Lane: p + "lane", Seen: p + "seen:", Skipped: p + "skipped",
		Expired: p + "expired", Adm: p + "adm", Tix: p + "tix", Units: p + "units",
		Buyers: p + "buyers", JTI: p + "jti", Pending: p + "pending", Holds: p + "holds",
		Orders: p + "orders", Lease: p + "lease", Fence: p + "fence", Bucket: p + "bucket",
		Ev: p + "ev", Stats: p + "stats", Ranks: p + "ranks", Rebuild: p + "rebuild",
		SrcJoins: p + "src:joins", SrcUsers: p + "src:users", Passes: p + "passes",
		idem: p + "idem:", ipUsers: p + "ipu:", pass: p + "pass:",
	}
}

// SeenBuckets is how many hashes a sale's presence is spread over. Small
// hashes keep Redis's compact listpack encoding (up to 128 fields by
// default): a million waiters cost about 50 B each in presence instead of
// about 100 B in one big hash. prelude.lua's seen_key is the same rule.
const SeenBuckets = 8192

// SeenKey is the presence hash that holds user: bucket = the first two
// bytes of SHA-1(user) modulo SeenBuckets.
func (k Keys) SeenKey(user string) string {
	h := sha1.Sum([]byte(user))
	return k.Seen + strconv.Itoa(int(binary.BigEndian.Uint16(h[:2]))%SeenBuckets)
}

// Idem is the key of a stored Idempotency-Key reply: a hash of the user and
// the key, each length-prefixed, so that no user id or key a client sends
// can run into another's ("alice:k" + "1" is not "alice" + "k:1"), and the
// key's length is fixed whatever they hold.
func (k Keys) Idem(user, key string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(user)))])
	h.Write([]byte(user))
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))])
	h.Write([]byte(key))
	return k.idem + hex.EncodeToString(h.Sum(nil)[:16])
}

// Pass is the single-use mark of an operator's pass (by its jti).
func (k Keys) Pass(jti string) string { return k.pass + jti }

// IPUsers is the set of (hashes of) users who joined the sale from one
// client address, as clientaddr.Key counts it (max_users_per_ip).
func (k Keys) IPUsers(addr string) string { return k.ipUsers + addr }

// All lists every fixed key of the sale (for deletion in tests and tools).
func (k Keys) All() []string {
	return []string{k.Cfg, k.Q, k.Lane, k.Skipped, k.Expired, k.Adm, k.Tix, k.Units,
		k.Buyers, k.JTI, k.Pending, k.Holds, k.Orders, k.Lease, k.Fence, k.Bucket, k.Ev,
		k.Stats, k.Ranks, k.Rebuild, k.SrcJoins, k.SrcUsers, k.Passes}
}
