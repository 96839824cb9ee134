package faults

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// RedisCluster is a private Redis Cluster of 3 masters (no replicas), each
// a redis-server of the test's own that the test may kill and restart: the
// fault tests stop one of its masters, never one of the shared cluster
// deploy/redis-cluster.sh runs (other tests use that one at the same time).
type RedisCluster struct {
	// Masters are the cluster's servers. A master restarted after Kill
	// keeps its node id and slots (its nodes.conf is in its directory) and
	// comes back empty, or with the snapshot a SAVE left.
	Masters []*Redis
	// URL is the cluster's URL, for --redis-url with --redis-cluster.
	URL string
}

// clusterNodeTimeout is how long the other masters wait before they mark
// a master that does not answer as failed: short, so the test sees the
// outage as a deployment would, and the cluster heals soon after the
// restart. Without full coverage required, the other masters go on
// serving their slots meanwhile (as a deployment should be set up: one
// master down must not stop every sale).
const clusterNodeTimeout = "2000"

// StartRedisCluster starts 3 redis-servers with cluster mode on, on free
// ports and temporary directories, gives each a third of the slots, joins
// them, and waits until the cluster answers on every master (at most 30 s).
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	bin := testenv.RequireTool(t, "redis-server")
	c := &RedisCluster{}
	var addrs []string
	for range 3 {
		dir := shortTempDir(t, "fscluster")
		port := FreePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		argv := []string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--protected-mode", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", clusterNodeTimeout, "--cluster-require-full-coverage", "no"}
		client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
		t.Cleanup(func() { client.Close() })
		r := &Redis{Addr: addr, URL: "redis://" + addr, Dir: dir}
		// at first it answers PING only: its slots come below
		r.Process = newProcess(t, "redis-server (cluster) :"+strconv.Itoa(port), argv, filepath.Join(dir, "redis.log"),
			func(ctx context.Context) error {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				return client.Ping(cctx).Err()
			})
		r.Start()
		// from now on (a restart) ready means serving its slots again
		r.ready = func(ctx context.Context) error { return clusterOK(ctx, client) }
		c.Masters = append(c.Masters, r)
		addrs = append(addrs, addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, m := range c.Masters {
		cl := m.Client(t)
		lo, hi := slotRange(i, len(c.Masters))
		require.NoError(t, cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(), "slots %d-%d to %s", lo, hi, m.Addr)
		if i > 0 {
			host, port, _ := strings.Cut(m.Addr, ":")
			require.NoError(t, c.Masters[0].Client(t).ClusterMeet(ctx, host, port).Err(), "meet %s", m.Addr)
		}
	}
	for _, m := range c.Masters {
		cl := m.Client(t)
		for {
			err := clusterOK(ctx, cl)
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the private cluster is not up on %s within 30 s: %v", m.Addr, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	c.URL = "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	return c
}

// clusterOK is nil once the node says the cluster is ok and knows all 3
// masters.
func clusterOK(ctx context.Context, c *redis.Client) error {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := c.ClusterInfo(cctx).Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
		return fmt.Errorf("cluster not ready: %s", strings.Join(strings.Fields(info)[:min(3, len(strings.Fields(info)))], " "))
	}
	return nil
}

// Client is a cluster client of this cluster, closed when the test ends.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	opt, err := redis.ParseClusterURL(c.URL)
	require.NoError(t, err)
	cl := redis.NewClusterClient(opt)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// MasterFor is the master that holds key's slot: the one to kill for an
// outage of that key (a sale's keys share its slot). Any master that
// answers names the slot (CLUSTER KEYSLOT); the slots are where
// StartRedisCluster put them.
func (c *RedisCluster) MasterFor(t testing.TB, key string) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	for _, m := range c.Masters {
		var slot int64
		if slot, err = m.Client(t).ClusterKeySlot(ctx, key).Result(); err != nil {
			continue
		}
		for i, x := range c.Masters {
			if lo, hi := slotRange(i, len(c.Masters)); slot >= int64(lo) && slot <= int64(hi) {
				return x
			}
		}
	}
	t.Fatalf("no master of the private cluster names the slot of %q: %v", key, err)
	return nil
}

// slotRange is the slots StartRedisCluster gives the i-th of n masters.
func slotRange(i, n int) (lo, hi int) {
	const slots = 16384
	return i * slots / n, (i+1)*slots/n - 1
}
