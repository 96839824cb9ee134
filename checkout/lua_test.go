package checkout_test

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/testenv"
)

// The Lua scripts, one step each against a real Redis: seed a sale's exact
// state under the test's own key prefix, run the script once, compare the
// whole state afterwards.

// redisState is every key of one sale that the checkout's scripts read or
// write. A nil map is a missing key.
type redisState struct {
	Cfg     map[string]string
	Units   map[string]string
	Tix     map[string]string
	Adm     map[string]float64
	Buyers  map[string]string
	JTI     map[string]string
	Pending map[string]string
	Holds   map[string]float64
	Orders  map[string]string
	Stats   map[string]string
	Events  []map[string]string
}

// clone copies the state so a case can derive its expectation from a base.
func (s redisState) clone() redisState {
	c := s
	c.Cfg, c.Units, c.Tix, c.Buyers = maps.Clone(s.Cfg), maps.Clone(s.Units), maps.Clone(s.Tix), maps.Clone(s.Buyers)
	c.JTI, c.Pending, c.Orders, c.Stats = maps.Clone(s.JTI), maps.Clone(s.Pending), maps.Clone(s.Orders), maps.Clone(s.Stats)
	c.Adm, c.Holds = maps.Clone(s.Adm), maps.Clone(s.Holds)
	c.Events = nil
	for _, e := range s.Events {
		c.Events = append(c.Events, maps.Clone(e))
	}
	return c
}

// units is a units hash.
func units(remaining, reserved, held, sold, stock int) map[string]string {
	return map[string]string{"remaining": strconv.Itoa(remaining), "reserved": strconv.Itoa(reserved),
		"held": strconv.Itoa(held), "sold": strconv.Itoa(sold), "stock": strconv.Itoa(stock)}
}

// luaEnv is one sale's keys under the test's own prefix.
type luaEnv struct {
	t   *testing.T
	ctx context.Context
	rdb redis.UniversalClient
	k   sale.Keys
}

// newLuaEnv is newLuaEnvOn one Redis.
func newLuaEnv(t *testing.T) *luaEnv { return newLuaEnvOn(t, testdb.Backends[0]) }

// newLuaEnvOn is a sale of a random id (so the sales of a test spread over
// a cluster's masters) on backend b.
func newLuaEnvOn(t *testing.T, b testdb.Backend) *luaEnv {
	rdb, ks := b.Redis(t)
	return &luaEnv{t: t, ctx: context.Background(), rdb: rdb, k: ks.Sale("s-" + testenv.RandomID())}
}

func (e *luaEnv) seed(s redisState) {
	e.t.Helper()
	ctx := e.ctx
	require.NoError(e.t, e.rdb.Del(ctx, e.k.All()...).Err())
	for key, m := range map[string]map[string]string{e.k.Cfg: s.Cfg, e.k.Units: s.Units, e.k.Tix: s.Tix,
		e.k.Buyers: s.Buyers, e.k.JTI: s.JTI, e.k.Pending: s.Pending, e.k.Orders: s.Orders, e.k.Stats: s.Stats} {
		if len(m) > 0 {
			require.NoError(e.t, e.rdb.HSet(ctx, key, m).Err())
		}
	}
	for key, m := range map[string]map[string]float64{e.k.Adm: s.Adm, e.k.Holds: s.Holds} {
		for member, score := range m {
			require.NoError(e.t, e.rdb.ZAdd(ctx, key, redis.Z{Score: score, Member: member}).Err())
		}
	}
	for _, ev := range s.Events {
		require.NoError(e.t, e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: e.k.Ev, Values: ev}).Err())
	}
}

