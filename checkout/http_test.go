package checkout_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// TestCheckoutBadInput: bodies the contract refuses get its code, create
// no order and leave the ticket able to buy.
func TestCheckoutBadInput(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"per_user_limit": 2})
	const user = "bob"
	tok := s.Ticket(saleID, user, 5*time.Minute)
	big := `{"quantity":1,"pad":"` + strings.Repeat("x", 2<<20) + `"}`
	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{name: "unknown field", body: `{"quantity":1,"colour":"red"}`, status: 422, code: "invalid_request"},
		{name: "quantity 0", body: `{"quantity":0}`, status: 422, code: "invalid_request"},
		{name: "quantity -1", body: `{"quantity":-1}`, status: 422, code: "invalid_request"},
		{name: "quantity per_user_limit+1", body: `{"quantity":3}`, status: 422, code: "invalid_request"},
		{name: "quantity huge", body: `{"quantity":1e30}`, status: 422, code: "invalid_request"},
		{name: "quantity a string", body: `{"quantity":"abc"}`, status: 422, code: "invalid_request"},
		{name: "quantity a numeric string", body: `{"quantity":"1"}`, status: 422, code: "invalid_request"},
		{name: "quantity 1.5", body: `{"quantity":1.5}`, status: 422, code: "invalid_request"},
		{name: "malformed JSON", body: `{"quantity":`, status: 422, code: "invalid_request"},
		{name: "not an object", body: `[1]`, status: 422, code: "invalid_request"},
		{name: "trailing data", body: `{"quantity":1}{"quantity":2}`, status: 422, code: "invalid_request"},
		{name: "2 MiB body", body: big, status: 413, code: "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := buy(t, s, saleID, tok, tt.body)
			requireError(t, r, tt.status, tt.code)
			require.Zero(t, orderRows(t, s, saleID), "no order")
		})
	}
	u := redisUnits(t, s, saleID)
	require.Equal(t, 10, u["remaining"], "no unit taken: %v", u)

	r := buy(t, s, saleID, tok, `{"quantity":2}`)
	require.Equal(t, http.StatusCreated, r.Status, "the ticket still buys: %s", r.Body)
	require.EqualValues(t, 2, r.JSON(t)["quantity"])
	require.EqualValues(t, 2000, r.JSON(t)["amount_cents"])
}

