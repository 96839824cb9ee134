package node_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestPasses: an operator's pass lets its user join with no challenge and
// be admitted at the next tick ahead of the queue, even when the rate has
// no room (within max_active and the units; it counts as an admission);
// once. A pass of another user or sale is 403 forbidden; a used or expired
// one 403 challenge_failed.
func TestPasses(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, map[string]any{"admission_rate": 0.001, "join_challenge": "pow", "pow_difficulty": 30,
		"stock": 10})["id"].(string)
	other := s.CreateSale(t, nil)["id"].(string)
	pass := func(saleID, user string, ttl int) string {
		r := s.Do(t, "POST", "/api/v1/admin/sales/"+saleID+"/passes", s.AdminToken, map[string]any{"user_id": user, "ttl_seconds": ttl})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		b := r.JSON(t)
		require.Equal(t, user, b["user_id"])
		require.Equal(t, saleID, b["sale_id"])
		return b["pass"].(string)
	}
	join := func(saleID, user string, body any) *testenv.Response {
		return s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), body)
	}
	status := func(user string) map[string]any {
		return s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", s.UserToken(t, user), nil).JSON(t)
	}
	// the rate's one burst goes to a first joiner (with a pass too: the
	// challenge is out of reach at difficulty 30)
	require.Equal(t, http.StatusOK, join(saleID, "first", map[string]any{"pass": pass(saleID, "first", 60)}).Status)
	testenv.Eventually(t, 5*time.Second, func() bool { return status("first")["state"] == "admitted" }, "first admitted")

	vip := pass(saleID, "vip-7", 3600)
	failed := func(r *testenv.Response, code string) {
		t.Helper()
		require.Equal(t, http.StatusForbidden, r.Status, "%s", r.Body)
		require.Equal(t, code, r.Code(t))
	}
	failed(join(saleID, "mallory", map[string]any{"pass": vip}), "forbidden")
	failed(join(other, "vip-7", map[string]any{"pass": vip}), "forbidden")
	failed(join(saleID, "vip-7", map[string]any{"pass": "not-a-pass"}), "challenge_failed")
	failed(join(saleID, "vip-7", map[string]any{"pass": s.Ticket(saleID, "vip-7", time.Minute)}), "challenge_failed")

	before := s.Do(t, "GET", "/api/v1/admin/sales/"+saleID+"/summary", s.AdminToken, nil).JSON(t)["admitted_total"].(float64)
	r := join(saleID, "vip-7", map[string]any{"pass": vip})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	testenv.Eventually(t, 3*time.Second, func() bool { return status("vip-7")["state"] == "admitted" },
		"the pass holder is admitted at the next tick, though the rate has no room")
	after := s.Do(t, "GET", "/api/v1/admin/sales/"+saleID+"/summary", s.AdminToken, nil).JSON(t)["admitted_total"].(float64)
	require.Equal(t, before+1, after, "it counts as an admission")

	// one use
	p9 := pass(saleID, "vip-9", 3600)
	require.Equal(t, http.StatusOK, join(saleID, "vip-9", map[string]any{"pass": p9}).Status)
	require.Equal(t, http.StatusNoContent, s.Do(t, "DELETE", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, "vip-9"), nil).Status)
	failed(join(saleID, "vip-9", map[string]any{"pass": p9}), "challenge_failed")
	// expired
	short := pass(saleID, "vip-10", 1)
	testenv.Eventually(t, 5*time.Second, func() bool {
		r := join(saleID, "vip-10", map[string]any{"pass": short})
		return r.Status == http.StatusForbidden && r.Code(t) == "challenge_failed"
	}, "an expired pass fails")
	// bad bodies
	for _, body := range []map[string]any{{"user_id": "", "ttl_seconds": 5}, {"user_id": "x"}, {"user_id": "x", "ttl_seconds": 0},
		{"user_id": "x", "ttl_seconds": 5, "extra": 1}} {
		r := s.Do(t, "POST", "/api/v1/admin/sales/"+saleID+"/passes", s.AdminToken, body)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v: %s", body, r.Body)
	}
	require.Equal(t, http.StatusNotFound, s.Do(t, "POST", "/api/v1/admin/sales/nope/passes", s.AdminToken,
		map[string]any{"user_id": "x", "ttl_seconds": 5}).Status)
}
