package faults_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/faults"
)

// TestRedis: the private Redis answers, stops answering while paused,
// answers again when resumed, refuses when killed, and comes back empty
// (no persistence) on restart.
func TestRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a redis-server; skipped with -short")
	}
	t.Parallel()
	r := faults.StartRedis(t)
	c := r.Client(t)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())

	r.Pause()
	pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := c.Get(pctx, "k").Err()
	cancel()
	require.Error(t, err, "a paused server does not answer")
	r.Resume()
	require.Equal(t, "v", c.Get(ctx, "k").Val())

	pid := r.PID()
	r.Kill()
	require.Error(t, c.Ping(ctx).Err(), "a killed server refuses")
	r.Restart()
	require.NotEqual(t, pid, r.PID())
	// go-redis backs off dialling after refused dials and retries in the
	// background (about once a second): the client comes back by itself.
	require.Eventually(t, func() bool { return c.Ping(ctx).Err() == nil }, 10*time.Second, 20*time.Millisecond,
		"the client reconnects to the restarted server")
	require.Zero(t, c.Exists(ctx, "k").Val(), "no persistence: the data is gone")
}

// TestMariaDB: the private MariaDB keeps committed data across a SIGKILL
// and a restart on the same data directory, and hangs while paused.
func TestMariaDB(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a mariadbd; skipped with -short")
	}
	t.Parallel()
	m := faults.StartMariaDB(t)
	db := m.Open(t, "")
	ctx := context.Background()
	_, err := db.ExecContext(ctx, `CREATE DATABASE f`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `CREATE TABLE f.t (id INT PRIMARY KEY) ENGINE=InnoDB`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO f.t VALUES (1)`)
	require.NoError(t, err)

	m.Pause()
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = db.ExecContext(pctx, `INSERT INTO f.t VALUES (2)`)
	cancel()
	require.Error(t, err, "a paused server does not answer")
	m.Resume()

	m.Kill()
	require.Error(t, db.PingContext(ctx), "a killed server refuses")
	m.Restart()
	var n int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT COUNT(*) FROM f.t WHERE id = 1`).Scan(&n))
	require.Equal(t, 1, n, "the committed row survived the crash")
}

// TestRedisCluster: the private cluster spreads keys over its 3 masters;
// with one master killed its keys fail while the others' still answer;
// restarted, it serves its slots again, empty (no persistence), or with
// what a SAVE before the kill wrote.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 3 redis-servers; skipped with -short")
	}
	t.Parallel()
	c := faults.StartRedisCluster(t)
	cl := c.Client(t)
	ctx := context.Background()
	holders := map[*faults.Redis][]string{}
	for i := range 30 {
		key := fmt.Sprintf("{k%d}", i)
		require.NoError(t, cl.Set(ctx, key, "v", 0).Err())
		m := c.MasterFor(t, key)
		holders[m] = append(holders[m], key)
		require.EqualValues(t, 1, m.Client(t).Exists(ctx, key).Val(), "%s is on the master MasterFor names", key)
	}
	require.Len(t, holders, 3, "30 keys reach every master")

	victim, other := c.Masters[0], c.Masters[1]
	saved := holders[victim][0]
	late := holders[victim][0] + ":late" // the same hash tag: the same master
	require.NoError(t, victim.Client(t).Save(ctx).Err())
	require.NoError(t, cl.Set(ctx, late, "after the snapshot", 0).Err())
	victim.Kill()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	require.Error(t, cl.Get(short, late).Err(), "a killed master's keys fail")
	cancel()
	require.Equal(t, "v", cl.Get(ctx, holders[other][0]).Val(), "the other masters still answer")

	victim.Restart()
	require.Eventually(t, func() bool { return cl.Get(ctx, saved).Val() == "v" }, 15*time.Second, 20*time.Millisecond,
		"the restarted master serves its slots, with the snapshot")
	require.Zero(t, cl.Exists(ctx, late).Val(), "a write after the snapshot is lost")

	require.NoError(t, os.Remove(filepath.Join(victim.Dir, "dump.rdb")))
	victim.Kill()
	victim.Restart()
	require.Eventually(t, func() bool { return cl.Ping(ctx).Err() == nil && cl.Exists(ctx, saved).Err() == nil },
		15*time.Second, 20*time.Millisecond, "the master answers again")
	require.Zero(t, cl.Exists(ctx, saved).Val(), "restarted without a snapshot: empty")
	require.Equal(t, "v", cl.Get(ctx, holders[other][0]).Val())
}
