package waitingroom_test

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/waitingroom"
)

// redisNow is Redis's clock in ms, the one the scripts use.
func redisNow(t testing.TB, rdb redis.UniversalClient) int64 {
	t.Helper()
	tm, err := rdb.Time(context.Background()).Result()
	require.NoError(t, err)
	return tm.UnixMilli()
}

// liveCfg is the live copy of an open fifo sale of stock 10, as sale.Store
// publishes it; fields override it.
func liveCfg(fields map[string]any) map[string]any {
	cfg := map[string]any{
		"ver": 1, "state": "open", "name": "Test", "price": 1000, "currency": "EUR", "stock": 10,
		"starts": 1, "ends": 0, "qopens": 0, "rate": "10", "max_active": 100, "ttl": 300,
		"hold_ttl": 0, "per_user": 1, "mode": "fifo", "abandon": 60, "return_window": 900,
	}
	maps.Copy(cfg, fields)
	return cfg
}

// seedSale writes a sale's live copy and units straight into Redis: exact
// state for a script test. remaining is the unsold stock, none reserved.
func seedSale(t testing.TB, rdb redis.UniversalClient, k sale.Keys, cfg map[string]any, remaining int) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, rdb.HSet(ctx, k.Cfg, liveCfg(cfg)).Err())
	require.NoError(t, rdb.HSet(ctx, k.Units, "remaining", remaining, "reserved", 0, "held", 0,
		"sold", 0, "stock", remaining).Err())
}

// zscore is a member's score, and whether it is there.
func zscore(t testing.TB, rdb redis.UniversalClient, key, member string) (float64, bool) {
	t.Helper()
	v, err := rdb.ZScore(context.Background(), key, member).Result()
	if err == redis.Nil {
		return 0, false
	}
	require.NoError(t, err)
	return v, true
}

// hint reads an integer field of a hash (0 when missing).
func hint(t testing.TB, rdb redis.UniversalClient, key, field string) int64 {
	t.Helper()
	v, err := rdb.HGet(context.Background(), key, field).Result()
	if err == redis.Nil {
		return 0
	}
	require.NoError(t, err)
	n, err := strconv.ParseInt(v, 10, 64)
	require.NoError(t, err, "%s %s = %q", key, field, v)
	return n
}

// event is one entry of a sale's event stream.
type event struct{ T, U, D string }

func events(t testing.TB, rdb redis.UniversalClient, k sale.Keys) []event {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), k.Ev, "-", "+").Result()
	require.NoError(t, err)
	out := make([]event, len(msgs))
	for i, m := range msgs {
		s := func(f string) string { v, _ := m.Values[f].(string); return v }
		out[i] = event{T: s("t"), U: s("u"), D: s("d")}
	}
	return out
}

// startQueue runs a Queue on the test's keys until the test ends.
func startQueue(t testing.TB, rdb redis.UniversalClient, ks sale.Keyspace) *waitingroom.Queue {
	t.Helper()
	q := waitingroom.NewQueue(rdb, ks)
	q.Start(context.Background())
	t.Cleanup(q.Stop)
	return q
}

// admitRecord is a parsed tix entry "jti|iat|exp|reserved".
type admitRecord struct {
	JTI                string
	IAT, Exp, Reserved int64
}

func tix(t testing.TB, rdb redis.UniversalClient, k sale.Keys, user string) (admitRecord, bool) {
	t.Helper()
	v, err := rdb.HGet(context.Background(), k.Tix, user).Result()
	if err == redis.Nil {
		return admitRecord{}, false
	}
	require.NoError(t, err)
	a, ok := sale.ParseAdmission(v)
	require.True(t, ok, "tix %s = %q", user, v)
	return admitRecord{JTI: a.JTI, IAT: a.IssuedAt, Exp: a.Expires, Reserved: int64(a.Reserved)}, true
}

// storeEnv is a sale store on the test's own Redis prefix and MySQL database.
type storeEnv struct {
	rdb   redis.UniversalClient
	ks    sale.Keyspace
	db    *sql.DB
	store *sale.Store
}

// newStoreEnv is newStoreEnvOn on one Redis.
func newStoreEnv(t testing.TB) *storeEnv {
	t.Helper()
	rdb, ks := testenv.Redis(t)
	return newStoreEnvOn(t, rdb, ks)
}

// newStoreEnvOn is a sale store on rdb under ks and a MySQL database of the
// test's own.
func newStoreEnvOn(t testing.TB, rdb redis.UniversalClient, ks sale.Keyspace) *storeEnv {
	t.Helper()
	_, db := testenv.MySQL(t)
	return &storeEnv{rdb: rdb, ks: ks, db: db, store: sale.NewStore(db, rdb, ks)}
}

// createSale creates an open sale through the store (MySQL row, live copy,
// units) with the request's fields set by fn.
func (e *storeEnv) createSale(t testing.TB, fn func(r *sale.CreateRequest)) *sale.Sale {
	t.Helper()
	id := "s-" + testenv.RandomID()
	name, price, cur, stock := "Test sale", int64(1000), "EUR", 1000
	r := &sale.CreateRequest{ID: &id, Name: &name, PriceCents: &price, Currency: &cur, Stock: &stock}
	if fn != nil {
		fn(r)
	}
	s, err := r.Build(time.Now())
	require.NoError(t, err)
	require.NoError(t, e.store.Create(context.Background(), s))
	return s
}

// joinMany puts n users (prefix-0 .. prefix-(n-1)) in the queue, in that
// order of arrival, present now.
func joinMany(t testing.TB, q *waitingroom.Queue, saleID, prefix string, n int) []string {
	t.Helper()
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("%s-%04d", prefix, i)
		st, err := q.Join(context.Background(), saleID, users[i])
		require.NoError(t, err)
		require.Equal(t, waitingroom.KindWaiting, st.Kind, "join %s", users[i])
	}
	return users
}

func ptr[T any](v T) *T { return &v }

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }

// seenAt is a user's last presence (Redis ms) in their presence hash, and
// whether there is one.
func seenAt(t testing.TB, rdb redis.UniversalClient, k sale.Keys, user string) (float64, bool) {
	t.Helper()
	v, err := rdb.HGet(context.Background(), k.SeenKey(user), user).Result()
	if err == redis.Nil {
		return 0, false
	}
	require.NoError(t, err)
	ms, err := strconv.ParseInt(v, 10, 64)
	require.NoError(t, err, "seen %s = %q: whole milliseconds", user, v)
	return float64(ms), true
}

// markSeen writes users' presence at ms straight into their presence hashes.
func markSeen(t testing.TB, rdb redis.UniversalClient, k sale.Keys, ms int64, users ...string) {
	t.Helper()
	for _, u := range users {
		require.NoError(t, rdb.HSet(context.Background(), k.SeenKey(u), u, ms).Err())
	}
}

// seenAll reads every presence entry of a sale: user → ms.
func seenAll(t testing.TB, rdb redis.UniversalClient, k sale.Keys) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	// on every master: a cluster client's own SCAN reads one
	keys, err := testdb.MatchKeys(ctx, rdb, k.Seen+"*")
	require.NoError(t, err)
	for _, key := range keys {
		m, err := rdb.HGetAll(ctx, key).Result()
		require.NoError(t, err)
		for u, v := range m {
			out[u] = v
		}
	}
	return out
}
