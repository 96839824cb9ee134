package waitingroom

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/sale"
)

// Test hooks for the external test package (waitingroom_test), which cannot
// be the package itself: it uses testenv, which imports node, which imports
// waitingroom.

// RankDivisor is the rank table's spacing divisor the leader uses.
const RankDivisor = rankDivisor

// RunJoin runs join.lua once for a sale with op/user/random triplets and
// parses its reply as Queue does.
func RunJoin(ctx context.Context, rdb redis.UniversalClient, k sale.Keys, args ...any) ([]UserState, error) {
	return parseJoinReply(joinScript.Run(ctx, rdb, queueKeys(k), args...))
}

// TakeLease runs lease.lua: whether holder holds the lease now, and its value.
func TakeLease(ctx context.Context, rdb redis.UniversalClient, k sale.Keys, holder string, ttl time.Duration) (bool, string, error) {
	return parseLease(leaseScript.Run(ctx, rdb, []string{k.Lease, k.Fence}, holder, ttl.Milliseconds()))
}

// Resign runs resign.lua: 1 when released, 0 when value did not hold it.
func Resign(ctx context.Context, rdb redis.UniversalClient, k sale.Keys, value string) (int64, error) {
	return resignScript.Run(ctx, rdb, []string{k.Lease}, value).Int64()
}

// PublishRanks runs ranks.lua once and returns its sample count.
func PublishRanks(ctx context.Context, rdb redis.UniversalClient, k sale.Keys, ttl time.Duration) (int64, error) {
	return ranksScript.Run(ctx, rdb, []string{k.Q, k.Lane, k.Stats, k.Ranks, k.Cfg, k.Units},
		rankDivisor, ttl.Milliseconds()).Int64()
}

// MarkPresent runs presence.lua for users.
func MarkPresent(ctx context.Context, rdb redis.UniversalClient, k sale.Keys, users ...any) (int64, error) {
	return presenceScript.Run(ctx, rdb, []string{k.Seen}, users...).Int64()
}

// RankTable is the parsed rank table.
type RankTable = rankTable

// ParseRankTable parses a published rank table.
func ParseRankTable(s string) (*RankTable, error) { return parseRankTable(s) }

// Position is rankTable.position.
func (t *rankTable) Position(place float64) int64 { return t.position(place) }

// Header returns the table's header fields.
func (t *rankTable) Header() (queueLen, advance int64, state string, allReserved bool) {
	return t.queueLen, t.advance, t.state, t.allReserved
}

// Samples returns the sampled ranks and scores.
func (t *rankTable) Samples() ([]int64, []float64) { return t.ranks, t.scores }

// Track makes the hub follow a sale, as a socket or a join does.
func (h *Hub) Track(ctx context.Context, saleID string) error { return h.track(ctx, saleID) }

// Tick runs one presence and position tick.
func (h *Hub) Tick(ctx context.Context) { h.tick(ctx) }

// Dispatch hands the hub one event of a sale's stream.
func (h *Hub) Dispatch(ctx context.Context, saleID string, values map[string]any) {
	h.dispatch(ctx, saleID, redis.XMessage{ID: "0-1", Values: values})
}

// AddTestConn registers a socket with no network behind it, past its first
// frame, in a state as ws() would set it; Drain reads what it was sent.
func (h *Hub) AddTestConn(saleID, user, kind string, place float64, pos int64) *Conn {
	c := newConn(nil, h, saleID, user)
	c.holding = false
	c.kind, c.place, c.lastPos = kind, place, pos
	h.add(c)
	return c
}

// Drain takes the frames queued to the socket.
func (c *Conn) Drain() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.queue))
	for i, f := range c.queue {
		out[i] = string(f)
	}
	c.queue, c.queued = nil, 0
	return out
}

// Closing reports the close code the socket is closing with (0: open).
func (c *Conn) Closing() (bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing, c.code
}

// HasTable reports whether the hub holds a rank table for the sale.
func (h *Hub) HasTable(saleID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.sales[saleID]
	return t != nil && t.table != nil
}

// RunJoinLimited runs join.lua once for a batch of new users' joins, each
// carrying the rate checks of limits[i] (none when limits is shorter), as
// Queue does.
func RunJoinLimited(ctx context.Context, rdb redis.UniversalClient, k sale.Keys, users []string, limits []ratelimit.Pending) ([]UserState, error) {
	keys := queueKeys(k)
	args := make([]any, 0, 3*len(users)+3)
	params := ""
	for i, u := range users {
		var lim ratelimit.Pending
		if i < len(limits) {
			lim = limits[i]
		}
		keys, args = appendOp(keys, args, &params, opJoin, u, "", lim)
	}
	return parseJoinReply(joinScript.Run(ctx, rdb, keys, args...))
}
