package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/testenv"
)

// The address plan: bots sit in their K /24s on bot-addrs addresses each;
// every honest shopper has a /24 of its own, outside the farms'.
func TestPlanAddresses(t *testing.T) {
	c := &farmConfig{runID: "t", prefixes: 3, bots: 300, botAddrs: 20, honest: 600}
	all := plan(c, rand.New(rand.NewPCG(1, 2)))
	require.Len(t, all, 900)
	botAddrs := map[netip.Prefix]map[netip.Addr]bool{}
	honest24 := map[netip.Prefix]bool{}
	users := map[string]bool{}
	for _, s := range all {
		require.False(t, users[s.user], "user %s twice", s.user)
		users[s.user] = true
		p := netip.PrefixFrom(s.addr, 24).Masked()
		if s.bot {
			require.Equal(t, farmPrefix(s.farm), p)
			if botAddrs[p] == nil {
				botAddrs[p] = map[netip.Addr]bool{}
			}
			botAddrs[p][s.addr] = true
			continue
		}
		require.True(t, netip.MustParsePrefix("10.0.0.0/8").Contains(s.addr), "%s", s.addr)
		require.False(t, honest24[p], "two honest shoppers in %s", p)
		honest24[p] = true
	}
	require.Len(t, botAddrs, 3)
	for p, addrs := range botAddrs {
		require.Len(t, addrs, 20, "%s", p)
	}
	require.Len(t, honest24, 600)
	for k := range 10 {
		require.True(t, farmPrefix(k).IsValid() && farmPrefix(k).Bits() == 24)
		require.False(t, netip.MustParsePrefix("10.0.0.0/8").Overlaps(farmPrefix(k)))
	}
}

// With proof of work, one prefix's solves are serialized (its bots join at
// the running sum of their solve times); honest shoppers solve after they
// arrive, each on their own.
func TestScheduleSerializesAFarmsSolves(t *testing.T) {
	c := &farmConfig{runID: "t", prefixes: 2, bots: 6, botAddrs: 254, honest: 2, spread: time.Second,
		botTry: time.Microsecond, honestTry: 10 * time.Microsecond}
	all := plan(c, rand.New(rand.NewPCG(1, 2)))
	for i, s := range all {
		s.tries = uint64(1000 * (i + 1))
	}
	schedule(c, all, rand.New(rand.NewPCG(1, 2)))
	// prefix 0 has bots 0, 2, 4 (1000, 3000, 5000 tries); prefix 1 has 1, 3, 5.
	ms := func(i int) time.Duration { return time.Duration(i) * time.Millisecond }
	require.Equal(t, []time.Duration{ms(1), ms(2), ms(4), ms(6), ms(9), ms(12)},
		[]time.Duration{all[0].at, all[1].at, all[2].at, all[3].at, all[4].at, all[5].at})
	for _, s := range all[6:] {
		solve := time.Duration(s.tries) * c.honestTry
		require.GreaterOrEqual(t, s.at, solve)
		require.LessOrEqual(t, s.at, solve+c.spread)
	}
}

// farmNode is a node that believes X-Forwarded-For from loopback, with the
// default rate limits or none.
func farmNode(t *testing.T, limits bool) *testenv.Server {
	lo, err := clientaddr.Parse("127.0.0.1/32")
	require.NoError(t, err)
	return testenv.Start(t, func(c *node.Config) {
		c.TrustedProxies = lo
		if limits {
			d := ratelimit.DefaultConfig()
			c.IPRate, c.IPBurst, c.UserRate, c.UserBurst = d.IPRate, d.IPBurst, d.UserRate, d.UserBurst
		}
	})
}

func smallFarm(s *testenv.Server) *farmConfig {
	c := &farmConfig{url: s.URL, secret: string(s.Secret), adminToken: s.AdminToken, runID: "bf" + testenv.RandomID(),
		prefixes: 2, bots: 80, botAddrs: 4, botPoll: 200 * time.Millisecond, botConns: 64,
		honest: 30, spread: time.Second, units: 10, rate: 5, maxActive: 10, ticketTTL: 10, abandon: 5,
		queueMode: "fifo", challenge: "none", difficulty: 8, honestTry: 2 * time.Microsecond,
		banTop: 2, banMinUsers: 10, maxTime: time.Minute, reqTimeout: 10 * time.Second, seed: 1,
		out: io.Discard, log: io.Discard}
	if testing.Verbose() {
		c.out, c.log = os.Stdout, os.Stderr
	}
	return c
}

// Without defences a farm that joins at once takes the sale; the run
// counts every unit the sale's summary counts.
func TestBotfarmWithoutDefencesBotsWin(t *testing.T) {
	t.Parallel()
	s := farmNode(t, false)
	c := smallFarm(s)
	r, err := runFarm(context.Background(), c)
	require.NoError(t, err)
	require.EqualValues(t, c.units, r.BotsSold+r.HonestSold, "every unit sold: %+v", r)
	require.Equal(t, r.SummarySold, r.BotsSold+r.HonestSold)
	require.True(t, r.Consistent)
	require.Greater(t, r.BotsSold, r.HonestSold, "%+v", r)
}

// With max_users_per_ip, proof of work and a ban of the top sources (in a
// prequeue sale, before its start) the honest shoppers are never refused with 403 or 429 and buy most units;
// the farm meets ip_limit and the ban.
func TestBotfarmWithDefences(t *testing.T) {
	t.Parallel()
	s := farmNode(t, true)
	c := smallFarm(s)
	c.challenge, c.maxUsersPerIP, c.banAfter = "pow", 5, 1500*time.Millisecond
	// Everyone is in line before the start (places drawn at random); the
	// ban comes before it.
	c.queueMode, c.prequeue = "prequeue", 3*time.Second
	// Slow machines per prefix: a bot proof every 25 ms or so.
	c.botTry = 100 * time.Microsecond
	r, err := runFarm(context.Background(), c)
	require.NoError(t, err)
	require.Zero(t, r.HonestRefused, "honest: %s", r.HonestCodes)
	require.EqualValues(t, c.units, r.BotsSold+r.HonestSold, "every unit sold: %+v", r)
	require.True(t, r.Consistent)
	require.Greater(t, r.HonestSold, r.BotsSold, "%+v", r)
	require.ElementsMatch(t, []string{farmPrefix(0).String(), farmPrefix(1).String()}, r.Bans)
	require.Contains(t, r.BotCodes, "join 403 ip_limit")
}

// join --xff: every request of a run is its own address, all in 10.0.0.0/8.
func TestXFFAddrsAreDistinct(t *testing.T) {
	seen := map[netip.Addr]bool{}
	for i := int64(1); i <= 70_000; i++ {
		a := xffAddr(i)
		require.True(t, netip.MustParsePrefix("10.0.0.0/8").Contains(a), "%s", a)
		require.False(t, seen[a], "%s twice", a)
		seen[a] = true
	}
	require.Equal(t, "10.0.0.1", xffAddr(1).String())
	require.Equal(t, "10.1.0.0", xffAddr(65536).String())
}