// dump reads the state back. A pending entry's last field (Redis's clock
// at reserve) is checked against Redis TIME and replaced by "NOW" when it is
// within 10 s of it, so expectations can be written exactly.
func (e *luaEnv) dump() redisState {
	e.t.Helper()
	ctx := e.ctx
	h := func(key string) map[string]string {
		m, err := e.rdb.HGetAll(ctx, key).Result()
		require.NoError(e.t, err)
		if len(m) == 0 {
			return nil
		}
		return m
	}
	z := func(key string) map[string]float64 {
		zs, err := e.rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
		require.NoError(e.t, err)
		if len(zs) == 0 {
			return nil
		}
		m := map[string]float64{}
		for _, x := range zs {
			m[x.Member.(string)] = x.Score
		}
		return m
	}
	s := redisState{Cfg: h(e.k.Cfg), Units: h(e.k.Units), Tix: h(e.k.Tix), Adm: z(e.k.Adm), Buyers: h(e.k.Buyers),
		JTI: h(e.k.JTI), Pending: h(e.k.Pending), Holds: z(e.k.Holds), Orders: h(e.k.Orders), Stats: h(e.k.Stats)}
	msgs, err := e.rdb.XRange(ctx, e.k.Ev, "-", "+").Result()
	require.NoError(e.t, err)
	for _, m := range msgs {
		ev := map[string]string{}
		for f, v := range m.Values {
			ev[f] = fmt.Sprint(v)
		}
		s.Events = append(s.Events, ev)
	}
	now, err := e.rdb.Time(ctx).Result()
	require.NoError(e.t, err)
	for id, p := range s.Pending {
		m, ok := sale.ParsePending(p)
		require.True(e.t, ok, "pending %s: %q", id, p)
		if d := now.UnixMilli() - m.AtMs; d >= 0 && d < 10_000 {
			m.AtMs = nowMark
			s.Pending[id] = m.Encode()
		}
	}
	return s
}

// nowMark stands for "a Redis time within the last 10 s" in a pending
// mark's time (state reads marks that recent with it).
const nowMark = -1

// pm is a pending mark.
func pm(user string, qty int, jti string, fromTicket bool, kind string, atMs int64) string {
	return sale.Pending{User: user, Quantity: qty, JTI: jti, FromTicket: fromTicket, Kind: kind, AtMs: atMs}.Encode()
}

// requireUnits checks invariant 1 on a state: remaining + held + sold =
// stock, and reserved within [0, remaining].
func requireUnits(t *testing.T, s redisState) {
	t.Helper()
	if s.Units == nil {
		return
	}
	n := func(f string) int {
		v, err := strconv.Atoi(s.Units[f])
		require.NoError(t, err, "units %s: %q", f, s.Units[f])
		return v
	}
	require.Equal(t, n("stock"), n("remaining")+n("held")+n("sold"), "remaining+held+sold = stock: %v", s.Units)
	require.GreaterOrEqual(t, n("reserved"), 0, "reserved: %v", s.Units)
	require.LessOrEqual(t, n("reserved"), n("remaining"), "reserved ≤ remaining: %v", s.Units)
}

func strs(t *testing.T, v []any) []string {
	t.Helper()
	out := make([]string, len(v))
	for i, x := range v {
		s, ok := x.(string)
		require.True(t, ok, "reply %v: element %d is %T", v, i, x)
		out[i] = s
	}
	return out
}

func (e *luaEnv) reserve(user, jti string, qty int, order string) []string {
	e.t.Helper()
	k := e.k
	v, err := checkout.ReserveScript.Run(e.ctx, e.rdb, []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending},
		user, jti, qty, order).Slice()
	require.NoError(e.t, err)
	return strs(e.t, v)
}

func (e *luaEnv) finalize(order string, holdMs int64, data string) int64 {
	e.t.Helper()
	k := e.k
	n, err := checkout.FinalizeScript.Run(e.ctx, e.rdb, []string{k.Units, k.Tix, k.Adm, k.Pending, k.Holds, k.Orders, k.Ev, k.Stats},
		order, holdMs, data, sale.EventStreamLen).Int64()
	require.NoError(e.t, err)
	return n
}

func (e *luaEnv) undo(order string) int64 {
	e.t.Helper()
	k := e.k
	n, err := checkout.UndoScript.Run(e.ctx, e.rdb, []string{k.Units, k.Tix, k.Buyers, k.JTI, k.Pending}, order).Int64()
	require.NoError(e.t, err)
	return n
}

