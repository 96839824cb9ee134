package bans

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/testdb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newStore is a Store on a fresh database of the test's own, with the
// whole schema.
func newStore(t testing.TB) (*Store, *sql.DB) {
	t.Helper()
	_, db := testdb.MySQL(t)
	return NewStore(db, quiet), db
}

// addSale puts a sale row in MySQL, as the sale store would.
func addSale(t testing.TB, db *sql.DB, id string) {
	t.Helper()
	res, err := db.Exec(`INSERT INTO items (sku, name, price_cents, currency) VALUES (?, 'x', 1, 'EUR')`, id)
	require.NoError(t, err)
	item, err := res.LastInsertId()
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO sales (id, item_id, name, price_cents, currency, stock_total, state, starts_at,
		admission_rate, max_active, ticket_ttl_seconds, hold_ttl_seconds, per_user_limit, queue_mode,
		abandon_after_seconds, return_window_seconds) VALUES (?, ?, 'x', 1, 'EUR', 2, 'open', NOW(),
		1, 1, 300, 0, 1, 'fifo', 60, 900)`, id, item)
	require.NoError(t, err)
}

func requireInvalid(t *testing.T, err error, prefix string) {
	t.Helper()
	e := api.AsError(err)
	require.Equal(t, http.StatusUnprocessableEntity, e.Status, "%v", err)
	require.Equal(t, "invalid_request", e.Code)
	require.Regexp(t, "^"+prefix, e.Message)
}

func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	addSale(t, db, "phone-drop")
	now := time.Now().UTC().Truncate(time.Millisecond)

	got, err := s.List(ctx, now)
	require.NoError(t, err)
	require.NotNil(t, got, "an empty list is [], not null")
	require.Empty(t, got)

	user, err := s.Create(ctx, &CreateRequest{UserID: ptr("auth0|ünï "), Reason: ptr("scalper")}, now)
	require.NoError(t, err)
	net, err := s.Create(ctx, &CreateRequest{IP: ptr("::ffff:203.0.113.7/120"), SaleID: ptr("phone-drop"),
		TTLSeconds: ptr(int64(3600))}, now.Add(time.Millisecond))
	require.NoError(t, err)

	got, err = s.List(ctx, now.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, []Ban{*net, *user}, got, "newest first, every field as created")
	require.Equal(t, "203.0.113.0/24", got[0].IPString())
	require.Equal(t, now.Add(time.Millisecond+time.Hour), got[0].ExpiresAt)

	// Lifting: gone from the list; a second lift and an unknown id are 404.
	require.NoError(t, s.Delete(ctx, user.ID))
	got, err = s.List(ctx, now.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, []Ban{*net}, got)
	for _, id := range []string{user.ID, "ban_nosuch", "", string(make([]byte, 5000))} {
		e := api.AsError(s.Delete(ctx, id))
		require.Equal(t, http.StatusNotFound, e.Status, id)
		require.Equal(t, "not_found", e.Code)
	}
	var deleted sql.NullTime
	require.NoError(t, db.QueryRow("SELECT deleted_at FROM bans WHERE id = ?", user.ID).Scan(&deleted))
	require.True(t, deleted.Valid, "a lift keeps the row, marked")
}

// TestStoreExpired: a ban past its expires_at is not listed, though never
// lifted.
func TestStoreExpired(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	now := time.Now()
	b, err := s.Create(ctx, &CreateRequest{UserID: ptr("alice"), TTLSeconds: ptr(int64(1))}, now)
	require.NoError(t, err)
	got, err := s.List(ctx, now)
	require.NoError(t, err)
	require.Len(t, got, 1)
	got, err = s.List(ctx, b.ExpiresAt)
	require.NoError(t, err)
	require.Empty(t, got, "expires_at ≤ now: gone")

	// And with the time MySQL keeps: a ban whose expiry is in the past.
	c, err := s.Create(ctx, &CreateRequest{UserID: ptr("bob")}, now)
	require.NoError(t, err)
	_, err = db.Exec("UPDATE bans SET expires_at = ? WHERE id = ?", now.Add(-time.Minute).UTC(), c.ID)
	require.NoError(t, err)
	got, err = s.List(ctx, now)
	require.NoError(t, err)
	require.Equal(t, []string{b.ID}, ids(got), "bob's ban is over, alice's still acts")
	// An expired ban may still be lifted (it is known), once.
	require.NoError(t, s.Delete(ctx, c.ID))
	require.Equal(t, http.StatusNotFound, api.AsError(s.Delete(ctx, c.ID)).Status)
}

func ids(bans []Ban) []string {
	out := []string{}
	for _, b := range bans {
		out = append(out, b.ID)
	}
	return out
}

func TestStoreRefuses(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	addSale(t, db, "phone-drop")

	_, err := s.Create(ctx, &CreateRequest{UserID: ptr("alice"), SaleID: ptr("no-such-sale")}, time.Now())
	requireInvalid(t, err, "sale_id: no such sale")
	_, err = s.Create(ctx, &CreateRequest{IP: ptr("0.0.0.0/0")}, time.Now())
	requireInvalid(t, err, "ip:")
	_, err = s.Create(ctx, &CreateRequest{UserID: ptr("alice"), IP: ptr("203.0.113.7")}, time.Now())
	requireInvalid(t, err, "user_id, ip")
	var n int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM bans").Scan(&n))
	require.Zero(t, n, "nothing refused was stored")

	// The sale check is MySQL's foreign key: a real sale is taken.
	b, err := s.Create(ctx, &CreateRequest{UserID: ptr("alice"), SaleID: ptr("phone-drop")}, time.Now())
	require.NoError(t, err)
	require.Equal(t, "phone-drop", b.SaleID)
}

// TestStoreCap: at MaxLive live bans the next create is 422; expired and
// lifted bans do not count; concurrent creates never pass the cap.
func TestStoreCap(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	s.MaxLive = 5
	ctx := context.Background()
	now := time.Now()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var made []*Ban
	var refused int
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := s.Create(ctx, &CreateRequest{UserID: ptr("u" + string(rune('a'+i)))}, now)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				requireInvalid(t, err, "there are already 5 live bans")
				refused++
				return
			}
			made = append(made, b)
		}()
	}
	wg.Wait()
	require.Len(t, made, 5, "exactly the cap, under concurrency")
	require.Equal(t, 15, refused)

	require.NoError(t, s.Delete(ctx, made[0].ID))
	_, err := db.Exec("UPDATE bans SET expires_at = ? WHERE id = ?", now.Add(-time.Second).UTC(), made[1].ID)
	require.NoError(t, err)
	for range 2 {
		_, err = s.Create(ctx, &CreateRequest{IP: ptr("203.0.113.7")}, now)
		require.NoError(t, err, "a lifted and an expired ban free their places")
	}
	_, err = s.Create(ctx, &CreateRequest{IP: ptr("203.0.113.8")}, now)
	requireInvalid(t, err, "there are already 5 live bans")
}

// TestStoreDown: a MySQL that cannot be reached is a 503, never a 500.
func TestStoreDown(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	require.NoError(t, db.Close())
	ctx := context.Background()
	_, err := s.Create(ctx, &CreateRequest{UserID: ptr("alice")}, time.Now())
	require.Equal(t, http.StatusServiceUnavailable, api.AsError(err).Status)
	_, err = s.List(ctx, time.Now())
	require.Equal(t, http.StatusServiceUnavailable, api.AsError(err).Status)
	require.Equal(t, http.StatusServiceUnavailable, api.AsError(s.Delete(ctx, "ban_x")).Status)
	_, err = s.Version(ctx)
	require.Equal(t, http.StatusServiceUnavailable, api.AsError(err).Status)
}

// TestStoreSkipsBadRows: a hand edit that breaks a row's ip leaves that
// ban out, not the whole list.
func TestStoreSkipsBadRows(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	a, err := s.Create(ctx, &CreateRequest{IP: ptr("203.0.113.7")}, time.Now())
	require.NoError(t, err)
	b, err := s.Create(ctx, &CreateRequest{IP: ptr("198.51.100.7")}, time.Now())
	require.NoError(t, err)
	_, err = db.Exec("UPDATE bans SET ip = 'not an ip' WHERE id = ?", a.ID)
	require.NoError(t, err)
	// A hand-written IPv6 address acts as its /64, like one made through
	// the API.
	_, err = db.Exec(`INSERT INTO bans (id, ip, created_at) VALUES ('ban_hand', '2001:db8::1', UTC_TIMESTAMP(3))`)
	require.NoError(t, err)
	got, err := s.List(ctx, time.Now())
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "ban_hand", got[0].ID)
	require.Equal(t, netip.MustParsePrefix("2001:db8::/64"), got[0].IP)
	require.Equal(t, b.ID, got[1].ID)
}
