package node_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// capacityEnv is a running node with helpers to join, read a shopper's
// state and check out, over HTTP.
type capacityEnv struct {
	s    *testenv.Server
	sale string
}

func (e *capacityEnv) join(t *testing.T, user string) {
	t.Helper()
	r := e.s.Do(t, "POST", "/api/v1/sales/"+e.sale+"/join", e.s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
}

func (e *capacityEnv) state(t *testing.T, user string) map[string]any {
	t.Helper()
	r := e.s.Do(t, "GET", "/api/v1/sales/"+e.sale+"/status", e.s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	return r.JSON(t)
}

// admitted waits (a few admitter ticks at most) for the user's ticket.
func (e *capacityEnv) admitted(t *testing.T, user string, within time.Duration) string {
	t.Helper()
	var tok string
	testenv.Eventually(t, within, func() bool {
		st := e.state(t, user)
		tok, _ = st["ticket"].(string)
		return st["state"] == "admitted"
	}, "%s admitted", user)
	return tok
}

// stillWaiting checks, for a second of admitter ticks, that user is not admitted.
func (e *capacityEnv) stillWaiting(t *testing.T, user, why string) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		require.Equal(t, "waiting", e.state(t, user)["state"], why)
	}
}

func (e *capacityEnv) buy(t *testing.T, tok string) string {
	t.Helper()
	r := e.s.Do(t, "POST", "/api/v1/sales/"+e.sale+"/checkout", tok, map[string]any{"quantity": 1})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	return r.JSON(t)["id"].(string)
}

// TestFreedCapacityAdmitsNext: capacity that frees up is used at the
// admitter's next tick. A returned hold (cancelled) lets the next shopper
// in when every unit was reserved; a used ticket frees its place under
// max_active; the sale is sold out only when paid units reach the stock.
func TestFreedCapacityAdmitsNext(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)

	t.Run("a returned hold", func(t *testing.T) {
		t.Parallel()
		e := &capacityEnv{s: s, sale: s.CreateSale(t, map[string]any{"stock": 1, "admission_rate": 50,
			"max_active": 10, "hold_ttl_seconds": 300})["id"].(string)}
		ann, bob := "ann-"+testenv.RandomID(), "bob-"+testenv.RandomID()
		e.join(t, ann)
		tok := e.admitted(t, ann, 5*time.Second)
		e.join(t, bob)
		e.stillWaiting(t, bob, "the one unit is reserved for ann")
		order := e.buy(t, tok)
		e.stillWaiting(t, bob, "the one unit is held by ann")
		require.Equal(t, "open", e.s.Do(t, "GET", "/api/v1/sales/"+e.sale, "", nil).JSON(t)["state"], "held is not sold")

		r := s.Do(t, "POST", "/api/v1/orders/"+order+"/cancel", s.UserToken(t, ann), nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		cancelled := time.Now()
		tok = e.admitted(t, bob, 2*time.Second)
		t.Logf("bob admitted %v after the cancel", time.Since(cancelled).Round(time.Millisecond))
		order = e.buy(t, tok)
		r = s.Do(t, "POST", "/api/v1/orders/"+order+"/confirm", s.ServiceToken, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		testenv.Eventually(t, 5*time.Second, func() bool {
			return e.s.Do(t, "GET", "/api/v1/sales/"+e.sale, "", nil).JSON(t)["state"] == "sold_out"
		}, "sold out once paid = stock")
	})

	t.Run("a used ticket under max_active", func(t *testing.T) {
		t.Parallel()
		e := &capacityEnv{s: s, sale: s.CreateSale(t, map[string]any{"stock": 100, "admission_rate": 50,
			"max_active": 1})["id"].(string)}
		ann, bob := "ann-"+testenv.RandomID(), "bob-"+testenv.RandomID()
		e.join(t, ann)
		tok := e.admitted(t, ann, 5*time.Second)
		e.join(t, bob)
		e.stillWaiting(t, bob, "max_active 1: ann's ticket is live")
		e.buy(t, tok)
		used := time.Now()
		e.admitted(t, bob, 2*time.Second)
		t.Logf("bob admitted %v after ann's ticket was used", time.Since(used).Round(time.Millisecond))
	})
}
