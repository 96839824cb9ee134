package waitingroom_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
	"github.com/flashsale/flashsale/waitingroom"
)

type hubEnv struct {
	rdb    *redis.Client
	k      sale.Keys
	hub    *waitingroom.Hub
	issuer *ticket.Issuer
}

// newHubEnv is a hub (not started: the test drives its ticks and events)
// over a seeded sale "s1" with waiters at places 1..n.
func newHubEnv(t *testing.T, n int) *hubEnv {
	t.Helper()
	ctx := context.Background()
	rdb, ks := testenv.Redis(t)
	k := ks.Sale("s1")
	seedSale(t, rdb, k, nil, 1000)
	if n > 0 {
		zs := make([]redis.Z, n)
		for i := range zs {
			zs[i] = redisZ(float64(i+1), fmt.Sprintf("u%03d", i+1))
		}
		require.NoError(t, rdb.ZAdd(ctx, k.Q, zs...).Err())
	}
	_, keys := testenv.KeyFile(t)
	issuer := ticket.NewIssuer(keys, "flashsale")
	h := waitingroom.NewHub(waitingroom.HubConfig{Logger: quiet}, rdb, sale.NewStore(nil, rdb, ks), issuer)
	require.NoError(t, h.Track(ctx, "s1"))
	return &hubEnv{rdb: rdb, k: k, hub: h, issuer: issuer}
}

func (e *hubEnv) ranks(t *testing.T) {
	t.Helper()
	_, err := waitingroom.PublishRanks(context.Background(), e.rdb, e.k, 5*time.Second)
	require.NoError(t, err)
}

func decode(t *testing.T, frames []string) []map[string]any {
	t.Helper()
	out := make([]map[string]any, len(frames))
	for i, f := range frames {
		require.NoError(t, json.Unmarshal([]byte(f), &out[i]), "frame %s", f)
	}
	return out
}

func position(pos, qlen float64, paused bool) map[string]any {
	return map[string]any{"type": "position", "position": pos, "queue_length": qlen, "eta_seconds": nil,
		"paused": paused, "all_reserved": false, "poll_after_seconds": 2.0}
}

// TestHubTick: one tick marks every waiting socket present (on Redis time;
// an admitted shopper's socket is not presence any more) and pushes each
// waiting socket its position from the rank table, only when it changed,
// and never a larger one than it showed.
func TestHubTick(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newHubEnv(t, 200)
	e.ranks(t)
	c := e.hub.AddTestConn("s1", "u150", waitingroom.KindWaiting, 150, 150)
	adm := e.hub.AddTestConn("s1", "someone", waitingroom.KindAdmitted, 0, 0)

	before := redisNow(t, e.rdb)
	e.hub.Tick(ctx)
	after := redisNow(t, e.rdb)
	require.Equal(t, []map[string]any{position(150, 200, false)}, decode(t, c.Drain()))
	require.Empty(t, adm.Drain(), "no position for an admitted shopper")
	seen, ok := seenAt(t, e.rdb, e.k, "u150")
	require.True(t, ok, "the waiter is present")
	require.GreaterOrEqual(t, seen, float64(before))
	require.LessOrEqual(t, seen, float64(after))
	_, ok = seenAt(t, e.rdb, e.k, "someone")
	require.False(t, ok, "an admitted shopper's socket is not presence")

	e.hub.Tick(ctx)
	require.Empty(t, c.Drain(), "nothing changed, nothing sent")

	// the head advances by 100
	require.NoError(t, e.rdb.ZRemRangeByRank(ctx, e.k.Q, 0, 99).Err())
	e.ranks(t)
	e.hub.Tick(ctx)
	require.Equal(t, []map[string]any{position(50, 100, false)}, decode(t, c.Drain()))

	// 30 entries ahead of the socket's place (a table that would move it
	// back): its position does not go up
	zs := make([]redis.Z, 30)
	for i := range zs {
		zs[i] = redisZ(0.01*float64(i+1), fmt.Sprintf("ahead%02d", i))
	}
	require.NoError(t, e.rdb.ZAdd(ctx, e.k.Q, zs...).Err())
	e.ranks(t)
	e.hub.Tick(ctx)
	require.Equal(t, []map[string]any{position(50, 130, false)}, decode(t, c.Drain()))

	require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "state", "paused").Err())
	e.ranks(t)
	e.hub.Tick(ctx)
	require.Equal(t, []map[string]any{position(50, 130, true)}, decode(t, c.Drain()))
}

