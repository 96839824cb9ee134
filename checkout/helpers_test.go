package checkout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// checkoutPath is the checkout endpoint of a sale.
func checkoutPath(saleID string) string { return "/api/v1/sales/" + saleID + "/checkout" }

// buy checks out with a ticket; body nil sends none.
func buy(t *testing.T, s *testenv.Server, saleID, tok string, body any, headers ...string) *testenv.Response {
	t.Helper()
	return s.Do(t, "POST", checkoutPath(saleID), tok, body, headers...)
}

// requireError checks an error answer's status and contract code.
func requireError(t *testing.T, r *testenv.Response, status int, code string) {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	require.Equal(t, code, r.Code(t), "body: %s", r.Body)
	if status == http.StatusServiceUnavailable {
		require.NotEmpty(t, r.Header.Get("Retry-After"), "a 503 has Retry-After")
	}
}

// newSale creates a sale and returns its id.
func newSale(t *testing.T, s *testenv.Server, fields map[string]any) string {
	t.Helper()
	return s.CreateSale(t, fields)["id"].(string)
}

// orderRows counts every row of the sale in MySQL's orders, tombstones
// included.
func orderRows(t *testing.T, s *testenv.Server, saleID string) int {
	t.Helper()
	var n int
	require.NoError(t, s.DB.QueryRow(`SELECT COUNT(*) FROM orders WHERE sale_id = ?`, saleID).Scan(&n))
	return n
}

// liveOrders counts the sale's live orders in MySQL and their units.
func liveOrders(t *testing.T, s *testenv.Server, saleID string) (count, units int) {
	t.Helper()
	require.NoError(t, s.DB.QueryRow(`SELECT COUNT(*), COALESCE(SUM(quantity), 0) FROM orders
		WHERE sale_id = ? AND status IN ('held','paid')`, saleID).Scan(&count, &units))
	return count, units
}

// saleRow is the MySQL sales row's guarded counts.
func saleRow(t *testing.T, s *testenv.Server, saleID string) (sold, held int) {
	t.Helper()
	require.NoError(t, s.DB.QueryRow(`SELECT sold, held FROM sales WHERE id = ?`, saleID).Scan(&sold, &held))
	return sold, held
}

// redisUnits reads the sale's units hash in Redis.
func redisUnits(t *testing.T, s *testenv.Server, saleID string) map[string]int {
	t.Helper()
	m, err := s.Redis.HGetAll(context.Background(), s.Keys.Sale(saleID).Units).Result()
	require.NoError(t, err)
	out := map[string]int{}
	for k, v := range m {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "units %s = %q", k, v)
		out[k] = n
	}
	return out
}

// requireUnitsAddUp checks invariant 1 in Redis.
func requireUnitsAddUp(t *testing.T, u map[string]int) {
	t.Helper()
	require.Equal(t, u["stock"], u["remaining"]+u["held"]+u["sold"], "remaining+held+sold = stock: %v", u)
}

// summary reads the operator's summary of a sale.
func summary(t *testing.T, s *testenv.Server, saleID string) map[string]any {
	t.Helper()
	r := s.Do(t, "GET", "/api/v1/admin/sales/"+saleID+"/summary", s.AdminToken, nil)
	require.Equal(t, http.StatusOK, r.Status, "summary: %s", r.Body)
	return r.JSON(t)
}

// answer is one HTTP answer in a storm, collected off the test goroutine.
type answer struct {
	user   string
	status int
	code   string
	order  string
	retry  string
	body   []byte
	err    error
}

// send sends a request without the testing.T (goroutines other than the
// test's must not call t.FailNow).
func send(client *http.Client, method, url, tok string, body []byte) answer {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: err}
	}
	a := answer{status: resp.StatusCode, body: b, retry: resp.Header.Get("Retry-After")}
	var m struct {
		ID    string `json:"id"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		a.err = fmt.Errorf("status %d, body %q: %w", resp.StatusCode, b, err)
		return a
	}
	a.code, a.order = m.Error.Code, m.ID
	return a
}

// eventually polls cond until it holds, failing the test at the deadline.
func eventually(t *testing.T, within time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	testenv.Eventually(t, within, cond, msg, args...)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }
