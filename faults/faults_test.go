package faults_test

import (
	"context"
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
