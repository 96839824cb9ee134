package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/migrations"
	"github.com/flashsale/flashsale/testenv"
)

// TestApplyOnce applies the schema (testenv.MySQL does, to a new database),
// applies it again (nothing to do), and checks the columns and unique keys
// the design names.
func TestApplyOnce(t *testing.T) {
	dsn, db := testenv.MySQL(t)
	again, err := migrations.Apply(context.Background(), dsn)
	require.NoError(t, err)
	require.Empty(t, again)

	all, err := migrations.All()
	require.NoError(t, err)
	var n int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n))
	require.Equal(t, len(all), n)

	cols := map[string]bool{}
	rows, err := db.Query(`SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'orders'`)
	require.NoError(t, err)
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		cols[c] = true
	}
	require.NoError(t, rows.Close())
	for _, c := range []string{"id", "sale_id", "user_id", "quantity", "amount_cents", "currency", "status",
		"ticket_jti", "idempotency_key", "hold_expires_at", "created_at", "updated_at", "live_user"} {
		require.True(t, cols[c], "orders.%s", c)
	}

	// One live order per sale and user: a second held/paid row is refused,
	// a cancelled one is not.
	_, err = db.Exec(`INSERT INTO items (sku, name, price_cents, currency) VALUES ('x', 'x', 1, 'EUR')`)
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO sales (id, item_id, name, price_cents, currency, stock_total, state, starts_at,
		admission_rate, max_active, ticket_ttl_seconds, hold_ttl_seconds, per_user_limit, queue_mode,
		abandon_after_seconds, return_window_seconds) VALUES ('s', LAST_INSERT_ID(), 'x', 1, 'EUR', 2, 'open', NOW(),
		1, 1, 300, 0, 1, 'fifo', 60, 900)`)
	require.NoError(t, err)
	ins := `INSERT INTO orders (id, sale_id, user_id, quantity, amount_cents, currency, status, ticket_jti) VALUES (?, 's', 'u', 1, 1, 'EUR', ?, ?)`
	_, err = db.Exec(ins, "o1", "paid", "j1")
	require.NoError(t, err)
	_, err = db.Exec(ins, "o2", "held", "j2")
	require.Error(t, err, "a second live order of the user")
	_, err = db.Exec(ins, "o3", "cancelled", "j3")
	require.NoError(t, err)
	_, err = db.Exec(ins, "o4", "cancelled", "j1")
	require.Error(t, err, "a ticket id used twice")

	// The guard: sold + held never exceeds the stock.
	_, err = db.Exec(`UPDATE sales SET sold = 2, held = 1 WHERE id = 's'`)
	require.Error(t, err)
}