// TestCheckoutIdempotency: a retried request with the same Idempotency-Key
// gets the same answer and changes nothing (invariant 6).
func TestCheckoutIdempotency(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		saleID := newSale(t, s, map[string]any{"per_user_limit": 2})
		ctx := context.Background()
		k := s.Keys.Sale(saleID)

		t.Run("same key, same body: replayed byte for byte", func(t *testing.T) {
			tok := s.Ticket(saleID, "ida", time.Minute)
			first := buy(t, s, saleID, tok, `{"quantity":2}`, "Idempotency-Key", "k-1")
			require.Equal(t, http.StatusCreated, first.Status, "%s", first.Body)
			for range 3 {
				again := buy(t, s, saleID, tok, `{"quantity":2}`, "Idempotency-Key", "k-1")
				require.Equal(t, first.Status, again.Status)
				require.Equal(t, string(first.Body), string(again.Body))
			}
			count, units := liveOrders(t, s, saleID)
			require.Equal(t, 1, count)
			require.Equal(t, 2, units)
			require.Equal(t, 2, redisUnits(t, s, saleID)["sold"])

			// Same key, another body: refused, and still nothing changes.
			r := buy(t, s, saleID, tok, `{"quantity":1}`, "Idempotency-Key", "k-1")
			requireError(t, r, 422, "idempotency_mismatch")
			r = buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-1")
			requireError(t, r, 422, "idempotency_mismatch")
			require.Equal(t, 1, orderRows(t, s, saleID))

			// The same key is another user's own.
			other := buy(t, s, saleID, s.Ticket(saleID, "idb", time.Minute), `{"quantity":2}`, "Idempotency-Key", "k-1")
			require.Equal(t, http.StatusCreated, other.Status, "%s", other.Body)
			require.NotEqual(t, first.JSON(t)["id"], other.JSON(t)["id"])
		})

		t.Run("a key over 255 bytes", func(t *testing.T) {
			r := buy(t, s, saleID, s.Ticket(saleID, "idg", time.Minute), nil, "Idempotency-Key", strings.Repeat("k", 256))
			requireError(t, r, 422, "invalid_request")
			require.Zero(t, buyerCount(t, s, saleID, "idg"))
		})

		t.Run("a refusal is replayed too", func(t *testing.T) {
			tok := s.Ticket(saleID, "idc", time.Minute)
			first := buy(t, s, saleID, tok, `{"quantity":0}`, "Idempotency-Key", "k-bad")
			requireError(t, first, 422, "invalid_request")
			again := buy(t, s, saleID, tok, `{"quantity":0}`, "Idempotency-Key", "k-bad")
			require.Equal(t, string(first.Body), string(again.Body))
		})

		t.Run("in flight", func(t *testing.T) {
			// Another request holds the key (its claim, as idempotency.go
			// writes it): 409, and the claim is left alone.
			body := `{"quantity":1}`
			sum := sha256.Sum256([]byte(body))
			claim := `{"s":"inflight","h":"` + hex.EncodeToString(sum[:]) + `"}`
			key := k.Idem("idd", "k-busy")
			require.NoError(t, s.Redis.Set(ctx, key, claim, time.Minute).Err())
			r := buy(t, s, saleID, s.Ticket(saleID, "idd", time.Minute), body, "Idempotency-Key", "k-busy")
			requireError(t, r, 409, "idempotency_in_progress")
			v, err := s.Redis.Get(ctx, key).Result()
			require.NoError(t, err)
			require.Equal(t, claim, v)
			require.Zero(t, buyerCount(t, s, saleID, "idd"))
		})

		t.Run("replayed after the ticket expired", func(t *testing.T) {
			now := time.Now()
			tok := s.Issuer.Ticket(ticket.Admission{Sale: saleID, User: "ide", JTI: "short-" + testenv.RandomID(),
				IssuedAt: now.Unix(), ExpiresAt: now.Add(3 * time.Second).Unix()})
			first := buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-exp")
			require.Equal(t, http.StatusCreated, first.Status, "%s", first.Body)
			eventually(t, 5*time.Second, func() bool {
				return buy(t, s, saleID, tok, nil).Code(t) == "ticket_expired"
			}, "the ticket expires")
			again := buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-exp")
			require.Equal(t, first.Status, again.Status)
			require.Equal(t, string(first.Body), string(again.Body))
		})

		t.Run("replayed from MySQL after Redis lost the reply", func(t *testing.T) {
			tok := s.Ticket(saleID, "idf", time.Minute)
			first := buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-lost")
			require.Equal(t, http.StatusCreated, first.Status, "%s", first.Body)
			require.EqualValues(t, 1, s.Redis.Del(ctx, k.Idem("idf", "k-lost")).Val())
			before := orderRows(t, s, saleID)

			again := buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-lost")
			require.Equal(t, http.StatusCreated, again.Status, "%s", again.Body)
			require.Equal(t, first.JSON(t), again.JSON(t))
			require.Equal(t, before, orderRows(t, s, saleID), "no second order")
			require.EqualValues(t, 1, s.Redis.Exists(ctx, k.Idem("idf", "k-lost")).Val(), "the reply is stored again")

			// Lost again, and now replayed with another quantity: a mismatch,
			// and the original request still replays after it.
			require.EqualValues(t, 1, s.Redis.Del(ctx, k.Idem("idf", "k-lost")).Val())
			r := buy(t, s, saleID, tok, `{"quantity":2}`, "Idempotency-Key", "k-lost")
			requireError(t, r, 422, "idempotency_mismatch")
			again = buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-lost")
			require.Equal(t, http.StatusCreated, again.Status, "%s", again.Body)
			require.Equal(t, first.JSON(t), again.JSON(t))
			require.Equal(t, before, orderRows(t, s, saleID), "no second order")
		})
	})
}

