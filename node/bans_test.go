package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// TestBans: bans of users, addresses and CIDRs, global or per sale, act on
// every node within a second: a banned shopper's calls are 403 banned
// (checkout with a valid ticket too), their sockets close with 4403, a user
// ban ends their place and live admission (its units return at once);
// expired and lifted bans stop acting by themselves; bans live in MySQL, so
// a Redis flush changes nothing.
func TestBans(t *testing.T) {
	t.Parallel()
	lo, err := clientaddr.Parse("127.0.0.1/32")
	require.NoError(t, err)
	trust := func(c *node.Config) { c.TrustedProxies = lo }
	a := testenv.Start(t, trust)
	b := a.Peer(t, trust)
	ctx := context.Background()
	open := a.CreateSale(t, map[string]any{"stock": 5, "admission_rate": 1000})["id"].(string)
	paused := a.CreateSale(t, map[string]any{"stock": 5})["id"].(string)
	require.Equal(t, http.StatusOK, a.Do(t, "PATCH", "/api/v1/admin/sales/"+paused, a.AdminToken, map[string]any{"state": "paused"}).Status)

	from := func(addr string) []string { return []string{"X-Forwarded-For", addr} }
	join := func(s *testenv.Server, saleID, user, addr string) *testenv.Response {
		return s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil, from(addr)...)
	}
	socket := func(s *testenv.Server, saleID, user, addr string) *websocket.Conn {
		j := join(s, saleID, user, addr)
		require.Equal(t, http.StatusOK, j.Status, "%s", j.Body)
		h := http.Header{}
		h.Set("X-Forwarded-For", addr)
		ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.URL, "http", "ws", 1)+"/api/v1/sales/"+saleID+
			"/ws?qt="+j.JSON(t)["queue_token"].(string), h)
		require.NoError(t, err)
		t.Cleanup(func() { ws.Close() })
		_, _, err = ws.ReadMessage() // the first frame
		require.NoError(t, err)
		return ws
	}
	// closedWith waits (≤ 1.5 s) for the socket's close code.
	closedWith := func(ws *websocket.Conn) int {
		require.NoError(t, ws.SetReadDeadline(time.Now().Add(1500*time.Millisecond)))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				if ok := asClose(err, &ce); ok {
					return ce.Code
				}
				t.Fatalf("socket ended without a close frame: %v", err)
			}
		}
	}
	ban := func(body map[string]any) string {
		r := a.Do(t, "POST", "/api/v1/admin/bans", a.AdminToken, body)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		return r.JSON(t)["id"].(string)
	}
	bannedOn := func(s *testenv.Server, r *testenv.Response) {
		t.Helper()
		require.Equal(t, http.StatusForbidden, r.Status, "%s", r.Body)
		require.Equal(t, "banned", r.Code(t))
	}

	// alice is admitted in the open sale; bob waits in the paused one on node b
	require.Equal(t, http.StatusOK, join(a, open, "alice", "192.0.2.1").Status)
	var ticket string
	testenv.Eventually(t, 5*time.Second, func() bool {
		st := a.Do(t, "GET", "/api/v1/sales/"+open+"/status", a.UserToken(t, "alice"), nil, from("192.0.2.1")...).JSON(t)
		ticket, _ = st["ticket"].(string)
		return st["state"] == "admitted"
	}, "alice is admitted")
	k := a.Keys.Sale(open)
	require.Equal(t, "1", a.Redis.HGet(ctx, k.Units, "reserved").Val())
	bobWS := socket(b, paused, "bob", "192.0.2.2")

	banned := time.Now()
	ban(map[string]any{"user_id": "alice", "reason": "scalper"})
	ban(map[string]any{"user_id": "bob"})
	require.Equal(t, 4403, closedWith(bobWS), "bob's socket on the other node closes")
	require.Less(t, time.Since(banned), 2*time.Second)
	testenv.Eventually(t, 2*time.Second, func() bool {
		return a.Redis.HGet(ctx, k.Units, "reserved").Val() == "0"
	}, "alice's admission ended and its units returned")
	require.False(t, a.Redis.HExists(ctx, k.Tix, "alice").Val())
	_, err = a.Redis.ZScore(ctx, a.Keys.Sale(paused).Q, "bob").Result()
	require.Error(t, err, "bob's place is gone")
	bannedOn(a, a.Do(t, "POST", "/api/v1/sales/"+open+"/checkout", ticket, nil))
	testenv.Eventually(t, time.Second, func() bool { return join(b, paused, "bob", "192.0.2.2").Status == http.StatusForbidden },
		"the other node refuses bob within a second")
	bannedOn(b, join(b, paused, "bob", "192.0.2.2"))
	bannedOn(a, a.Do(t, "GET", "/api/v1/sales/"+paused+"/status", a.UserToken(t, "bob"), nil))
	sum := a.Do(t, "GET", "/api/v1/admin/sales/"+open+"/summary", a.AdminToken, nil).JSON(t)
	require.EqualValues(t, 0, sum["active"], "the summary shows the admission ended: %v", sum)

	// a ban covering a trusted proxy is refused; 0.0.0.0/0 too
	for _, ip := range []string{"127.0.0.0/8", "127.0.0.1", "0.0.0.0/0", "::/0", "::ffff:127.0.0.1"} {
		r := a.Do(t, "POST", "/api/v1/admin/bans", a.AdminToken, map[string]any{"ip": ip})
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s: %s", ip, r.Body)
		require.Contains(t, string(r.Body), "ip:")
	}

	// a CIDR ban closes carol's socket and refuses newcomers from it;
	// carol's place goes at once, and those who joined from the network
	// without a socket lose theirs at their next call: frank's place,
	// gina's admission (its unit returns)
	carolWS := socket(a, paused, "carol", "198.51.100.7")
	require.Equal(t, http.StatusOK, join(b, paused, "frank", "198.51.100.8").Status)
	require.Equal(t, http.StatusOK, join(a, open, "gina", "198.51.100.9").Status)
	testenv.Eventually(t, 5*time.Second, func() bool {
		st := a.Do(t, "GET", "/api/v1/sales/"+open+"/status", a.UserToken(t, "gina"), nil, from("198.51.100.9")...).JSON(t)
		return st["state"] == "admitted"
	}, "gina is admitted")
	require.Equal(t, "1", a.Redis.HGet(ctx, k.Units, "reserved").Val())
	ban(map[string]any{"ip": "198.51.100.0/24"})
	require.Equal(t, 4403, closedWith(carolWS))
	pk := a.Keys.Sale(paused)
	testenv.Eventually(t, time.Second, func() bool { return a.Redis.ZScore(ctx, pk.Q, "carol").Err() != nil },
		"carol's place went with her socket")
	_, err = a.Redis.ZScore(ctx, pk.Q, "frank").Result()
	require.NoError(t, err, "frank has not called since the ban")
	testenv.Eventually(t, time.Second, func() bool {
		return b.Do(t, "GET", "/api/v1/sales/"+paused+"/status", b.UserToken(t, "frank"), nil, from("198.51.100.8")...).Status == http.StatusForbidden
	}, "frank's poll is refused")
	require.Error(t, a.Redis.ZScore(ctx, pk.Q, "frank").Err(), "frank's place went at his call")
	bannedOn(a, a.Do(t, "GET", "/api/v1/sales/"+open+"/status", a.UserToken(t, "gina"), nil, from("198.51.100.9")...))
	require.False(t, a.Redis.HExists(ctx, k.Tix, "gina").Val(), "gina's admission ended")
	require.Equal(t, "0", a.Redis.HGet(ctx, k.Units, "reserved").Val(), "its unit returned")
	testenv.Eventually(t, time.Second, func() bool { return join(b, paused, "dave", "198.51.100.200").Status == http.StatusForbidden },
		"the other node refuses the banned network within a second")
	bannedOn(b, join(b, paused, "dave", "198.51.100.200"))
	require.Equal(t, http.StatusOK, join(b, paused, "dave", "203.0.113.9").Status, "another address is fine")

	// a ban of one sale acts only there; a short ban stops by itself
	ban(map[string]any{"user_id": "erin", "sale_id": paused, "ttl_seconds": 1})
	testenv.Eventually(t, 2*time.Second, func() bool { return join(a, paused, "erin", "192.0.2.5").Status == http.StatusForbidden },
		"the sale ban acts")
	require.Equal(t, http.StatusOK, join(a, open, "erin", "192.0.2.5").Status, "in another sale erin may join")
	testenv.Eventually(t, 5*time.Second, func() bool { return join(a, paused, "erin", "192.0.2.5").Status == http.StatusOK },
		"the expired ban stops acting")

	// lists, lifts, and a flush of Redis changes nothing
	list := a.Do(t, "GET", "/api/v1/admin/bans", a.AdminToken, nil)
	require.Equal(t, http.StatusOK, list.Status)
	var got struct{ Bans []map[string]any }
	require.NoError(t, json.Unmarshal(list.Body, &got))
	require.Len(t, got.Bans, 3, "alice, bob, the CIDR (erin's expired): %s", list.Body)
	keys, err := a.Redis.Keys(ctx, a.Keys.Prefix+":*").Result()
	require.NoError(t, err)
	require.NoError(t, a.Redis.Del(ctx, keys...).Err())
	bannedOn(b, join(b, paused, "bob", "192.0.2.2"))
	for _, x := range got.Bans {
		if x["user_id"] == "bob" {
			require.Equal(t, http.StatusNoContent, a.Do(t, "DELETE", "/api/v1/admin/bans/"+x["id"].(string), a.AdminToken, nil).Status)
		}
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		return join(b, paused, "bob", "192.0.2.2").Status == http.StatusOK
	}, "the lifted ban stops acting on the other node")
	require.Equal(t, http.StatusNotFound, a.Do(t, "DELETE", "/api/v1/admin/bans/ban_nope", a.AdminToken, nil).Status)
}

func asClose(err error, ce **websocket.CloseError) bool {
	c, ok := err.(*websocket.CloseError)
	if ok {
		*ce = c
	}
	return ok
}
