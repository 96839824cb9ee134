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

// TestRedisLost: a sale's keys vanish mid-sale (a flush, a restart without
// persistence). The next checkout answers 503 and starts a rebuild from
// MySQL; then buyers, used tickets, holds and units are back, nothing is
// oversold, and the sale goes on (invariant 7).
func TestRedisLost(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		saleID := newSale(t, s, map[string]any{"stock": 6, "per_user_limit": 2, "hold_ttl_seconds": 300})
		ctx := context.Background()
		k := s.Keys.Sale(saleID)

		paidTicket := s.Ticket(saleID, "paid-user", time.Minute)
		r := buy(t, s, saleID, paidTicket, `{"quantity":2}`)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		paidID := r.JSON(t)["id"].(string)
		require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/orders/"+paidID+"/confirm", s.ServiceToken, nil).Status)
		r = buy(t, s, saleID, s.Ticket(saleID, "held-user", time.Minute), `{"quantity":1}`)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		heldID := r.JSON(t)["id"].(string)
		r = buy(t, s, saleID, s.Ticket(saleID, "gone-user", time.Minute), `{"quantity":2}`)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/orders/"+r.JSON(t)["id"].(string)+"/cancel", s.AdminToken, nil).Status)
		want := redisUnits(t, s, saleID)
		require.Equal(t, map[string]int{"remaining": 3, "reserved": 0, "held": 1, "sold": 2, "stock": 6}, want)

		require.NoError(t, s.Redis.Del(ctx, k.All()...).Err())

		newcomer := s.Ticket(saleID, "newcomer", time.Minute)
		first := buy(t, s, saleID, newcomer, nil)
		requireError(t, first, 503, "unavailable")
		eventually(t, 10*time.Second, func() bool {
			return s.Redis.Exists(ctx, k.Units).Val() == 1
		}, "the units are rebuilt")
		require.Equal(t, want, redisUnits(t, s, saleID))
		holds, err := s.Redis.ZRange(ctx, k.Holds, 0, -1).Result()
		require.NoError(t, err)
		require.Equal(t, []string{heldID}, holds)

		// Buyers and used tickets are back.
		again := buy(t, s, saleID, s.Ticket(saleID, "held-user", time.Minute), nil)
		requireError(t, again, 409, "already_bought")
		require.Equal(t, heldID, again.JSON(t)["error"].(map[string]any)["order_id"])
		requireError(t, buy(t, s, saleID, paidTicket, nil), 401, "ticket_used")

		// The hold can still be settled, and the sale goes on.
		require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/orders/"+heldID+"/confirm", s.ServiceToken, nil).Status)
		r = buy(t, s, saleID, newcomer, `{"quantity":2}`)
		require.Equal(t, http.StatusCreated, r.Status, "the 503 did not use the ticket up: %s", r.Body)
		u := redisUnits(t, s, saleID)
		require.Equal(t, map[string]int{"remaining": 1, "reserved": 0, "held": 2, "sold": 3, "stock": 6}, u)
		sum := summary(t, s, saleID)
		require.Equal(t, true, sum["consistent"], "summary: %v", sum)
	})
}