func (e *luaEnv) settle(order, to, data string) int64 {
	e.t.Helper()
	k := e.k
	n, err := checkout.SettleScript.Run(e.ctx, e.rdb, []string{k.Units, k.Holds, k.Orders, k.Buyers, k.Ev},
		order, to, data, sale.EventStreamLen).Int64()
	require.NoError(e.t, err)
	return n
}

var openCfg = map[string]string{"state": "open", "starts": "0", "ends": "0", "hold_ttl": "0", "per_user": "2"}

func cfgWith(kv ...string) map[string]string {
	c := maps.Clone(openCfg)
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i]] = kv[i+1]
	}
	return c
}

// reserveBase: 10 units; u1 was admitted with j1 reserving 2, u2 with j2
// reserving 1; 7 units unreserved.
func reserveBase() redisState {
	return redisState{
		Cfg:   openCfg,
		Units: units(10, 3, 0, 0, 10),
		Tix:   map[string]string{"u1": "j1|100|400|2", "u2": "j2|100|400|1"},
		Adm:   map[string]float64{"u1": 400000, "u2": 400000},
		Stats: map[string]string{"admitted_total": "2"},
	}
}

func TestReserveScript(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, b testdb.Backend) {
		type call struct {
			user, jti string
			qty       int
		}
		tests := []struct {
			name  string
			seed  func(s *redisState)
			call  call
			reply []string
			want  func(s *redisState) // nil: the state is unchanged
		}{
			{name: "no units: no state", seed: func(s *redisState) { s.Units = nil },
				call: call{"u1", "j1", 1}, reply: []string{"nostate"}},
			{name: "no live copy: no state", seed: func(s *redisState) { s.Cfg = nil },
				call: call{"u1", "j1", 1}, reply: []string{"nostate"}},
			{name: "closed sale", seed: func(s *redisState) { s.Cfg = cfgWith("state", "closed") },
				call: call{"u1", "j1", 1}, reply: []string{"closed"}},
			{name: "sale past its end", seed: func(s *redisState) { s.Cfg = cfgWith("ends", "1000") },
				call: call{"u1", "j1", 1}, reply: []string{"closed"}},
			{name: "used ticket", seed: func(s *redisState) { s.JTI = map[string]string{"j1": "o-old"} },
				call: call{"u1", "j1", 1}, reply: []string{"used"}},
			{name: "used ticket whose order is pending", seed: func(s *redisState) {
				s.Units = units(9, 3, 0, 1, 10)
				s.JTI = map[string]string{"j1": "o-old"}
				s.Buyers = map[string]string{"u1": "o-old"}
				s.Pending = map[string]string{"o-old": pm("u1", 1, "j1", false, "sold", 1000)}
			}, call: call{"u1", "j1", 1}, reply: []string{"inflight", "o-old"}},
			{name: "user bought already", seed: func(s *redisState) {
				s.Units = units(9, 3, 0, 1, 10)
				s.Buyers = map[string]string{"u1": "o-old"}
				s.JTI = map[string]string{"j0": "o-old"}
			}, call: call{"u1", "j1", 1}, reply: []string{"bought", "o-old"}},
			{name: "user's other order still pending", seed: func(s *redisState) {
				s.Units = units(9, 3, 0, 1, 10)
				s.Buyers = map[string]string{"u1": "o-old"}
				s.JTI = map[string]string{"j0": "o-old"}
				s.Pending = map[string]string{"o-old": pm("u1", 1, "j0", false, "sold", 1000)}
			}, call: call{"u1", "j1", 1}, reply: []string{"inflight", "o-old"}},
			{name: "all of its reservation", call: call{"u1", "j1", 2}, reply: []string{"ok", "sold"},
				want: func(s *redisState) {
					s.Units = units(8, 1, 0, 2, 10)
					s.Tix["u1"] = "j1|100|400|0"
					s.Buyers = map[string]string{"u1": "o-new"}
					s.JTI = map[string]string{"j1": "o-new"}
					s.Pending = map[string]string{"o-new": pm("u1", 2, "j1", true, "sold", nowMark)}
				}},
			{name: "part of its reservation", call: call{"u1", "j1", 1}, reply: []string{"ok", "sold"},
				want: func(s *redisState) {
					s.Units = units(9, 2, 0, 1, 10)
					s.Tix["u1"] = "j1|100|400|1"
					s.Buyers = map[string]string{"u1": "o-new"}
					s.JTI = map[string]string{"j1": "o-new"}
					s.Pending = map[string]string{"o-new": pm("u1", 1, "j1", true, "sold", nowMark)}
				}},
			{name: "its reservation while none is unreserved", seed: func(s *redisState) { s.Units = units(3, 3, 0, 7, 10) },
				call: call{"u1", "j1", 2}, reply: []string{"ok", "sold"},
				want: func(s *redisState) {
					s.Units = units(1, 1, 0, 9, 10)
					s.Tix["u1"] = "j1|100|400|0"
					s.Buyers = map[string]string{"u1": "o-new"}
					s.JTI = map[string]string{"j1": "o-new"}
					s.Pending = map[string]string{"o-new": pm("u1", 2, "j1", true, "sold", nowMark)}
				}},
			{name: "more than its reservation, though units are unreserved", call: call{"u2", "j2", 2},
				reply: []string{"sold_out"}},
			{name: "no admission record: from unreserved units", call: call{"u3", "j3", 2}, reply: []string{"ok", "sold"},
				want: func(s *redisState) {
					s.Units = units(8, 3, 0, 2, 10)
					s.Buyers = map[string]string{"u3": "o-new"}
					s.JTI = map[string]string{"j3": "o-new"}
					s.Pending = map[string]string{"o-new": pm("u3", 2, "j3", false, "sold", nowMark)}
				}},
			{name: "no admission record: fewer unreserved than asked", seed: func(s *redisState) { s.Units = units(4, 3, 0, 6, 10) },
				call: call{"u3", "j3", 2}, reply: []string{"sold_out"}},
			{name: "no admission record: nothing unreserved", seed: func(s *redisState) { s.Units = units(3, 3, 0, 7, 10) },
				call: call{"u3", "j3", 1}, reply: []string{"sold_out"}},
			{name: "an older ticket of a re-admitted user: from unreserved units", call: call{"u1", "j-old", 1},
				reply: []string{"ok", "sold"},
				want: func(s *redisState) {
					s.Units = units(9, 3, 0, 1, 10)
					s.Buyers = map[string]string{"u1": "o-new"}
					s.JTI = map[string]string{"j-old": "o-new"}
					s.Pending = map[string]string{"o-new": pm("u1", 1, "j-old", false, "sold", nowMark)}
				}},
			{name: "hold_ttl > 0: held", seed: func(s *redisState) { s.Cfg = cfgWith("hold_ttl", "60") },
				call: call{"u1", "j1", 1}, reply: []string{"ok", "held"},
				want: func(s *redisState) {
					s.Units = units(9, 2, 1, 0, 10)
					s.Tix["u1"] = "j1|100|400|1"
					s.Buyers = map[string]string{"u1": "o-new"}
					s.JTI = map[string]string{"j1": "o-new"}
					s.Pending = map[string]string{"o-new": pm("u1", 1, "j1", true, "held", nowMark)}
				}},
			{name: "hold_ttl > 0 from unreserved: held", seed: func(s *redisState) { s.Cfg = cfgWith("hold_ttl", "60") },
				call: call{"u3", "j3", 1}, reply: []string{"ok", "held"},
				want: func(s *redisState) {
					s.Units = units(9, 3, 1, 0, 10)
					s.Buyers = map[string]string{"u3": "o-new"}
					s.JTI = map[string]string{"j3": "o-new"}
					s.Pending = map[string]string{"o-new": pm("u3", 1, "j3", false, "held", nowMark)}
				}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newLuaEnvOn(t, b)
				before := reserveBase()
				if tt.seed != nil {
					tt.seed(&before)
				}
				e.seed(before)
				require.Equal(t, tt.reply, e.reserve(tt.call.user, tt.call.jti, tt.call.qty, "o-new"))
				want := before.clone()
				if tt.want != nil {
					tt.want(&want)
				}
				got := e.dump()
				require.Equal(t, want, got)
				requireUnits(t, got)
			})
		}
	})
}