// buyerCount is 1 when Redis records user as a buyer of the sale.
func buyerCount(t *testing.T, s *testenv.Server, saleID, user string) int {
	t.Helper()
	n, err := s.Redis.HExists(context.Background(), s.Keys.Sale(saleID).Buyers, user).Result()
	require.NoError(t, err)
	if n {
		return 1
	}
	return 0
}

// TestOrders: who may see, confirm and cancel an order, and what each does
// to the units.
func TestOrders(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"stock": 5, "hold_ttl_seconds": 300})
	alice, bob, carol := s.UserToken(t, "alice"), s.UserToken(t, "bob"), s.UserToken(t, "carol")

	r := buy(t, s, saleID, s.Ticket(saleID, "alice", time.Minute), nil)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	ord := r.JSON(t)
	id := ord["id"].(string)
	require.Equal(t, "held", ord["status"])
	require.NotNil(t, ord["hold_expires_at"])
	require.Equal(t, 1, redisUnits(t, s, saleID)["held"])
	path := "/api/v1/orders/" + id

	t.Run("read", func(t *testing.T) {
		got := s.Do(t, "GET", path, alice, nil)
		require.Equal(t, http.StatusOK, got.Status, "%s", got.Body)
		require.Equal(t, ord, got.JSON(t))
		for _, tok := range []string{s.AdminToken, s.ServiceToken} {
			require.Equal(t, http.StatusOK, s.Do(t, "GET", path, tok, nil).Status)
		}
		requireError(t, s.Do(t, "GET", path, bob, nil), 404, "not_found")
		requireError(t, s.Do(t, "GET", path, "", nil), 401, "unauthorized")
		requireError(t, s.Do(t, "GET", path, s.Ticket(saleID, "alice", time.Minute), nil), 401, "unauthorized")
		requireError(t, s.Do(t, "GET", "/api/v1/orders/ord_nosuchorder", alice, nil), 404, "not_found")
	})

	t.Run("only the service or an operator confirms", func(t *testing.T) {
		requireError(t, s.Do(t, "POST", path+"/confirm", alice, nil), 403, "forbidden")
		requireError(t, s.Do(t, "POST", path+"/confirm", bob, nil), 403, "forbidden")
		requireError(t, s.Do(t, "POST", path+"/cancel", bob, nil), 404, "not_found")
		requireError(t, s.Do(t, "POST", "/api/v1/dev/orders/"+id+"/pay", alice, nil), 404, "not_found")
		got := s.Do(t, "GET", path, alice, nil)
		require.Equal(t, "held", got.JSON(t)["status"], "still held")

		c := s.Do(t, "POST", path+"/confirm", s.ServiceToken, nil)
		require.Equal(t, http.StatusOK, c.Status, "%s", c.Body)
		require.Equal(t, "paid", c.JSON(t)["status"])
		require.Equal(t, id, c.JSON(t)["id"])
		u := redisUnits(t, s, saleID)
		require.Equal(t, 0, u["held"])
		require.Equal(t, 1, u["sold"])
		sold, held := saleRow(t, s, saleID)
		require.Equal(t, [2]int{1, 0}, [2]int{sold, held})

		requireError(t, s.Do(t, "POST", path+"/confirm", s.AdminToken, nil), 409, "order_not_held")
		requireError(t, s.Do(t, "POST", path+"/cancel", alice, nil), 409, "order_not_held")
	})

	t.Run("the owner cancels a hold", func(t *testing.T) {
		r := buy(t, s, saleID, s.Ticket(saleID, "carol", time.Minute), nil)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		cid := r.JSON(t)["id"].(string)
		before := redisUnits(t, s, saleID)

		c := s.Do(t, "POST", "/api/v1/orders/"+cid+"/cancel", carol, nil)
		require.Equal(t, http.StatusOK, c.Status, "%s", c.Body)
		require.Equal(t, "cancelled", c.JSON(t)["status"])
		after := redisUnits(t, s, saleID)
		require.Equal(t, before["remaining"]+1, after["remaining"], "the unit is back")
		require.Equal(t, before["held"]-1, after["held"])
		requireUnitsAddUp(t, after)
		_, held := saleRow(t, s, saleID)
		require.Zero(t, held)
		require.Zero(t, buyerCount(t, s, saleID, "carol"), "carol may buy again")

		requireError(t, s.Do(t, "POST", "/api/v1/orders/"+cid+"/confirm", s.ServiceToken, nil), 409, "order_not_held")
		requireError(t, s.Do(t, "POST", "/api/v1/orders/"+cid+"/cancel", carol, nil), 409, "order_not_held")

		again := buy(t, s, saleID, s.Ticket(saleID, "carol", time.Minute), nil)
		require.Equal(t, http.StatusCreated, again.Status, "a new ticket buys after a cancel: %s", again.Body)
	})
}

