package bans

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testdb"
)

// calls records what OnChange was given.
type calls struct {
	mu  sync.Mutex
	got [][]Ban
}

func (c *calls) record(added []Ban) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, added)
}

func (c *calls) all() [][]Ban {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]Ban(nil), c.got...)
}

// twoNodes is one database seen through two handles, as two nodes see it.
func twoNodes(t *testing.T) (*Store, *Store) {
	t.Helper()
	dsn, db := testdb.MySQL(t)
	other, err := sql.Open("mysql", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	return NewStore(db, quiet), NewStore(other, quiet)
}

// TestWatcherPicksUpBans: a ban made through another node's Store acts
// here within 1 s and is announced once; a lift stops it within 1 s and
// announces nothing; bans there before the first load are its baseline.
func TestWatcherPicksUpBans(t *testing.T) {
	t.Parallel()
	here, there := twoNodes(t)
	ctx := context.Background()
	before, err := there.Create(ctx, &CreateRequest{UserID: ptr("early")}, time.Now())
	require.NoError(t, err)

	var c calls
	w := NewWatcher(here, quiet)
	w.OnChange = c.record
	require.NoError(t, w.Reload(ctx), "a node loads once before it serves")
	_, ok := w.Current().Match("early", netip.Addr{}, "s", time.Now())
	require.True(t, ok)
	w.Start(ctx)
	defer w.Stop()

	b, err := there.Create(ctx, &CreateRequest{IP: ptr("203.0.113.0/24"), Reason: ptr("farm")}, time.Now())
	require.NoError(t, err)
	client := netip.MustParseAddr("203.0.113.77")
	require.Eventually(t, func() bool {
		_, ok := w.Current().Match("", client, "s", time.Now())
		return ok
	}, time.Second, 10*time.Millisecond, "the ban acts here within 1 s")
	require.Eventually(t, func() bool { return len(c.all()) == 1 }, time.Second, 10*time.Millisecond)
	require.Equal(t, [][]Ban{{*b}}, c.all(), "announced once, with the ban alone (not the baseline's)")

	// Full reloads diff against what is known: nothing is announced twice.
	w.mu.Lock()
	w.FullReload = time.Nanosecond
	w.mu.Unlock()
	for range 3 {
		require.NoError(t, w.Reload(ctx))
	}
	require.Len(t, c.all(), 1)

	require.NoError(t, there.Delete(ctx, b.ID))
	require.NoError(t, there.Delete(ctx, before.ID))
	require.Eventually(t, func() bool {
		_, ok := w.Current().Match("early", client, "s", time.Now())
		return !ok
	}, time.Second, 10*time.Millisecond, "the lifts act here within 1 s")
	require.Zero(t, w.Current().Len())
	require.Len(t, c.all(), 1, "a lift announces nothing")
}

// TestWatcherPoke: with a long interval, a Poke makes the change act now.
func TestWatcherPoke(t *testing.T) {
	t.Parallel()
	here, there := twoNodes(t)
	ctx := context.Background()
	w := NewWatcher(here, quiet)
	w.Interval = time.Hour
	w.Start(ctx)
	defer w.Stop()
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.loaded
	}, 5*time.Second, 10*time.Millisecond, "the first load is at once")

	_, err := there.Create(ctx, &CreateRequest{UserID: ptr("alice")}, time.Now())
	require.NoError(t, err)
	w.Poke()
	require.Eventually(t, func() bool { return w.Current().Len() == 1 }, 5*time.Second, 10*time.Millisecond)
}

// TestWatcherDropsExpired: a ban that expires leaves the Set by itself
// (no change in MySQL moves the version), and stops matching at its
// expiry even before that.
func TestWatcherDropsExpired(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Now()
	b, err := s.Create(ctx, &CreateRequest{UserID: ptr("alice"), TTLSeconds: ptr(int64(1))}, now)
	require.NoError(t, err)
	w := NewWatcher(s, quiet)
	w.Interval = 20 * time.Millisecond
	require.NoError(t, w.Reload(ctx))
	set := w.Current()
	_, ok := set.Match("alice", netip.Addr{}, "s", b.ExpiresAt.Add(-time.Millisecond))
	require.True(t, ok)
	_, ok = set.Match("alice", netip.Addr{}, "s", b.ExpiresAt)
	require.False(t, ok, "an expired ban in a stale Set does not act")

	w.Start(ctx)
	defer w.Stop()
	require.Eventually(t, func() bool { return w.Current().Len() == 0 }, 5*time.Second, 20*time.Millisecond)
}

// TestWatcherKeepsBansWhenMySQLFails: a failing MySQL keeps the last Set,
// is logged once per 30 s however often it fails, and its recovery is
// logged.
func TestWatcherKeepsBansWhenMySQLFails(t *testing.T) {
	t.Parallel()
	dsn, db := testdb.MySQL(t)
	s := NewStore(db, quiet)
	ctx := context.Background()
	_, err := s.Create(ctx, &CreateRequest{UserID: ptr("alice")}, time.Now())
	require.NoError(t, err)

	var logs testdb.SyncBuffer
	w := NewWatcher(s, slog.New(slog.NewTextHandler(&logs, nil)))
	w.Interval = 5 * time.Millisecond
	require.NoError(t, w.Reload(ctx))

	broken, err := sql.Open("mysql", dsn)
	require.NoError(t, err)
	require.NoError(t, broken.Close())
	w.mu.Lock()
	w.store = NewStore(broken, quiet)
	w.mu.Unlock()

	w.Start(ctx)
	defer w.Stop()
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.failures >= 20
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1, strings.Count(logs.String(), "reading the bans from MySQL failed"), logs.String())
	_, ok := w.Current().Match("alice", netip.Addr{}, "s", time.Now())
	require.True(t, ok, "the last bans stay in force")

	w.mu.Lock()
	w.store = s
	w.mu.Unlock()
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "reading the bans from MySQL works again")
	}, 5*time.Second, 5*time.Millisecond)
	w.Stop()
	w.Stop() // safe twice
}

// BenchmarkReload measures what each 500 ms check costs a node with
// 10,000 live bans: the version point read when nothing changed, against
// loading every ban, which is what a check without the version would do.
func BenchmarkReload(b *testing.B) {
	s, db := newStore(b)
	now := time.Now().UTC()
	for batch := range 10 {
		var sb strings.Builder
		args := []any{}
		sb.WriteString("INSERT INTO bans (id, user_id, ip, created_at) VALUES ")
		for i := range 1000 {
			if i > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("(?, ?, ?, ?)")
			n := batch*1000 + i
			if n%2 == 0 {
				args = append(args, NewID(), fmt.Sprintf("user-%d", n), nil, now)
			} else {
				args = append(args, NewID(), nil, fmt.Sprintf("10.%d.%d.0/24", n/256, n%256), now)
			}
		}
		_, err := db.Exec(sb.String(), args...)
		require.NoError(b, err)
	}
	ctx := context.Background()
	w := NewWatcher(s, quiet)
	require.NoError(b, w.Reload(ctx))
	require.Equal(b, 10000, w.Current().Len())
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			require.NoError(b, w.Reload(ctx))
		}
	})
	b.Run("full", func(b *testing.B) {
		w.FullReload = time.Nanosecond
		for b.Loop() {
			require.NoError(b, w.Reload(ctx))
		}
	})
}