// TestHubEvents: the stream's events reach the sockets they concern.
func TestHubEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newHubEnv(t, 3)
	ann := e.hub.AddTestConn("s1", "ann", waitingroom.KindWaiting, 1, 1)
	ann2 := e.hub.AddTestConn("s1", "ann", waitingroom.KindWaiting, 1, 1) // a second tab
	bob := e.hub.AddTestConn("s1", "bob", waitingroom.KindWaiting, 2, 2)

	e.hub.Dispatch(ctx, "s1", map[string]any{"t": "adm", "u": "ann", "d": "jti-1|1700000000|1700000300"})
	for _, c := range []*waitingroom.Conn{ann, ann2} {
		frames := decode(t, c.Drain())
		require.Len(t, frames, 1)
		f := frames[0]
		require.Equal(t, "admitted", f["type"])
		claims, err := e.issuer.VerifyTicket(f["ticket"].(string), "s1", time.Unix(1700000001, 0))
		require.NoError(t, err)
		require.Equal(t, ticket.Claims{Issuer: "flashsale", Subject: "ann", Audience: "s1", Use: "ticket",
			ID: "jti-1", IssuedAt: 1700000000, NotBefore: 1700000000, ExpiresAt: 1700000300}, *claims)
		require.Equal(t, api.Time(time.Unix(1700000300, 0)), f["ticket_expires_at"])
	}
	require.Empty(t, bob.Drain(), "another shopper's admission")

	// admitted sockets get no more positions
	e.ranks(t)
	e.hub.Tick(ctx)
	require.Empty(t, ann.Drain())
	require.Len(t, bob.Drain(), 1)

	e.hub.Dispatch(ctx, "s1", map[string]any{"t": "exp", "u": "ann"})
	require.Equal(t, []string{`{"type":"expired"}`}, ann.Drain())
	e.hub.Dispatch(ctx, "s1", map[string]any{"t": "order", "u": "bob", "d": `{"id":"ord_1"}`})
	require.Equal(t, []string{`{"type":"order","order":{"id":"ord_1"}}`}, bob.Drain())
	require.Empty(t, ann.Drain())

	ann2.Drain()
	e.hub.Dispatch(ctx, "s1", map[string]any{"t": "state", "d": "paused"})
	for _, c := range []*waitingroom.Conn{ann, ann2, bob} {
		require.Equal(t, []string{`{"type":"paused"}`}, c.Drain())
		closing, _ := c.Closing()
		require.False(t, closing)
	}
	e.hub.Dispatch(ctx, "s1", map[string]any{"t": "state", "d": "sold_out"})
	for _, c := range []*waitingroom.Conn{ann, ann2, bob} {
		require.Equal(t, []string{`{"type":"sold_out"}`}, c.Drain())
		closing, code := c.Closing()
		require.True(t, closing)
		require.Equal(t, waitingroom.CloseFinal, code)
	}
}

// TestHubStateEventDuringTick: a state event may arrive while a tick pushes
// positions from the table it just took; under -race this finds any write
// to a table a tick may still be reading.
func TestHubStateEventDuringTick(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for range 5 {
		e := newHubEnv(t, 10)
		e.ranks(t)
		// an admitted socket: the tick reads the table's state for it and
		// sends it nothing, so nothing else orders the two goroutines
		c := e.hub.AddTestConn("s1", "ann", waitingroom.KindAdmitted, 0, 0)
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.hub.Tick(ctx)
		}()
		testenv.Eventually(t, 5*time.Second, func() bool { return e.hub.HasTable("s1") }, "the tick takes the table")
		e.hub.Dispatch(ctx, "s1", map[string]any{"t": "state", "d": "paused"})
		<-done
		require.Equal(t, []string{`{"type":"paused"}`}, c.Drain())
	}
}

