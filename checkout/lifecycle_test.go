package checkout_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/testenv"
)

// TestLifecycleFinishesWhatFiredOnce: the finish after the last unit and the
// publish after a commit fire once; when they are lost (a crash, a blip),
// the sweeper's pass finishes a sale MySQL counts paid out, closes one past
// its end, and writes again a live copy behind MySQL's row.
func TestLifecycleFinishesWhatFiredOnce(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	ctx := context.Background()
	get := func(id string) map[string]any {
		r := s.Do(t, "GET", "/api/v1/admin/sales/"+id, s.AdminToken, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		return r.JSON(t)
	}

	// Every unit paid in MySQL, the sale still open: as if the process that
	// sold the last unit died before its finish.
	paidOut := newSale(t, s, map[string]any{"stock": 3})
	_, err := s.DB.ExecContext(ctx, `UPDATE sales SET sold = stock_total WHERE id = ?`, paidOut)
	require.NoError(t, err)
	// Past its end in MySQL (an end set by hand, as a crash between the
	// admitter's close and its write would leave it).
	ended := newSale(t, s, map[string]any{"stock": 3})
	_, err = s.DB.ExecContext(ctx, `UPDATE sales SET ends_at = NOW(3) - INTERVAL 1 SECOND WHERE id = ?`, ended)
	require.NoError(t, err)
	// A change committed in MySQL whose publish to Redis was lost.
	behind := newSale(t, s, map[string]any{"stock": 3, "admission_rate": 5})
	_, err = s.DB.ExecContext(ctx, `UPDATE sales SET admission_rate = 42, version = version + 1 WHERE id = ?`, behind)
	require.NoError(t, err)
	require.EqualValues(t, 5, get(behind)["admission_rate"], "Redis is behind")

	eventually(t, 10*time.Second, func() bool {
		return get(paidOut)["state"] == "sold_out" && get(ended)["state"] == "closed" &&
			get(behind)["admission_rate"] == float64(42)
	}, "the sweeper finishes, closes and republishes")
	var state string
	require.NoError(t, s.DB.QueryRowContext(ctx, `SELECT state FROM sales WHERE id = ?`, paidOut).Scan(&state))
	require.Equal(t, "sold_out", state, "MySQL records the finish")
	requireError(t, buy(t, s, paidOut, s.Ticket(paidOut, "late", time.Minute), nil), 410, "sold_out")
}

// TestLifecycleRetiresFinalSales: a final sale leaves the working set once
// its grace has passed, and no loop works for it; a live sale stays.
func TestLifecycleRetiresFinalSales(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	ctx := context.Background()
	live := newSale(t, s, map[string]any{"stock": 3})
	closed := newSale(t, s, map[string]any{"stock": 3})
	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+closed, s.AdminToken, map[string]any{"state": "closed"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	require.True(t, s.Redis.SIsMember(ctx, s.Keys.Sales(), closed).Val())

	w := checkout.NewSweeper(checkout.SweeperConfig{FinalGrace: time.Millisecond}, s.Node.Checkout)
	w.Start(ctx)
	defer w.Stop()
	eventually(t, 10*time.Second, func() bool {
		return !s.Redis.SIsMember(ctx, s.Keys.Sales(), closed).Val()
	}, "the closed sale leaves the working set")
	require.True(t, s.Redis.SIsMember(ctx, s.Keys.Sales(), live).Val(), "a live sale stays")
	// It is still served, from its live copy.
	g := s.Do(t, "GET", "/api/v1/sales/"+closed, "", nil)
	require.Equal(t, http.StatusOK, g.Status)
	require.Equal(t, "closed", g.JSON(t)["state"])
}
