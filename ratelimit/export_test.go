package ratelimit

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
)

// NewSplit is New as on Redis Cluster: one call per key, in one pipeline,
// and a refund when one limit refuses what the other allowed. The tests run
// it on the one test Redis, which has no Cluster.
func NewSplit(cfg Config, rdb redis.UniversalClient, prefix string) (*Limiter, error) {
	l, err := New(cfg, rdb, prefix)
	if err != nil {
		return nil, err
	}
	l.split = true
	return l, nil
}

// NewBefore7 is New (split: NewSplit) with gcra_spend as it runs on a
// Redis older than 7.0 (no SET NX GET: a GET, then a SET), on the test
// Redis, which is newer.
func NewBefore7(split bool) func(Config, redis.UniversalClient, string) (*Limiter, error) {
	return func(cfg Config, rdb redis.UniversalClient, prefix string) (*Limiter, error) {
		l, err := New(cfg, rdb, prefix)
		if err != nil {
			return nil, err
		}
		const probe = "redis.REDIS_VERSION_NUM ~= nil"
		if !strings.Contains(GCRALua, probe) {
			return nil, fmt.Errorf("gcra_fn.lua no longer probes %q", probe)
		}
		l.script = sale.NewScript(strings.Replace(GCRALua, probe, "false", 1) + "\n" + gcraLua)
		l.split = split
		return l, nil
	}
}

// LocalLen is how many limiters the pre-filter keeps for addresses and for
// users.
func (l *Limiter) LocalLen() (ip, user int) {
	if l.ip.on {
		ip = l.ip.local.len()
	}
	if l.user.on {
		user = l.user.local.len()
	}
	return ip, user
}

// PreFilter is Allow's local step alone: nil when the pre-filter lets the
// request on to Redis.
func (l *Limiter) PreFilter(addr netip.Prefix, user string) error {
	_, _, err := l.preFilter(time.Now(), addr, user)
	return err
}

// Sweep runs the periodic sweep of idle pre-filter limiters at now.
func (l *Limiter) Sweep(now time.Time) { l.sweep(now) }