// TestPositionsWhileQueueMoves: 5,000 waiters, 400 of them with sockets on
// this node; over 40 ticks the head advances by up to 60, 3% of the others
// leave at random and a block of them in a row (seeded, so the run is
// stable).
// Every position frame is never larger than the one before it on the same
// socket, exact when the waiter is among the first 100, and within 1% of
// the true position (1 + those ahead, read from Redis) otherwise.
func TestPositionsWhileQueueMoves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 5000
	e := newHubEnv(t, n)
	src := rand.New(rand.NewPCG(5, 2026))
	watched := map[string]*waitingroom.Conn{}
	for len(watched) < 400 {
		i := 1 + src.IntN(n)
		u := fmt.Sprintf("u%03d", i)
		if watched[u] == nil {
			watched[u] = e.hub.AddTestConn("s1", u, waitingroom.KindWaiting, float64(i), 0)
		}
	}
	last := map[string]int64{}
	frames := 0
	for round := range 40 {
		if round > 0 {
			head, err := e.rdb.ZRange(ctx, e.k.Q, 0, int64(src.IntN(60))).Result()
			require.NoError(t, err)
			require.NoError(t, e.rdb.ZRem(ctx, e.k.Q, anySlice(head)...).Err())
			all, err := e.rdb.ZRange(ctx, e.k.Q, 0, -1).Result()
			require.NoError(t, err)
			// scattered leaves, and a block of up to 150 in a row somewhere
			// (uneven gaps are what interpolation between samples gets wrong)
			var leaving []any
			from := src.IntN(len(all))
			for i, u := range all {
				if watched[u] == nil && (src.IntN(100) < 3 || (i >= from && i < from+src.IntN(150))) {
					leaving = append(leaving, u)
				}
			}
			if len(leaving) > 0 {
				require.NoError(t, e.rdb.ZRem(ctx, e.k.Q, leaving...).Err())
			}
		}
		e.ranks(t)
		e.hub.Tick(ctx)
		for u, c := range watched {
			for _, f := range decode(t, c.Drain()) {
				frames++
				pos := int64(f["position"].(float64))
				rank, err := e.rdb.ZRank(ctx, e.k.Q, u).Result()
				if err == redis.Nil {
					continue // admitted in this round; no position for it any more
				}
				require.NoError(t, err)
				want := rank + 1
				if prev, ok := last[u]; ok {
					require.LessOrEqual(t, pos, prev, "%s's position rose", u)
				}
				last[u] = pos
				if want <= 100 {
					require.Equal(t, want, pos, "%s: exact among the first 100", u)
				} else {
					require.LessOrEqual(t, abs(pos-want)*100, want, "%s: position %d, true %d", u, pos, want)
				}
			}
		}
	}
	require.Greater(t, frames, 4000, "frames checked")
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// TestHubStateEventBeforeTable: a state event reaches the hub before the
// leader republishes the rank table (every 250 ms); the tick after it reads
// the table published before the event, and its positions still say what
// the event said, never the state before it.
func TestHubStateEventBeforeTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newHubEnv(t, 10)
	require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "state", "paused").Err())
	e.ranks(t)
	e.hub.Tick(ctx) // the hub takes the paused table
	// a socket whose first frame (paused) went out at connect
	c := e.hub.AddTestConn("s1", "u003", waitingroom.KindWaiting, 3, 3)
	require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "state", "open").Err())
	e.hub.Dispatch(ctx, "s1", map[string]any{"t": "state", "d": "open"})
	require.Equal(t, []string{`{"type":"open"}`}, c.Drain())

	e.hub.Tick(ctx) // the table in Redis is still the paused one
	require.Equal(t, []map[string]any{position(3, 10, false)}, decode(t, c.Drain()))

	e.ranks(t) // the leader's next table shows the event's state
	e.hub.Tick(ctx)
	require.Empty(t, c.Drain(), "nothing changed, nothing sent")
	require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "state", "paused").Err())
	e.ranks(t) // a pause published without its event yet: the table wins
	e.hub.Tick(ctx)
	require.Equal(t, []map[string]any{position(3, 10, true)}, decode(t, c.Drain()))
}
