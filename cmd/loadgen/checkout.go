package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flashsale/flashsale/ticket"
)

// checkoutLoad drives checkouts, each a different user's ticket, then
// checks the run's orders in MySQL against the answers: every 201 is a live
// order there (none lost) and every live order of the run's users was
// answered 201 (no phantom), and the sale's sold units agree between the
// node's summary (Redis) and MySQL's sales row.
func checkoutLoad(ctx context.Context, o options, verify bool) error {
	var db *sql.DB
	if verify {
		if o.dsn == "" {
			return errors.New("checkout: --mysql-dsn (the node's database) is required to check the run's orders against its 201s; --verify=false skips the check")
		}
		var err error
		if db, err = sql.Open("mysql", o.dsn); err != nil {
			return fmt.Errorf("--mysql-dsn: %w", err)
		}
		defer db.Close()
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("--mysql-dsn: %w", err)
		}
	}
	iss, err := ticketIssuer(o)
	if err != nil {
		return err
	}
	send, closeConns, err := checkoutSender(o)
	if err != nil {
		return err
	}
	defer closeConns()
	now := time.Now().Unix()
	mint := func(i int64) string { return mintTicket(iss, o, i, now) }
	// Tickets are minted before the clock starts (the admitter mints them).
	toks := make([]string, o.premint)
	for i := range toks {
		toks[i] = mint(int64(i + 1))
	}
	var mu sync.Mutex
	var created []string
	err = drive(ctx, o, "checkout "+o.sale, func(i int64) (int, error) {
		tok := ""
		if i <= int64(len(toks)) {
			tok = toks[i-1]
		} else {
			tok = mint(i)
		}
		code, id, err := send(tok)
		if code == http.StatusCreated {
			mu.Lock()
			created = append(created, id)
			mu.Unlock()
		}
		return code, err
	})
	if err != nil || !verify {
		return err
	}
	return verifyOrders(context.WithoutCancel(ctx), db, o, created, -1)
}

// ticketIssuer loads the ticket key (--ticket-key, else the dev key in
// --data-dir) to mint tickets with.
func ticketIssuer(o options) (*ticket.Issuer, error) {
	path := o.keyPath
	if path == "" {
		path = filepath.Join(o.dataDir, "ticket-key.pem")
	}
	keys, err := ticket.LoadKeySet(path)
	if err != nil {
		return nil, err
	}
	return ticket.NewIssuer(keys, "flashsale"), nil
}

// mintTicket is user i's ticket for o.sale, valid an hour from now (unix
// seconds); the user id is also the ticket's jti.
func mintTicket(iss *ticket.Issuer, o options, i, now int64) string {
	user := fmt.Sprintf("%s%d", o.prefix, i)
	return iss.Ticket(ticket.Admission{Sale: o.sale, User: user, JTI: user, IssuedAt: now, ExpiresAt: now + 3600})
}

// checkoutSender returns how the run buys one unit with a ticket (the
// status, and the order's id when it is a 201) and how it closes its
// connections at the end. For a plain http:// server each request is
// written by hand on a kept-alive connection of a pool (one a worker): the
// load tool shares the node's cores, and Go's HTTP client cost about 140 µs
// of CPU a checkout, as much as the node's own work; over https it is Go's
// client.
func checkoutSender(o options) (send func(tok string) (int, string, error), closeConns func(), err error) {
	target, err := url.Parse(o.url + "/api/v1/sales/" + url.PathEscape(o.sale) + "/checkout")
	if err != nil {
		return nil, nil, fmt.Errorf("--url: %w", err)
	}
	const body = `{"quantity":1}`
	if target.Scheme != "http" {
		client := newClient(o.conc)
		return func(tok string) (int, string, error) {
			req, err := http.NewRequest("POST", target.String(), strings.NewReader(body))
			if err != nil {
				return 0, "", err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return 0, "", err
			}
			return checkoutAnswer(resp)
		}, client.CloseIdleConnections, nil
	}
	addr := target.Host
	if target.Port() == "" {
		addr += ":80"
	}
	head := "POST " + target.RequestURI() + " HTTP/1.1\r\nHost: " + target.Host +
		"\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\nAuthorization: Bearer "
	pool := make(chan *rawConn, o.conc)
	send = func(tok string) (int, string, error) {
		var c *rawConn
		select {
		case c = <-pool:
		default:
			nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				return 0, "", err
			}
			c = &rawConn{Conn: nc, r: bufio.NewReader(nc)}
		}
		c.buf = append(append(append(c.buf[:0], head...), tok...), "\r\n\r\n"+body...)
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(c.buf); err != nil {
			c.Close()
			return 0, "", err
		}
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			c.Close()
			return 0, "", err
		}
		code, id, err := checkoutAnswer(resp)
		if err != nil || resp.Close {
			c.Close()
		} else {
			select {
			case pool <- c:
			default:
				c.Close()
			}
		}
		return code, id, err
	}
	return send, func() {
		for {
			select {
			case c := <-pool:
				c.Close()
			default:
				return
			}
		}
	}, nil
}

// rawConn is a kept-alive connection of checkoutSender's pool, with its
// reader and the buffer its requests are written from.
type rawConn struct {
	net.Conn
	r   *bufio.Reader
	buf []byte
}

// checkoutAnswer reads a checkout's answer and closes it: its status, and
// the order's id when it is a 201.
func checkoutAnswer(resp *http.Response) (int, string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return resp.StatusCode, "", nil
	}
	id, ok := orderID(b)
	if !ok {
		return 0, "", fmt.Errorf("a 201 without an order id: %.200s", b)
	}
	return resp.StatusCode, id, nil
}

