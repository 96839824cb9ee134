package testdb

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
)

// Backend is a Redis that the Redis-touching suites run on: one server, or
// the local Redis Cluster (--redis-cluster). A suite that passes on one
// server only may still send a script keys of two slots, a MULTI across
// slots or a KEYS that sees one master: running it on both finds those.
type Backend struct {
	Name    string // the subtest's name: "redis" or "cluster"
	Cluster bool
}

// Backends are the Redis setups every Redis-touching suite runs on.
var Backends = []Backend{{Name: "redis"}, {Name: "cluster", Cluster: true}}

// URL is the backend's --redis-url (read as a cluster URL when Cluster).
func (b Backend) URL() string {
	if b.Cluster {
		return RedisClusterURL()
	}
	return RedisURL()
}

// Redis is a client of the backend and a key prefix of the test's own,
// whose keys are deleted (on every master) when the test ends.
func (b Backend) Redis(t testing.TB) (redis.UniversalClient, sale.Keyspace) {
	t.Helper()
	if b.Cluster {
		return RedisCluster(t)
	}
	return Redis(t)
}

// EachBackend runs fn once per backend, as subtests named after them
// ("redis", "cluster") that run in parallel with each other and with the
// test's other parallel subtests: the parent must do nothing after it
// that the subtests' results depend on (they start when it returns).
// `go test -run 'TestX/cluster'` runs one.
func EachBackend(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range Backends {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// EachBackendInTurn is EachBackend with the backends one after the other,
// for storms whose bounds (a 5xx-free answer within the stores' timeouts)
// assume they do not share the two cores with their own twin.
func EachBackendInTurn(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range Backends {
		t.Run(b.Name, func(t *testing.T) { fn(t, b) })
	}
}

// EachRedis is EachBackend with a client and a key prefix of the
// subtest's own on each.
func EachRedis(t *testing.T, fn func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace)) {
	t.Helper()
	EachBackend(t, func(t *testing.T, b Backend) {
		rdb, ks := b.Redis(t)
		fn(t, rdb, ks)
	})
}

// ForEachServer calls fn with a client of each server that holds keys:
// every master of a cluster, or the one server. What a test does to "all
// of Redis" (SCAN, FLUSHALL, INFO, SAVE) must go through it: on a cluster
// client such a command reaches one node only.
func ForEachServer(ctx context.Context, rdb redis.UniversalClient, fn func(ctx context.Context, c *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	default:
		return errors.New("testdb: a *redis.Client or a *redis.ClusterClient is needed to reach each server")
	}
}

// ServerOf is a client of the server that holds key: the master of its
// slot on a cluster, else the one server. INFO's run_id or a SAVE that is
// about a sale's keys must go there.
func ServerOf(ctx context.Context, rdb redis.UniversalClient, key string) (*redis.Client, error) {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	case *redis.Client:
		return c, nil
	default:
		return nil, errors.New("testdb: a *redis.Client or a *redis.ClusterClient is needed to find a key's server")
	}
}

// PrefixKeys lists every key whose name starts with prefix + ":", on every
// server (KEYS or one SCAN on a cluster client sees one master only).
func PrefixKeys(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]string, error) {
	return MatchKeys(ctx, rdb, escapeGlob(prefix)+":*")
}

// MatchKeys lists the keys that match a SCAN pattern, on every server.
func MatchKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	var (
		keys []string
		mu   sync.Mutex // ForEachMaster calls fn from a goroutine per master
	)
	err := ForEachServer(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		var mine []string
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mine = append(mine, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return err
		}
		mu.Lock()
		keys = append(keys, mine...)
		mu.Unlock()
		return nil
	})
	return keys, err
}

// DeletePrefix deletes every key of the prefix, on every server: the
// "Redis flush" of a test that shares its Redis with others. The keys of
// one hash tag (one sale's) go in one command, all at once, as a FLUSHALL
// or a master restarted empty takes them; on a cluster a command may not
// name keys of two slots, so the rest go one a command. It returns how
// many keys it deleted.
func DeletePrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) (int, error) {
	keys, err := PrefixKeys(ctx, rdb, prefix)
	if err != nil {
		return 0, err
	}
	byTag := map[string][]string{}
	var untagged []string
	for _, k := range keys {
		if tag, ok := hashTag(k); ok {
			byTag[tag] = append(byTag[tag], k)
		} else {
			untagged = append(untagged, k)
		}
	}
	pipe := rdb.Pipeline()
	for _, group := range byTag {
		for len(group) > 0 {
			n := min(len(group), 500)
			pipe.Unlink(ctx, group[:n]...)
			group = group[n:]
		}
	}
	for _, k := range untagged {
		pipe.Unlink(ctx, k)
	}
	if pipe.Len() == 0 {
		return 0, nil
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cmds {
		n += int(c.(*redis.IntCmd).Val())
	}
	return n, nil
}

// FlushPrefix is DeletePrefix that fails the test on an error.
func FlushPrefix(t testing.TB, rdb redis.UniversalClient, prefix string) int {
	t.Helper()
	n, err := DeletePrefix(context.Background(), rdb, prefix)
	require.NoError(t, err, "delete the keys of prefix %q", prefix)
	return n
}

// hashTag is the part of key that Redis Cluster hashes when it has one:
// between the first "{" and the next "}", if not empty.
func hashTag(key string) (string, bool) {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return "", false
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return "", false
	}
	return key[i+1 : i+1+j], true
}

// escapeGlob quotes the characters SCAN's MATCH reads as a pattern.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
