package sale

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"strconv"
	"time"
)

//go:embed publish.lua
var publishLua string

var publishScript = NewScript(publishLua)

//go:embed regen.lua
var regenLua string

var regenScript = NewScript(regenLua)

// publish writes the sale's live copy to Redis if its version is newer than
// the one there, announcing a state change on the sale's event stream in the
// same step. initUnits also creates the units hash of a new sale; a live
// sale's units are never re-seeded here (only rebuilt from orders).
func (st *Store) publish(ctx context.Context, s *Sale, initUnits bool) error {
	k := st.Keys.Sale(s.ID)
	msgText, msgAt := "", int64(0)
	if s.Message != nil {
		msgText, msgAt = s.Message.Text, s.Message.At.UnixMilli()
	}
	init := "0"
	if initUnits {
		init = "1"
	}
	// In the working set first (every loop walks it): a sale there without
	// a live copy is rebuilt on first use, a live copy outside it would be
	// walked by nothing. Another slot than the sale's keys on Redis
	// Cluster, so not in the script.
	if err := st.Redis.SAdd(ctx, st.Keys.Sales(), s.ID).Err(); err != nil {
		return redisErr(err)
	}
	err := publishScript.Run(ctx, st.Redis, []string{k.Cfg, k.Units, k.Ev},
		s.ID, s.Version, init, s.StockTotal, EventStreamLen, string(s.State), newGen(), RequeueWindow.Milliseconds(),
		"name", s.Name, "price", s.PriceCents, "currency", s.Currency,
		"stock", s.StockTotal, "starts", s.StartsAt.UnixMilli(), "ends", msOrZero(s.EndsAt),
		"qopens", msOrZero(s.QueueOpensAt), "rate", strconv.FormatFloat(s.AdmissionRate, 'g', -1, 64),
		"max_active", s.MaxActive, "ttl", s.TicketTTL, "hold_ttl", s.HoldTTL, "per_user", s.PerUserLimit,
		"mode", s.QueueMode, "abandon", s.AbandonAfter, "return_window", s.ReturnWindow,
		"challenge", s.JoinChallenge, "pow", s.PowDifficulty, "ip_users", s.MaxUsersPerIP,
		"msg", msgText, "msg_at", msgAt, "return_url", s.ReturnURL,
	).Err()
	if err != nil {
		return redisErr(err)
	}
	st.forget(s.ID)
	return nil
}

// Republish copies the MySQL row to Redis again (after a transaction that
// changed the row elsewhere, e.g. the checkout marking a sale sold out).
func (st *Store) Republish(ctx context.Context, id string) error {
	s, err := st.Load(ctx, id)
	if err != nil {
		return err
	}
	return st.publish(ctx, s, false)
}

// EventStreamLen bounds a sale's event stream (approximately).
const EventStreamLen = 100_000

// RequeueWindow is how long joins of newcomers wait (503) after a sale's
// live copy is written again into a Redis that lost it: long enough for
// the units to be rebuilt and every node to see the new generation at its
// next tick and put back the waiters it holds, so that nobody new lands
// ahead of them.
const RequeueWindow = 5 * time.Second

// Regenerate gives the sale's live copy in Redis a new generation, as if
// written anew, after Redis came back behind MySQL (a restart from an old
// snapshot, a failover to a lagging replica): its queue may lack waiters
// who joined since, so every node puts back the waiters it holds, shoppers
// who poll are put back by their token, and newcomers wait meanwhile.
func (st *Store) Regenerate(ctx context.Context, id string) error {
	err := regenScript.Run(ctx, st.Redis, []string{st.Keys.Sale(id).Cfg}, newGen(), RequeueWindow.Milliseconds()).Err()
	return redisErr(err)
}

// newGen is a random id for one life of a sale's keys in Redis.
func newGen() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func msOrZero(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixMilli()
}
