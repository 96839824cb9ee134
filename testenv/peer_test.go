package testenv_test

import (
	"net/http"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestPeerOnEachBackend: a peer of a node runs on the node's Redis, the
// cluster too (a peer that fell back to the one Redis would share the key
// prefix with the node and nothing else), and sees the node's sales.
func TestPeerOnEachBackend(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		p := s.Peer(t)
		require.Equal(t, s.Config.RedisURL, p.Config.RedisURL)
		require.Equal(t, b.Cluster, p.Config.RedisCluster)
		_, cluster := p.Node.Redis.(*redis.ClusterClient)
		require.Equal(t, b.Cluster, cluster, "the peer's client is a cluster client on the cluster")
		id := s.CreateSale(t, nil)["id"].(string)
		r := p.Do(t, "GET", "/api/v1/admin/sales/"+id, p.AdminToken, nil)
		require.Equal(t, http.StatusOK, r.Status, "the peer sees the node's sale: %s", r.Body)
	})
}
