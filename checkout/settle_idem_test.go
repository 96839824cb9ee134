package checkout_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestSettleIdempotencyKey: a retried confirm or cancel with the same
// Idempotency-Key answers byte for byte what the first did (not 409 because
// the order is no longer held) and changes nothing; another body under the
// key is 422; without a key the retry is the honest 409.
func TestSettleIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"stock": 5, "hold_ttl_seconds": 300})
	hold := func(user string) string {
		r := buy(t, s, saleID, s.Ticket(saleID, user, time.Minute), nil)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		require.Equal(t, "held", r.JSON(t)["status"])
		return r.JSON(t)["id"].(string)
	}

	// Confirm by the payment service, twice with one key.
	paid := hold("payer")
	first := s.Do(t, "POST", "/api/v1/orders/"+paid+"/confirm", s.ServiceToken, nil, "Idempotency-Key", "pay-1")
	require.Equal(t, http.StatusOK, first.Status, "%s", first.Body)
	require.Equal(t, "paid", first.JSON(t)["status"])
	again := s.Do(t, "POST", "/api/v1/orders/"+paid+"/confirm", s.ServiceToken, nil, "Idempotency-Key", "pay-1")
	require.Equal(t, first.Status, again.Status)
	require.Equal(t, string(first.Body), string(again.Body), "a byte-for-byte replay")
	requireError(t, s.Do(t, "POST", "/api/v1/orders/"+paid+"/confirm", s.ServiceToken, `{"x":1}`, "Idempotency-Key", "pay-1"),
		http.StatusUnprocessableEntity, "idempotency_mismatch")
	requireError(t, s.Do(t, "POST", "/api/v1/orders/"+paid+"/confirm", s.ServiceToken, nil),
		http.StatusConflict, "order_not_held")
	// The key is the service's: the admin using it confirms afresh (and
	// gets the honest 409).
	requireError(t, s.Do(t, "POST", "/api/v1/orders/"+paid+"/confirm", s.AdminToken, nil, "Idempotency-Key", "pay-1"),
		http.StatusConflict, "order_not_held")

	// Cancel by the owner, twice with one key: the units return once.
	gone := hold("canceller")
	owner := s.UserToken(t, "canceller")
	c1 := s.Do(t, "POST", "/api/v1/orders/"+gone+"/cancel", owner, nil, "Idempotency-Key", "undo-1")
	require.Equal(t, http.StatusOK, c1.Status, "%s", c1.Body)
	require.Equal(t, "cancelled", c1.JSON(t)["status"])
	units := redisUnits(t, s, saleID)
	c2 := s.Do(t, "POST", "/api/v1/orders/"+gone+"/cancel", owner, nil, "Idempotency-Key", "undo-1")
	require.Equal(t, string(c1.Body), string(c2.Body))
	require.Equal(t, units, redisUnits(t, s, saleID), "the replay changed nothing")
	require.Equal(t, 4, units["remaining"], "one paid unit gone, the cancelled one back")

	// The same key on another action or order is another request.
	other := hold("third")
	r := s.Do(t, "POST", "/api/v1/orders/"+other+"/confirm", s.ServiceToken, nil, "Idempotency-Key", "pay-1")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	require.Equal(t, other, r.JSON(t)["id"])
}
