package node_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestLiveControl: the operator's rate and max_active take effect at the
// admitter's next tick, while the sale runs.
func TestLiveControl(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	id := s.CreateSale(t, map[string]any{"stock": 1000, "admission_rate": 0.2, "max_active": 1000})["id"].(string)
	for i := range 80 {
		r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, "w"+testenv.RandomID()+string(rune('a'+i%26))), nil)
		require.Equal(t, http.StatusOK, r.Status)
	}
	admitted := func() int64 {
		v, _ := s.Redis.HGet(t.Context(), s.Keys.Sale(id).Stats, "admitted_total").Int64()
		return v
	}
	active := func() float64 {
		return s.Do(t, "GET", "/api/v1/admin/sales/"+id+"/summary", s.AdminToken, nil).JSON(t)["active"].(float64)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return admitted() >= 1 }, "the first admission at 0.2/s")
	before := admitted()
	require.LessOrEqual(t, before, int64(2), "0.2/s admits one at a time")

	// Raise the rate: 40/s (a burst of 40 at once, then 40/s).
	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"admission_rate": 40})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	require.Equal(t, 40.0, r.JSON(t)["admission_rate"])
	changed := time.Now()
	testenv.Eventually(t, 3*time.Second, func() bool { return admitted() >= before+40 }, "40 admissions after the raise")
	require.Less(t, time.Since(changed), 3*time.Second)

	// Cap max_active at what is live now: admission stops at once.
	live := int(active())
	r = s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"max_active": live})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	stopped := admitted()
	// Let a few ticks pass (watching, not sleeping): the count must not move.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		require.LessOrEqual(t, admitted(), stopped+2, "at most what a tick in flight admitted")
		require.LessOrEqual(t, active(), float64(live+2))
	}
}