// finalizeBase: u1 (admitted with j1, reserving 2) bought 1 unit from its
// reservation as order o1, which MySQL now has; u2 holds 1 reservation.
func finalizeBase() redisState {
	return redisState{
		Cfg:     openCfg,
		Units:   units(9, 2, 0, 1, 10),
		Tix:     map[string]string{"u1": "j1|100|400|1", "u2": "j2|100|400|1"},
		Adm:     map[string]float64{"u1": 400000, "u2": 400000},
		Buyers:  map[string]string{"u1": "o1"},
		JTI:     map[string]string{"j1": "o1"},
		Pending: map[string]string{"o1": pm("u1", 1, "j1", true, "sold", 1000)},
	}
}

func TestFinalizeScript(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, b testdb.Backend) {
		const data = `{"id":"o1"}`
		tests := []struct {
			name   string
			seed   func(s *redisState)
			holdMs int64
			want   func(s *redisState)
		}{
			{name: "sold: the rest of the reservation returns, the admission ends", want: func(s *redisState) {
				s.Units = units(9, 1, 0, 1, 10)
				s.Tix = map[string]string{"u2": "j2|100|400|1"}
				s.Adm = map[string]float64{"u2": 400000}
				s.Pending = nil
			}},
			{name: "held: a hold is added", holdMs: 1_900_000_000_000, seed: func(s *redisState) {
				s.Cfg = cfgWith("hold_ttl", "60")
				s.Units = units(9, 2, 1, 0, 10)
				s.Pending = map[string]string{"o1": pm("u1", 1, "j1", true, "held", 1000)}
			}, want: func(s *redisState) {
				s.Units = units(9, 1, 1, 0, 10)
				s.Tix = map[string]string{"u2": "j2|100|400|1"}
				s.Adm = map[string]float64{"u2": 400000}
				s.Pending = nil
				s.Holds = map[string]float64{"o1": 1_900_000_000_000}
				s.Orders = map[string]string{"o1": sale.HoldRecord("u1", 1)}
			}},
			{name: "bought from unreserved units: the user's newer admission stands", seed: func(s *redisState) {
				s.Tix["u1"] = "j7|200|500|2"
				s.Units = units(9, 3, 0, 1, 10)
				s.Pending = map[string]string{"o1": pm("u1", 1, "j1", false, "sold", 1000)}
			}, want: func(s *redisState) {
				s.Pending = nil
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newLuaEnvOn(t, b)
				before := finalizeBase()
				if tt.seed != nil {
					tt.seed(&before)
				}
				e.seed(before)
				require.EqualValues(t, 1, e.finalize("o1", tt.holdMs, data))
				want := before.clone()
				tt.want(&want)
				want.Stats = map[string]string{"orders_total": "1"}
				want.Events = []map[string]string{{"t": "order", "u": "u1", "d": data}}
				got := e.dump()
				require.Equal(t, want, got)
				requireUnits(t, got)

				// A second call (a retry, reconciliation) changes nothing.
				require.EqualValues(t, 0, e.finalize("o1", tt.holdMs, data))
				require.Equal(t, want, e.dump())
			})
		}

		t.Run("unknown order", func(t *testing.T) {
			t.Parallel()
			e := newLuaEnvOn(t, b)
			e.seed(finalizeBase())
			require.EqualValues(t, 0, e.finalize("o-unknown", 0, data))
			require.Equal(t, finalizeBase(), e.dump())
		})
	})
}