// TestOrdersSettleRace: confirm and cancel of one held order race; exactly
// one wins, the other gets 409 order_not_held, and the units follow the
// winner.
func TestOrdersSettleRace(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	const n = 20
	saleID := newSale(t, s, map[string]any{"stock": n, "hold_ttl_seconds": 300})
	ids := make([]string, n)
	for i := range ids {
		user := "racer-" + testenv.RandomID()
		r := buy(t, s, saleID, s.Ticket(saleID, user, time.Minute), nil)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		ids[i] = r.JSON(t)["id"].(string)
	}
	type result struct{ confirm, cancel answer }
	results := make([]result, n)
	client := stormClient(t)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, id := range ids {
		url := s.URL + "/api/v1/orders/" + id
		wg.Go(func() { <-start; results[i].confirm = send(client, "POST", url+"/confirm", s.ServiceToken, nil) })
		wg.Go(func() { <-start; results[i].cancel = send(client, "POST", url+"/cancel", s.AdminToken, nil) })
	}
	close(start)
	wg.Wait()
	paid := 0
	for i, r := range results {
		require.NoError(t, r.confirm.err)
		require.NoError(t, r.cancel.err)
		statuses := []int{r.confirm.status, r.cancel.status}
		require.ElementsMatch(t, []int{200, 409}, statuses, "order %s: confirm %s, cancel %s", ids[i], r.confirm.body, r.cancel.body)
		if r.confirm.status == 200 {
			paid++
			require.Equal(t, "order_not_held", r.cancel.code)
		} else {
			require.Equal(t, "order_not_held", r.confirm.code)
		}
	}
	u := redisUnits(t, s, saleID)
	require.Equal(t, paid, u["sold"])
	require.Equal(t, n-paid, u["remaining"])
	require.Zero(t, u["held"])
	requireUnitsAddUp(t, u)
	sum := summary(t, s, saleID)
	require.Equal(t, true, sum["consistent"], "summary: %v", sum)
}

