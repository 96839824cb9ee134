package checkout_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestIdempotencyKeysOfUsersNeverMeet: the stored reply of one user's key
// is never another's, however the user id and the key split ("alice:k" with
// key "1" against "alice" with key "k:1").
func TestIdempotencyKeysOfUsersNeverMeet(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"stock": 10})
	a := buy(t, s, saleID, s.Ticket(saleID, "alice", time.Minute), nil, "Idempotency-Key", "k:1")
	require.Equal(t, http.StatusCreated, a.Status, "%s", a.Body)
	b := buy(t, s, saleID, s.Ticket(saleID, "alice:k", time.Minute), nil, "Idempotency-Key", "1")
	require.Equal(t, http.StatusCreated, b.Status, "%s", b.Body)
	require.Equal(t, "alice:k", b.JSON(t)["user_id"], "not alice's stored answer")
	require.NotEqual(t, a.JSON(t)["id"], b.JSON(t)["id"])
	count, _ := liveOrders(t, s, saleID)
	require.Equal(t, 2, count)
}

// TestIdempotencyKeyNotUTF8: a key MySQL could not keep is a 422 before
// anything happens, and the ticket still buys.
func TestIdempotencyKeyNotUTF8(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"stock": 10})
	tok := s.Ticket(saleID, "uwe", time.Minute)
	before := redisSnapshot(t, s, saleID)
	r := buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-\xff\xfe")
	requireError(t, r, 422, "invalid_request")
	require.Contains(t, string(r.Body), "Idempotency-Key")
	require.Equal(t, before, redisSnapshot(t, s, saleID))
	require.Zero(t, orderRows(t, s, saleID))
	ok := buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-ü")
	require.Equal(t, http.StatusCreated, ok.Status, "%s", ok.Body)
	again := buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-ü")
	require.Equal(t, string(ok.Body), string(again.Body))
}
