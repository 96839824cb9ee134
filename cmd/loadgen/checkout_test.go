package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// A checkout run against a real node sells out a small sale and checks its
// orders in MySQL: they agree with the 201s. Then an order MySQL has that
// no one was answered (written behind the node's back) and a 201 MySQL
// lacks each make the check fail, and so does a wrk-style count.
func TestCheckoutRunVerifiesOrders(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := "lg-" + testenv.RandomID()
	s.CreateSale(t, map[string]any{"id": saleID, "stock": 40})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "admin-token"), []byte(s.AdminToken+"\n"), 0o600))
	o := options{url: s.URL, sale: saleID, dataDir: dir, keyPath: s.Config.TicketKey, dsn: s.DSN,
		prefix: "lgtest-" + testenv.RandomID() + "-", conc: 8, premint: 30, dur: time.Minute, max: 60}
	require.NoError(t, checkoutLoad(context.Background(), o, true), "40 sold, 20 sold out, the orders agree")

	db, err := sql.Open("mysql", s.DSN)
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM orders WHERE sale_id = ? AND status = 'paid'`, saleID).Scan(&n))
	require.Equal(t, 40, n)
	var ids []string
	rows, err := db.Query(`SELECT id FROM orders WHERE sale_id = ?`, saleID)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	ctx := context.Background()
	require.NoError(t, verifyOrders(ctx, db, o, ids, -1))

	err = verifyOrders(ctx, db, o, append(ids[1:], "ord_never"), -1)
	require.ErrorContains(t, err, "1 lost, 1 phantom")
	require.NoError(t, verifyOrders(ctx, db, o, nil, 40-o.conc), "up to -c answers lost in flight")
	require.ErrorContains(t, verifyOrders(ctx, db, o, nil, 40-o.conc-1), "31 orders answered 2xx but 40 in MySQL")
	require.ErrorContains(t, verifyOrders(ctx, db, o, nil, 41), "41 orders answered 2xx but 40 in MySQL")

	// a sale whose sold units differ between Redis and MySQL
	_, err = db.Exec(`UPDATE sales SET sold = sold - 1, held = held + 1 WHERE id = ?`, saleID)
	require.NoError(t, err)
	require.ErrorContains(t, verifyOrders(ctx, db, o, ids, -1), "sold 40 in Redis but 39 in MySQL")
}

// The hand-written checkout requests are what the server expects, on
// kept-alive connections, and a server that closes one is reconnected to.
func TestCheckoutSender(t *testing.T) {
	t.Parallel()
	var conns, reqs atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := reqs.Add(1)
		b, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || r.URL.EscapedPath() != "/api/v1/sales/s%201/checkout" || r.Header.Get("Authorization") != "Bearer tok-"+fmt.Sprint(n) ||
			r.Header.Get("Content-Type") != "application/json" || string(b) != `{"quantity":1}` {
			http.Error(w, fmt.Sprintf("%s %s %q %q", r.Method, r.URL.EscapedPath(), r.Header, b), http.StatusBadRequest)
			return
		}
		if n%10 == 0 {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"ord_%d","quantity":1}`, n)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	send, closeConns, err := checkoutSender(options{url: srv.URL, sale: "s 1", conc: 4})
	require.NoError(t, err)
	for i := 1; i <= 30; i++ {
		code, id, err := send(fmt.Sprintf("tok-%d", i))
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, code)
		require.Equal(t, fmt.Sprintf("ord_%d", i), id)
	}
	closeConns()
	require.EqualValues(t, 3, conns.Load(), "one connection, and a new one after each of the 2 the server closed (before the 30th)")
}

func TestOrderID(t *testing.T) {
	t.Parallel()
	id, ok := orderID([]byte(`{"amount_cents":100,"created_at":"x","id":"ord_abc","quantity":1}`))
	require.True(t, ok)
	require.Equal(t, "ord_abc", id)
	for _, b := range []string{``, `{}`, `{"id":""}`, `{"id":"abc`, `{"error":{"code":"sold_out"}}`} {
		_, ok := orderID([]byte(b))
		require.False(t, ok, b)
	}
}