func TestUndoScript(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, b testdb.Backend) {
		// undo puts back exactly the state before reserve.
		tests := []struct {
			name      string
			seed      func(s *redisState)
			user, jti string
			qty       int
			kind      string
		}{
			{name: "from its reservation", user: "u1", jti: "j1", qty: 2, kind: "sold"},
			{name: "part of its reservation", user: "u1", jti: "j1", qty: 1, kind: "sold"},
			{name: "from unreserved units", user: "u3", jti: "j3", qty: 2, kind: "sold"},
			{name: "held, from its reservation", seed: func(s *redisState) { s.Cfg = cfgWith("hold_ttl", "60") },
				user: "u1", jti: "j1", qty: 1, kind: "held"},
			{name: "held, from unreserved units", seed: func(s *redisState) { s.Cfg = cfgWith("hold_ttl", "60") },
				user: "u3", jti: "j3", qty: 1, kind: "held"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newLuaEnvOn(t, b)
				before := reserveBase()
				if tt.seed != nil {
					tt.seed(&before)
				}
				e.seed(before)
				require.Equal(t, []string{"ok", tt.kind}, e.reserve(tt.user, tt.jti, tt.qty, "o1"))
				require.NotEqual(t, before, e.dump())

				require.EqualValues(t, 1, e.undo("o1"))
				require.Equal(t, before, e.dump())
				require.EqualValues(t, 0, e.undo("o1"), "a second undo")
				require.Equal(t, before, e.dump())
			})
		}

		t.Run("admission record gone: the units return unreserved", func(t *testing.T) {
			t.Parallel()
			e := newLuaEnvOn(t, b)
			// u1 bought 1 of its 2 reserved units (o1, pending); then its ticket
			// expired and the admitter ended the admission, releasing the other.
			s := reserveBase()
			s.Units = units(9, 1, 0, 1, 10)
			s.Tix = map[string]string{"u2": "j2|100|400|1"}
			s.Adm = map[string]float64{"u2": 400000}
			s.Buyers = map[string]string{"u1": "o1"}
			s.JTI = map[string]string{"j1": "o1"}
			s.Pending = map[string]string{"o1": pm("u1", 1, "j1", true, "sold", 1000)}
			e.seed(s)
			require.EqualValues(t, 1, e.undo("o1"))
			want := s.clone()
			want.Units = units(10, 1, 0, 0, 10)
			want.Buyers, want.JTI, want.Pending = nil, nil, nil
			got := e.dump()
			require.Equal(t, want, got)
			requireUnits(t, got)
		})

		t.Run("another order's buyer and ticket are kept", func(t *testing.T) {
			t.Parallel()
			e := newLuaEnvOn(t, b)
			s := reserveBase()
			s.Units = units(9, 3, 0, 1, 10)
			s.Buyers = map[string]string{"u3": "o2"}
			s.JTI = map[string]string{"j3": "o2"}
			s.Pending = map[string]string{"o1": pm("u3", 1, "j3", false, "sold", 1000)}
			e.seed(s)
			require.EqualValues(t, 1, e.undo("o1"))
			want := s.clone()
			want.Units = units(10, 3, 0, 0, 10)
			want.Pending = nil
			require.Equal(t, want, e.dump())
		})
	})
}