// TestHoldExpires: an unconfirmed hold expires once (the node's sweeper),
// and its units return.
func TestHoldExpires(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		saleID := newSale(t, s, map[string]any{"stock": 3, "hold_ttl_seconds": 1})
		tok := s.UserToken(t, "dora")
		r := buy(t, s, saleID, s.Ticket(saleID, "dora", time.Minute), `{"quantity":1}`)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		ord := r.JSON(t)
		require.Equal(t, "held", ord["status"])
		path := "/api/v1/orders/" + ord["id"].(string)
		require.Equal(t, 2, redisUnits(t, s, saleID)["remaining"])

		eventually(t, 10*time.Second, func() bool {
			return s.Do(t, "GET", path, tok, nil).JSON(t)["status"] == "expired"
		}, "the hold expires")
		u := redisUnits(t, s, saleID)
		require.Equal(t, 3, u["remaining"], "units back: %v", u)
		require.Zero(t, u["held"])
		sold, held := saleRow(t, s, saleID)
		require.Equal(t, [2]int{0, 0}, [2]int{sold, held})
		require.Zero(t, buyerCount(t, s, saleID, "dora"))
		sum := summary(t, s, saleID)
		require.Equal(t, true, sum["consistent"], "summary: %v", sum)

		requireError(t, s.Do(t, "POST", path+"/confirm", s.ServiceToken, nil), 409, "order_not_held")
		requireError(t, s.Do(t, "POST", path+"/cancel", tok, nil), 409, "order_not_held")
		require.Equal(t, 3, redisUnits(t, s, saleID)["remaining"], "expired once")
	})
}

// redisSnapshot is every key of a sale the checkout touches, for "Redis is
// unchanged" comparisons.
func redisSnapshot(t *testing.T, s *testenv.Server, saleID string) map[string]any {
	t.Helper()
	ctx := context.Background()
	k := s.Keys.Sale(saleID)
	out := map[string]any{}
	for name, key := range map[string]string{"units": k.Units, "tix": k.Tix, "buyers": k.Buyers, "jti": k.JTI,
		"pending": k.Pending, "orders": k.Orders, "stats": k.Stats} {
		m, err := s.Redis.HGetAll(ctx, key).Result()
		require.NoError(t, err)
		out[name] = m
	}
	for name, key := range map[string]string{"adm": k.Adm, "holds": k.Holds} {
		z, err := s.Redis.ZRangeWithScores(ctx, key, 0, -1).Result()
		require.NoError(t, err)
		out[name] = z
	}
	return out
}

// admit writes an admission record for user reserving r units (as the
// admitter would) and returns its ticket.
func admit(t *testing.T, s *testenv.Server, saleID, user string, r int) string {
	t.Helper()
	ctx := context.Background()
	k := s.Keys.Sale(saleID)
	now := time.Now().Unix()
	a := ticket.Admission{Sale: saleID, User: user, JTI: "adm-" + testenv.RandomID(), IssuedAt: now, ExpiresAt: now + 300}
	rec := sale.Admission{JTI: a.JTI, IssuedAt: a.IssuedAt, Expires: a.ExpiresAt, Reserved: r}
	require.NoError(t, s.Redis.HSet(ctx, k.Tix, user, rec.Encode()).Err())
	require.NoError(t, s.Redis.ZAdd(ctx, k.Adm, redisZ(float64(a.ExpiresAt*1000), user)).Err())
	require.NoError(t, s.Redis.HIncrBy(ctx, k.Units, "reserved", int64(r)).Err())
	return s.Issuer.Ticket(a)
}

// TestCheckoutGuardRefusal: Redis takes the unit but MySQL's guard refuses
// the order (the sales row says every unit is gone). The answer is 410
// sold_out, Redis is put back exactly (units, reservation, buyer, ticket),
// no order lives, and the ticket still buys once MySQL has room.
func TestCheckoutGuardRefusal(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"stock": 5, "per_user_limit": 2})
	tok := admit(t, s, saleID, "erin", 2)
	before := redisSnapshot(t, s, saleID)
	_, err := s.DB.Exec(`UPDATE sales SET sold = stock_total WHERE id = ?`, saleID)
	require.NoError(t, err)

	r := buy(t, s, saleID, tok, `{"quantity":1}`)
	requireError(t, r, 410, "sold_out")
	eventually(t, 5*time.Second, func() bool {
		return equalJSON(before, redisSnapshot(t, s, saleID))
	}, "Redis put back as it was")
	require.Equal(t, before, redisSnapshot(t, s, saleID))
	require.Zero(t, orderRows(t, s, saleID))

	_, err = s.DB.Exec(`UPDATE sales SET sold = 0 WHERE id = ?`, saleID)
	require.NoError(t, err)
	r = buy(t, s, saleID, tok, `{"quantity":2}`)
	require.Equal(t, http.StatusCreated, r.Status, "the ticket was not used up: %s", r.Body)
	u := redisUnits(t, s, saleID)
	require.Equal(t, map[string]int{"remaining": 3, "reserved": 0, "held": 0, "sold": 2, "stock": 5}, u)
}

