package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// A small bulk join against a real node: every user joins once, each with
// a 36-byte UUID id, and each of them waits in the queue (or was admitted).
func TestBulkJoinFillsTheQueue(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	var out strings.Builder
	c := &bulkConfig{url: s.URL, sale: "bulk-" + testenv.RandomID(), secret: string(s.Secret),
		adminToken: s.AdminToken, n: 300, conc: 16, duration: time.Minute, every: time.Second,
		create: true, stock: 1000, abandon: 3600, out: &out}
	require.NoError(t, c.check())
	r, err := runBulk(context.Background(), c)
	require.NoError(t, err)
	t.Logf("output:\n%s", out.String())
	require.EqualValues(t, 300, r.Joined, "statuses %v", r.Codes)
	require.Equal(t, map[int]int64{200: 300}, r.Codes)
	require.NotEmpty(t, r.Users)
	for _, u := range r.Users {
		require.Len(t, u, 36)
	}
	// the sale admits at 0.001/s: its first tick may admit one (max_active 1)
	k := s.Keys.Sale(c.sale)
	q, err := s.Redis.ZCard(context.Background(), k.Q).Result()
	require.NoError(t, err)
	adm, err := s.Redis.ZCard(context.Background(), k.Adm).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, adm, int64(1))
	require.EqualValues(t, 300, q+adm, "every joined user waits or was admitted")
	abandon, err := s.Redis.HGet(context.Background(), k.Cfg, "abandon").Result()
	require.NoError(t, err)
	require.Equal(t, "3600", abandon, "the sale was made with --abandon")
	require.Contains(t, out.String(), "300 joined in")
}

// The mode refuses a server that is not on this machine, and flags that
// cannot work, naming the flag.
func TestBulkJoinFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ args, want string }{
		{"--url http://example.com:8080 --sale s --identity-secret x", "not on this machine"},
		{"--url http://10.0.0.1:8080 --sale s --identity-secret x", "loopback"},
		{"--url http://127.0.0.1:1 --identity-secret x", "--sale is required"},
		{"--url http://127.0.0.1:1 --sale s -n 0 --identity-secret x", "-n and -c"},
		{"--url ftp://127.0.0.1 --sale s --identity-secret x", "not an http(s) URL"},
	} {
		err := run(append([]string{"bulkjoin"}, strings.Fields(tc.args)...))
		require.Error(t, err, tc.args)
		require.Contains(t, err.Error(), tc.want, tc.args)
	}
}