// settleBase: o1 holds 2 units of u1; u2 paid for o2.
func settleBase() redisState {
	return redisState{
		Cfg:    cfgWith("hold_ttl", "60"),
		Units:  units(7, 0, 2, 1, 10),
		Buyers: map[string]string{"u1": "o1", "u2": "o2"},
		JTI:    map[string]string{"j1": "o1", "j2": "o2"},
		Holds:  map[string]float64{"o1": 1_900_000_000_000},
		Orders: map[string]string{"o1": sale.HoldRecord("u1", 2)},
	}
}

func TestSettleScript(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, b testdb.Backend) {
		const data = `{"id":"o1","status":"x"}`
		tests := []struct {
			to   string
			want func(s *redisState)
		}{
			{to: "paid", want: func(s *redisState) { s.Units = units(7, 0, 0, 3, 10) }},
			{to: "cancelled", want: func(s *redisState) {
				s.Units = units(9, 0, 0, 1, 10)
				s.Buyers = map[string]string{"u2": "o2"}
			}},
			{to: "expired", want: func(s *redisState) {
				s.Units = units(9, 0, 0, 1, 10)
				s.Buyers = map[string]string{"u2": "o2"}
			}},
		}
		for _, tt := range tests {
			t.Run(tt.to, func(t *testing.T) {
				t.Parallel()
				e := newLuaEnvOn(t, b)
				before := settleBase()
				e.seed(before)
				require.EqualValues(t, 1, e.settle("o1", tt.to, data))
				want := before.clone()
				want.Holds, want.Orders = nil, nil
				want.Events = []map[string]string{{"t": "order", "u": "u1", "d": data}}
				tt.want(&want)
				got := e.dump()
				require.Equal(t, want, got)
				requireUnits(t, got)

				for _, again := range []string{"paid", "cancelled", "expired"} {
					require.EqualValues(t, 0, e.settle("o1", again, data), "settle again as %s", again)
				}
				require.Equal(t, want, e.dump())
			})
		}
	})
}