// TestCheckoutMySQLStuck: MySQL does not answer in time (the sale's row is
// locked by another transaction), so the order's outcome is unknown. The
// answer is 503 with Retry-After and is not stored under the
// Idempotency-Key; the order never lives, the ticket is not used up, and a
// retry buys once MySQL is back.
func TestCheckoutMySQLStuck(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits out the 4 s write timeout; skipped with -short")
	}
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"stock": 5})
	ctx := context.Background()
	k := s.Keys.Sale(saleID)
	tok := admit(t, s, saleID, "finn", 1)
	before := redisSnapshot(t, s, saleID)

	tx, err := s.DB.BeginTx(ctx, nil)
	require.NoError(t, err)
	var sold int
	require.NoError(t, tx.QueryRow(`SELECT sold FROM sales WHERE id = ? FOR UPDATE`, saleID).Scan(&sold))
	r := buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-stuck")
	requireError(t, r, 503, "unavailable")
	require.EqualValues(t, 0, s.Redis.Exists(ctx, k.Idem("finn", "k-stuck")).Val(), "a 503 is never stored")
	require.NoError(t, tx.Rollback())

	eventually(t, 20*time.Second, func() bool {
		return equalJSON(before, redisSnapshot(t, s, saleID))
	}, "the compensation puts Redis back")
	count, _ := liveOrders(t, s, saleID)
	require.Zero(t, count, "the order answered 503 never lives")
	var status string
	err = s.DB.QueryRow(`SELECT status FROM orders WHERE sale_id = ?`, saleID).Scan(&status)
	require.NoError(t, err, "a tombstone keeps the order's id from ever committing")
	require.Equal(t, "cancelled", status)
	soldNow, held := saleRow(t, s, saleID)
	require.Equal(t, [2]int{0, 0}, [2]int{soldNow, held})

	again := buy(t, s, saleID, tok, nil, "Idempotency-Key", "k-stuck")
	require.Equal(t, http.StatusCreated, again.Status, "the retry buys: %s", again.Body)
	count, _ = liveOrders(t, s, saleID)
	require.Equal(t, 1, count)
	sum := summary(t, s, saleID)
	require.Equal(t, true, sum["consistent"], "summary: %v", sum)
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestCheckoutSaleState: a paused sale still sells to live tickets; a closed
// one does not (410 sale_closed), though its holds can still be confirmed.
func TestCheckoutSaleState(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, map[string]any{"stock": 5, "hold_ttl_seconds": 300})
	patch := func(state string) {
		t.Helper()
		r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+saleID, s.AdminToken, map[string]any{"state": state})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	}
	patch("paused")
	r := buy(t, s, saleID, s.Ticket(saleID, "gus", time.Minute), nil)
	require.Equal(t, http.StatusCreated, r.Status, "a paused sale sells to live tickets: %s", r.Body)
	held := r.JSON(t)["id"].(string)

	patch("closed")
	before := redisUnits(t, s, saleID)
	requireError(t, buy(t, s, saleID, s.Ticket(saleID, "hal", time.Minute), nil), 410, "sale_closed")
	require.Equal(t, before, redisUnits(t, s, saleID))
	require.Equal(t, 1, orderRows(t, s, saleID))

	c := s.Do(t, "POST", "/api/v1/orders/"+held+"/confirm", s.ServiceToken, nil)
	require.Equal(t, http.StatusOK, c.Status, "a hold of a closed sale is confirmed: %s", c.Body)
	require.Equal(t, "paid", c.JSON(t)["status"])
}