// TestReconcilePending: orders a process left pending in Redis (it died
// between the Lua step and MySQL, or before finalizing) are settled by
// reconciliation from what MySQL has.
func TestReconcilePending(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		ctx := context.Background()
		svc, orders := s.Node.Checkout, s.Node.Orders

		// reserve runs the Lua step alone, as a process that died after it.
		reserve := func(saleID, user, jti string, qty int, id string) {
			k := s.Keys.Sale(saleID)
			v, err := checkout.ReserveScript.Run(ctx, s.Redis, []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending},
				user, jti, qty, id).StringSlice()
			require.NoError(t, err)
			require.Equal(t, "ok", v[0], "reserve: %v", v)
		}

		t.Run("MySQL never had it: compensated and undone", func(t *testing.T) {
			saleID := newSale(t, s, map[string]any{"stock": 5})
			before := redisSnapshot(t, s, saleID)
			ord := newOrder(saleID, "u1", checkout.StatusPaid, 1)
			reserve(saleID, "u1", ord.TicketJTI, 1, ord.ID)

			_, err := svc.ReconcilePending(ctx, 0)
			require.NoError(t, err)
			require.Equal(t, before, redisSnapshot(t, s, saleID))
			require.Equal(t, orderRow{Status: "cancelled"}, readOrder(t, s, ord.ID), "a tombstone")
			_, err = orders.Create(ctx, ord)
			require.ErrorIs(t, err, checkout.ErrDuplicate, "a late write of it cannot land")
		})

		t.Run("MySQL has it: finalized", func(t *testing.T) {
			saleID := newSale(t, s, map[string]any{"stock": 5})
			ord := newOrder(saleID, "u2", checkout.StatusPaid, 2)
			reserve(saleID, "u2", ord.TicketJTI, 2, ord.ID)
			_, err := orders.Create(ctx, ord)
			require.NoError(t, err)

			_, err = svc.ReconcilePending(ctx, 0)
			require.NoError(t, err)
			k := s.Keys.Sale(saleID)
			require.Zero(t, s.Redis.HLen(ctx, k.Pending).Val())
			require.Equal(t, ord.ID, s.Redis.HGet(ctx, k.Buyers, "u2").Val())
			require.Equal(t, map[string]int{"remaining": 3, "reserved": 0, "held": 0, "sold": 2, "stock": 5}, redisUnits(t, s, saleID))
			sum := summary(t, s, saleID)
			require.Equal(t, true, sum["consistent"], "summary: %v", sum)
		})

		t.Run("MySQL has it, paid before Redis heard of the hold", func(t *testing.T) {
			saleID := newSale(t, s, map[string]any{"stock": 5, "hold_ttl_seconds": 300})
			ord := newOrder(saleID, "u3", checkout.StatusHeld, 1)
			reserve(saleID, "u3", ord.TicketJTI, 1, ord.ID)
			_, err := orders.Create(ctx, ord)
			require.NoError(t, err)
			// The payment backend confirms it; Redis had no hold to settle.
			_, err = svc.Settle(ctx, ord.ID, checkout.StatusPaid)
			require.NoError(t, err)

			_, err = svc.ReconcilePending(ctx, 0)
			require.NoError(t, err)
			k := s.Keys.Sale(saleID)
			require.Zero(t, s.Redis.HLen(ctx, k.Pending).Val())
			require.Zero(t, s.Redis.ZCard(ctx, k.Holds).Val(), "no hold left for the sweeper")
			require.Equal(t, map[string]int{"remaining": 4, "reserved": 0, "held": 0, "sold": 1, "stock": 5}, redisUnits(t, s, saleID))
			sum := summary(t, s, saleID)
			require.Equal(t, true, sum["consistent"], "summary: %v", sum)
		})

		t.Run("MySQL has it, cancelled before Redis heard of it", func(t *testing.T) {
			saleID := newSale(t, s, map[string]any{"stock": 5, "hold_ttl_seconds": 300})
			ord := newOrder(saleID, "u4", checkout.StatusHeld, 2)
			reserve(saleID, "u4", ord.TicketJTI, 2, ord.ID)
			_, err := orders.Create(ctx, ord)
			require.NoError(t, err)
			_, err = svc.Settle(ctx, ord.ID, checkout.StatusCancelled)
			require.NoError(t, err)

			_, err = svc.ReconcilePending(ctx, 0)
			require.NoError(t, err)
			k := s.Keys.Sale(saleID)
			require.Zero(t, s.Redis.HLen(ctx, k.Pending).Val())
			require.Zero(t, s.Redis.HLen(ctx, k.Buyers).Val())
			require.Equal(t, map[string]int{"remaining": 5, "reserved": 0, "held": 0, "sold": 0, "stock": 5}, redisUnits(t, s, saleID))
			require.Equal(t, "cancelled", readOrder(t, s, ord.ID).Status)
			sum := summary(t, s, saleID)
			require.Equal(t, true, sum["consistent"], "summary: %v", sum)
		})
	})
}