func TestRestoreScript(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, b testdb.Backend) {
		tests := []struct {
			name              string
			seed              func(s *redisState)
			stock, sold, held int
			written           int64
			want              map[string]string
		}{
			{name: "no units, no admissions", stock: 10, sold: 3, held: 2, written: 1, want: units(5, 0, 2, 3, 10)},
			{name: "surviving admissions keep their reservations", seed: func(s *redisState) {
				s.Tix = map[string]string{"u1": "j1|100|400|2", "u2": "j2|100|400|1"}
			}, stock: 10, sold: 3, held: 2, written: 1, want: units(5, 3, 2, 3, 10)},
			{name: "reservations beyond the remaining units are capped", seed: func(s *redisState) {
				s.Tix = map[string]string{"u1": "j1|100|400|2", "u2": "j2|100|400|2"}
			}, stock: 10, sold: 5, held: 2, written: 1, want: units(3, 3, 2, 5, 10)},
			{name: "units present: never re-seeded", seed: func(s *redisState) {
				s.Units = units(4, 1, 1, 5, 10)
				s.Tix = map[string]string{"u1": "j1|100|400|1"}
			}, stock: 10, sold: 0, held: 0, written: 0, want: units(4, 1, 1, 5, 10)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newLuaEnvOn(t, b)
				before := redisState{Cfg: openCfg}
				if tt.seed != nil {
					tt.seed(&before)
				}
				e.seed(before)
				n, err := checkout.RestoreScript.Run(e.ctx, e.rdb, []string{e.k.Units, e.k.Tix}, tt.stock, tt.sold, tt.held).Int64()
				require.NoError(t, err)
				require.Equal(t, tt.written, n)
				want := before.clone()
				want.Units = tt.want
				got := e.dump()
				require.Equal(t, want, got)
				requireUnits(t, got)
			})
		}
	})
}

func TestUnlockScript(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, b testdb.Backend) {
		tests := []struct {
			name    string
			holder  string // "" for no lock
			caller  string
			deleted int64
		}{
			{name: "owner", holder: "tok-a", caller: "tok-a", deleted: 1},
			{name: "not the owner", holder: "tok-a", caller: "tok-b", deleted: 0},
			{name: "no lock", holder: "", caller: "tok-a", deleted: 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newLuaEnvOn(t, b)
				if tt.holder != "" {
					require.NoError(t, e.rdb.Set(e.ctx, e.k.Rebuild, tt.holder, time.Minute).Err())
				}
				n, err := checkout.UnlockScript.Run(e.ctx, e.rdb, []string{e.k.Rebuild}, tt.caller).Int64()
				require.NoError(t, err)
				require.Equal(t, tt.deleted, n)
				v, err := e.rdb.Get(e.ctx, e.k.Rebuild).Result()
				if tt.holder == "" || tt.deleted == 1 {
					require.ErrorIs(t, err, redis.Nil)
					return
				}
				require.NoError(t, err)
				require.Equal(t, tt.holder, v)
				ttl, err := e.rdb.PTTL(e.ctx, e.k.Rebuild).Result()
				require.NoError(t, err)
				require.Greater(t, ttl, time.Duration(0), "the lock keeps its TTL")
			})
		}
	})
}
