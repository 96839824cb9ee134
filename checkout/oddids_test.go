package checkout_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// oddUsers are user ids shops really send (Auth0's "auth0|abc123") and
// hostile ones: every byte that could split a record Redis keeps.
var oddUsers = []string{"auth0|abc123", "google-oauth2|123", "a:b", "{x}", "|", "1|1|j|1|held|5|-|bob",
	"Zoë 🛒", "ünïcödé|ユーザー", strings.Repeat("|", 200)}

// TestCheckoutOddUserIDs: for every odd user id the whole checkout holds:
// a refused order is put back exactly (undo) and its ticket still buys, a
// hold is registered and its cancel returns the units and frees the buyer,
// and Redis and MySQL agree at the end.
func TestCheckoutOddUserIDs(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"stock": 100, "per_user_limit": 2, "hold_ttl_seconds": 300})
	k := s.Keys.Sale(saleID)
	ctx := context.Background()
	for _, user := range oddUsers {
		tok := admit(t, s, saleID, user, 2)

		// The guard refuses: undo puts Redis back as it was, ticket unused.
		before := redisSnapshot(t, s, saleID)
		_, err := s.DB.Exec(`UPDATE sales SET held = stock_total - sold WHERE id = ?`, saleID)
		require.NoError(t, err)
		requireError(t, buy(t, s, saleID, tok, `{"quantity":1}`), 410, "sold_out")
		eventually(t, 5*time.Second, func() bool { return equalJSON(before, redisSnapshot(t, s, saleID)) },
			"user %q: Redis put back as it was", user)
		_, err = s.DB.Exec(`UPDATE sales SET held = (SELECT COALESCE(SUM(quantity), 0) FROM orders
			WHERE sale_id = ? AND status = 'held') WHERE id = ?`, saleID, saleID)
		require.NoError(t, err)

		// The ticket buys: a hold, registered under the whole user id.
		r := buy(t, s, saleID, tok, `{"quantity":2}`)
		require.Equal(t, http.StatusCreated, r.Status, "user %q: %s", user, r.Body)
		ord := r.JSON(t)
		require.Equal(t, user, ord["user_id"])
		require.Equal(t, "held", ord["status"])
		id := ord["id"].(string)
		require.True(t, s.Redis.HExists(ctx, k.Orders, id).Val(), "user %q: the hold is registered", user)
		require.Equal(t, id, s.Redis.HGet(ctx, k.Buyers, user).Val())
		requireError(t, buy(t, s, saleID, s.Ticket(saleID, user, time.Minute), nil), 409, "already_bought")

		// The owner cancels: units back, the buyer freed.
		c := s.Do(t, "POST", "/api/v1/orders/"+id+"/cancel", s.UserToken(t, user), nil)
		require.Equal(t, http.StatusOK, c.Status, "user %q: %s", user, c.Body)
		require.Equal(t, "cancelled", c.JSON(t)["status"])
		require.False(t, s.Redis.HExists(ctx, k.Buyers, user).Val(), "user %q: buyer freed", user)
		require.False(t, s.Redis.HExists(ctx, k.Orders, id).Val())
		u := redisUnits(t, s, saleID)
		require.Equal(t, 0, u["held"], "user %q: %v", user, u)
	}
	require.Equal(t, 100, redisUnits(t, s, saleID)["remaining"])
	sum := summary(t, s, saleID)
	require.Equal(t, true, sum["consistent"], "summary: %v", sum)
}

// TestCheckoutUserIDsByteExact: two users whose ids differ only by a
// trailing space or by case each get their own order (MySQL compares ids
// byte for byte).
func TestCheckoutUserIDsByteExact(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"stock": 10})
	for _, user := range []string{"alice", "alice ", "Alice", "ALICE"} {
		r := buy(t, s, saleID, s.Ticket(saleID, user, time.Minute), nil)
		require.Equal(t, http.StatusCreated, r.Status, "user %q: %s", user, r.Body)
	}
	count, _ := liveOrders(t, s, saleID)
	require.Equal(t, 4, count)
}