// orderID finds the "id" of an order's JSON without decoding all of it (the
// load tool shares the node's cores: its CPU is taken from the server's).
func orderID(b []byte) (string, bool) {
	const key = `"id":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// verifyOrders compares the live orders of the run's users (o.prefix) in
// MySQL with the orders answered 201 (created; nil with expect >= 0: only
// their number is known, from a load tool that does not read answers, and
// is expect) and the sale's sold units in the node's summary with MySQL's.
// Any difference is an error.
func verifyOrders(ctx context.Context, db *sql.DB, o options, created []string, expect int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	like := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(o.prefix) + "%"
	rows, err := db.QueryContext(ctx, `SELECT id FROM orders WHERE sale_id = ? AND user_id LIKE ?
		AND status IN ('held', 'paid')`, o.sale, like)
	if err != nil {
		return fmt.Errorf("verify: read the run's orders: %w", err)
	}
	inMySQL := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("verify: %w", err)
		}
		inMySQL[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	var problems []string
	if expect >= 0 {
		// A tool stopped by the clock (wrk -d) drops the answers of the
		// requests in flight, up to one a connection (-c): those orders
		// exist and were never counted.
		fmt.Printf("verify: %d answered 2xx; MySQL has %d live orders of this run's users (prefix %q): %d more, of at most %d in flight at the end (-c)\n",
			expect, len(inMySQL), o.prefix, len(inMySQL)-expect, o.conc)
		if len(inMySQL) < expect || len(inMySQL) > expect+o.conc {
			problems = append(problems, fmt.Sprintf("%d orders answered 2xx but %d in MySQL", expect, len(inMySQL)))
		}
	} else {
		answered := make(map[string]bool, len(created))
		lost := 0
		for _, id := range created {
			answered[id] = true
			if !inMySQL[id] {
				lost++
			}
		}
		phantom := 0
		for id := range inMySQL {
			if !answered[id] {
				phantom++
			}
		}
		fmt.Printf("verify: %d answered 201; MySQL has %d live orders of this run's users: %d lost (a 201 MySQL lacks), %d phantom (in MySQL, never answered 201)\n",
			len(created), len(inMySQL), lost, phantom)
		if lost > 0 || phantom > 0 || len(answered) != len(created) {
			problems = append(problems, fmt.Sprintf("%d lost, %d phantom, %d order ids answered twice", lost, phantom, len(created)-len(answered)))
		}
	}
	if p := soldAgrees(ctx, db, o); p != "" {
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("verify: %s", strings.Join(problems, "; "))
	}
	return nil
}

// soldAgrees compares the sale's sold units in the node's summary (Redis)
// with MySQL's sales row, for a few seconds (an order being compensated
// settles within them); "" when they agree or the admin token is unknown.
func soldAgrees(ctx context.Context, db *sql.DB, o options) string {
	tok, err := os.ReadFile(filepath.Join(o.dataDir, "admin-token"))
	if err != nil {
		fmt.Printf("verify: no admin token in --data-dir (%v): the node's sold units not compared with MySQL's\n", err)
		return ""
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var redisSold, mysqlSold int
	deadline := time.Now().Add(5 * time.Second)
	for {
		var sum struct {
			Sold *int `json:"sold"`
		}
		if err := adminCall(ctx, client, o.url, strings.TrimSpace(string(tok)), "GET", "/api/v1/admin/sales/"+o.sale+"/summary", nil, &sum); err != nil {
			return fmt.Sprintf("the sale's summary: %v", err)
		}
		if sum.Sold == nil {
			return "the sale's summary has no sold count"
		}
		if err := db.QueryRowContext(ctx, `SELECT sold FROM sales WHERE id = ?`, o.sale).Scan(&mysqlSold); err != nil {
			return fmt.Sprintf("MySQL's sales row: %v", err)
		}
		redisSold = *sum.Sold
		if redisSold == mysqlSold || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("verify: sale %s: sold %d in the node's summary (Redis), %d in MySQL's sales row\n", o.sale, redisSold, mysqlSold)
	if redisSold != mysqlSold {
		return fmt.Sprintf("sold %d in Redis but %d in MySQL", redisSold, mysqlSold)
	}
	return ""
}

// printTickets writes o.max tickets of o.sale (distinct users o.prefix1,
// o.prefix2, ..., valid an hour) to stdout, one a line, for load tools that
// cannot mint them (wrk's Lua; cmd/loadgen/wrk/checkout.lua); the prefix goes
// to stderr, for `loadgen verify` after the run.
func printTickets(o options) error {
	if o.max <= 0 {
		return errors.New("tickets: -n must be at least 1")
	}
	iss, err := ticketIssuer(o)
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	w := bufio.NewWriter(os.Stdout)
	for i := int64(1); i <= o.max; i++ {
		w.WriteString(mintTicket(iss, o, i, now))
		w.WriteByte('\n')
	}
	fmt.Fprintf(os.Stderr, "tickets: %d for sale %s, users %s1 to %s%d\n", o.max, o.sale, o.prefix, o.prefix, o.max)
	return w.Flush()
}

// verifyMain checks a run made by another load tool (wrk with
// cmd/loadgen/wrk/checkout.lua and `loadgen tickets`): the live orders of
// its users (--user-prefix, as tickets printed) in MySQL against its 2xx
// count (-n) and its connections (-c), and the sale's sold units in Redis
// and MySQL.
func verifyMain(ctx context.Context, o options) error {
	if o.dsn == "" {
		return errors.New("verify: --mysql-dsn (the node's database) is required")
	}
	if o.max < 0 {
		return errors.New("verify: -n (the run's 2xx count) must be 0 or more")
	}
	db, err := sql.Open("mysql", o.dsn)
	if err != nil {
		return fmt.Errorf("--mysql-dsn: %w", err)
	}
	defer db.Close()
	return verifyOrders(ctx, db, o, nil, int(o.max))
}
