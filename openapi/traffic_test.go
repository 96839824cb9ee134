package openapi_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/faults"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// TestTrafficMatchesTheDocument runs the whole API on a real node (--dev,
// webhooks on, real Redis and MariaDB) as shoppers, the payment backend and
// an operator would, with a sample of every error, and validates every
// request and answer (and every WebSocket frame) against the document. It
// ends by checking that every operation of the document was reached with a
// success, and that every route the node's router matched is documented.
func TestTrafficMatchesTheDocument(t *testing.T) {
	t.Parallel()
	// A receiver that always fails: the webhooks view then lists failures.
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for the test", http.StatusInternalServerError)
	}))
	t.Cleanup(receiver.Close)
	s := testenv.Start(t, func(c *node.Config) {
		c.Dev = true
		c.WebhookURL, c.WebhookSecret = receiver.URL, "whsec_"+"c2VjcmV0LWZvci10aGUtdGVzdA=="
	})
	k := newChecker(t, s)
	admin := s.AdminToken
	ok := func(r *testenv.Response, status int) {
		t.Helper()
		require.Equal(t, status, r.Status, "%s", r.Body)
	}
	code := func(r *testenv.Response, status int, code string) {
		t.Helper()
		require.Equal(t, status, r.Status, "%s", r.Body)
		require.Equal(t, code, r.Code(t), "%s", r.Body)
	}

	// Ops, pages and this document.
	ok(k.do(call{method: "GET", path: "/healthz"}), 200)
	ok(k.do(call{method: "GET", path: "/readyz"}), 200)
	ok(k.do(call{method: "GET", path: "/metrics"}), 200)
	doc := k.do(call{method: "GET", path: "/api/v1/openapi.json"})
	ok(doc, 200)
	ok(k.do(call{method: "GET", path: "/api/v1/openapi.json", headers: map[string]string{"If-None-Match": doc.Header.Get("ETag")}}), 304)
	ok(k.do(call{method: "GET", path: "/"}), 200)
	ok(k.do(call{method: "GET", path: "/admin"}), 200)
	ok(k.do(call{method: "GET", path: "/.well-known/jwks.json"}), 200)

	// The operator creates sales.
	now := time.Now().UTC()
	s1 := "s1-" + testenv.RandomID()
	ok(k.do(call{method: "POST", path: "/api/v1/admin/sales", token: admin, body: map[string]any{
		"id": s1, "name": "Phone X", "price_cents": 79900, "currency": "EUR", "stock": 5,
		"starts_at": now.Add(-time.Minute).Format(time.RFC3339), "ends_at": now.Add(2 * time.Hour).Format(time.RFC3339),
		"queue_opens_at": nil, "admission_rate": 50, "max_active": 10, "ticket_ttl_seconds": 300,
		"hold_ttl_seconds": 300, "per_user_limit": 2, "queue_mode": "fifo", "abandon_after_seconds": 60,
		"return_window_seconds": 900, "join_challenge": "none", "pow_difficulty": 18, "max_users_per_ip": 0,
		"return_url": "https://shop.example/checkout"}}), 201)
	code(k.do(call{method: "POST", path: "/api/v1/admin/sales", token: admin,
		body: map[string]any{"id": s1, "name": "Again", "price_cents": 1, "currency": "EUR", "stock": 1}}), 409, "sale_exists")
	code(k.do(call{method: "POST", path: "/api/v1/admin/sales", token: admin, breaksDoc: true,
		body: map[string]any{"name": "X", "price_cents": 1, "currency": "EUR", "stock": 1, "colour": "red"}}), 422, "invalid_request")
	code(k.do(call{method: "POST", path: "/api/v1/admin/sales", token: admin, breaksDoc: true,
		body: map[string]any{"name": strings.Repeat("x", 70<<10), "price_cents": 1, "currency": "EUR", "stock": 1}}), 413, "too_large")
	code(k.do(call{method: "GET", path: "/api/v1/admin/sales", breaksDoc: true}), 401, "unauthorized")
	code(k.do(call{method: "GET", path: "/api/v1/admin/sales", token: s.ServiceToken, breaksDoc: true}), 401, "unauthorized")
	ok(k.do(call{method: "GET", path: "/api/v1/admin/sales", token: admin}), 200)
	ok(k.do(call{method: "GET", path: "/api/v1/admin/sales/" + s1, token: admin}), 200)
	ok(k.do(call{method: "PATCH", path: "/api/v1/admin/sales/" + s1, token: admin, body: `{"admission_rate": 40, "return_url": null}`}), 200)
	code(k.do(call{method: "PATCH", path: "/api/v1/admin/sales/" + s1, token: admin, body: `{"state": "upcoming"}`, breaksDoc: true}), 422, "invalid_request")
	code(k.do(call{method: "PATCH", path: "/api/v1/admin/sales/" + s1, token: admin, body: `{}`, breaksDoc: true}), 422, "invalid_request")
	ok(k.do(call{method: "GET", path: "/api/v1/sales"}), 200)
	ok(k.do(call{method: "GET", path: "/api/v1/sales/" + s1}), 200)
	code(k.do(call{method: "GET", path: "/api/v1/sales/no-such-sale"}), 404, "not_found")
	ok(k.do(call{method: "GET", path: "/sales/" + s1}), 200)

	// A shopper signs in (dev), checks the challenge, joins and waits on
	// the socket until admitted.
	tok := k.do(call{method: "POST", path: "/api/v1/dev/token", body: map[string]any{"user": "alice-" + testenv.RandomID()}})
	ok(tok, 200)
	alice := tok.JSON(t)["token"].(string)
	code(k.do(call{method: "POST", path: "/api/v1/dev/token", body: `{"user": ""}`, breaksDoc: true}), 422, "invalid_request")
	chal := k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/challenge", token: alice})
	ok(chal, 200)
	require.Equal(t, "none", chal.JSON(t)["kind"])
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/join", breaksDoc: true}), 401, "unauthorized")
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/join", token: alice, body: `{"proof": 1}`, breaksDoc: true}), 422, "invalid_request")
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/join",
		cookies: []*http.Cookie{{Name: "fs_token", Value: alice}}, headers: map[string]string{"Origin": "https://evil.example"}}),
		403, "forbidden")
	join := k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/join", token: alice})
	ok(join, 200)
	qt := join.JSON(t)["queue_token"].(string)
	ws := k.dial(s1, qt)
	ticketA := ws.until("admitted")["ticket"].(string)
	st := k.do(call{method: "GET", path: "/api/v1/sales/" + s1 + "/status", token: qt})
	ok(st, 200)
	require.Equal(t, "admitted", st.JSON(t)["state"])
	ok(k.do(call{method: "GET", path: "/api/v1/sales/" + s1 + "/status", cookies: []*http.Cookie{{Name: "fs_qt", Value: qt}}}), 200)

	// Checkout, with its Idempotency-Key and errors.
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/checkout", token: "not-a-ticket", breaksDoc: true}), 401, "ticket_invalid")
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/checkout", token: qt, breaksDoc: true}), 401, "ticket_invalid")
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/checkout", token: ticketA, body: `{"quantity": 0}`, breaksDoc: true}), 422, "invalid_request")
	past := time.Now().Unix()
	expired := s.Issuer.Ticket(ticket.Admission{Sale: s1, User: "late", JTI: "t-" + testenv.RandomID(), IssuedAt: past - 600, ExpiresAt: past - 300})
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/checkout", token: expired}), 401, "ticket_expired")
	idem := map[string]string{"Idempotency-Key": "order-" + testenv.RandomID()}
	buy := k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/checkout", token: ticketA, body: `{"quantity":1}`, headers: idem})
	ok(buy, 201)
	orderA := buy.JSON(t)["id"].(string)
	require.Equal(t, "held", buy.JSON(t)["status"])
	replay := k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/checkout", token: ticketA, body: `{"quantity":1}`, headers: idem})
	ok(replay, 201)
	require.Equal(t, buy.Body, replay.Body)
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/checkout", token: ticketA, body: `{"quantity":2}`, headers: idem}), 422, "idempotency_mismatch")
	again := k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/checkout", token: ticketA})
	require.Contains(t, []string{"ticket_used", "already_bought"}, again.Code(t), "%s", again.Body)
	require.Equal(t, orderA, ws.until("order")["order"].(map[string]any)["id"])

	// The order: its owner, the operator, the payment backend; nobody else.
	ok(k.do(call{method: "GET", path: "/api/v1/orders/" + orderA, token: alice}), 200)
	ok(k.do(call{method: "GET", path: "/api/v1/orders/" + orderA, token: admin}), 200)
	stranger := s.UserToken(t, "stranger-"+testenv.RandomID())
	code(k.do(call{method: "GET", path: "/api/v1/orders/" + orderA, token: stranger}), 404, "not_found")
	code(k.do(call{method: "GET", path: "/api/v1/orders/" + orderA, breaksDoc: true}), 401, "unauthorized")
	code(k.do(call{method: "POST", path: "/api/v1/orders/" + orderA + "/confirm", token: alice, breaksDoc: true}), 403, "forbidden")
	ok(k.do(call{method: "POST", path: "/api/v1/orders/" + orderA + "/confirm", token: s.ServiceToken, headers: map[string]string{"Idempotency-Key": "pay-1"}}), 200)
	code(k.do(call{method: "POST", path: "/api/v1/orders/" + orderA + "/confirm", token: admin}), 409, "order_not_held")
	code(k.do(call{method: "POST", path: "/api/v1/orders/ord_nosuchorder/confirm", token: admin}), 404, "not_found")

	// Two more shoppers: one cancels, one pays in dev mode.
	bob := s.UserToken(t, "bob-"+testenv.RandomID())
	orderB := k.buy(s1, bob)
	ok(k.do(call{method: "POST", path: "/api/v1/orders/" + orderB + "/cancel", token: bob, headers: map[string]string{"Idempotency-Key": "cancel-1"}}), 200)
	ok(k.do(call{method: "POST", path: "/api/v1/orders/" + orderB + "/cancel", token: bob, headers: map[string]string{"Idempotency-Key": "cancel-1"}}), 200)
	code(k.do(call{method: "POST", path: "/api/v1/orders/" + orderB + "/cancel", token: bob}), 409, "order_not_held")
	carol := s.UserToken(t, "carol-"+testenv.RandomID())
	orderC := k.buy(s1, carol)
	ok(k.do(call{method: "POST", path: "/api/v1/dev/orders/" + orderC + "/pay", token: carol}), 200)

	// Passes, bans, sources, messages.
	vip := "vip-" + testenv.RandomID()
	pass := k.do(call{method: "POST", path: "/api/v1/admin/sales/" + s1 + "/passes", token: admin, body: map[string]any{"user_id": vip, "ttl_seconds": 600}})
	ok(pass, 201)
	code(k.do(call{method: "POST", path: "/api/v1/admin/sales/" + s1 + "/passes", token: admin, body: map[string]any{"user_id": vip}, breaksDoc: true}), 422, "invalid_request")
	ok(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/join", token: s.UserToken(t, vip), body: map[string]any{"pass": pass.JSON(t)["pass"]}}), 200)
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/join", token: s.UserToken(t, "other-"+testenv.RandomID()),
		body: map[string]any{"pass": pass.JSON(t)["pass"]}}), 403, "forbidden")
	mallory := "mallory-" + testenv.RandomID()
	ban := k.do(call{method: "POST", path: "/api/v1/admin/bans", token: admin, body: map[string]any{"user_id": mallory, "sale_id": s1, "ttl_seconds": 3600, "reason": "bot"}})
	ok(ban, 201)
	ok(k.do(call{method: "POST", path: "/api/v1/admin/bans", token: admin, body: map[string]any{"ip": "203.0.113.0/24"}}), 201)
	code(k.do(call{method: "POST", path: "/api/v1/admin/bans", token: admin, body: map[string]any{"user_id": "a", "ip": "203.0.113.7"}, breaksDoc: true}), 422, "invalid_request")
	ok(k.do(call{method: "GET", path: "/api/v1/admin/bans", token: admin}), 200)
	mtok := s.UserToken(t, mallory)
	testenv.Eventually(t, 5*time.Second, func() bool {
		return k.do(call{method: "POST", path: "/api/v1/sales/" + s1 + "/join", token: mtok}).Status == http.StatusForbidden
	}, "the ban reaches the node")
	code(k.do(call{method: "GET", path: "/api/v1/sales/" + s1 + "/status", token: mtok}), 403, "banned")
	ok(k.do(call{method: "DELETE", path: "/api/v1/admin/bans/" + ban.JSON(t)["id"].(string), token: admin}), 204)
	code(k.do(call{method: "DELETE", path: "/api/v1/admin/bans/ban_nosuchban", token: admin}), 404, "not_found")
	src := k.do(call{method: "GET", path: "/api/v1/admin/sales/" + s1 + "/sources", token: admin})
	ok(src, 200)
	require.NotEmpty(t, src.JSON(t)["sources"])
	ok(k.do(call{method: "POST", path: "/api/v1/admin/sales/" + s1 + "/message", token: admin, body: `{"text":"Doors close at 9"}`}), 200)
	code(k.do(call{method: "POST", path: "/api/v1/admin/sales/" + s1 + "/message", token: admin, body: `{"text":"` + strings.Repeat("x", 300) + `"}`, breaksDoc: true}), 422, "invalid_request")
	require.Equal(t, "Doors close at 9", ws.until("message")["text"])

	// Closed, not yet open, pre-queue and sold-out sales.
	s2 := s.CreateSale(t, nil)["id"].(string)
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s2 + "/checkout", token: ticketA}), 403, "wrong_sale")
	ok(k.do(call{method: "PATCH", path: "/api/v1/admin/sales/" + s2, token: admin, body: `{"state":"closed"}`}), 200)
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s2 + "/join", token: bob}), 410, "sale_closed")
	code(k.do(call{method: "PATCH", path: "/api/v1/admin/sales/" + s2, token: admin, body: `{"state":"open"}`}), 409, "invalid_state")
	later := time.Now().UTC().Add(time.Hour)
	s3 := s.CreateSale(t, map[string]any{"starts_at": later.Format(time.RFC3339), "queue_opens_at": later.Add(-time.Minute).Format(time.RFC3339)})["id"].(string)
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s3 + "/join", token: bob}), 409, "queue_not_open")
	s4 := s.CreateSale(t, map[string]any{"starts_at": later.Format(time.RFC3339), "queue_mode": "prequeue"})["id"].(string)
	pre := k.do(call{method: "POST", path: "/api/v1/sales/" + s4 + "/join", token: bob})
	ok(pre, 200)
	require.Equal(t, "prequeue", pre.JSON(t)["state"])
	k.dial(s4, pre.JSON(t)["queue_token"].(string)).until("prequeue")
	// One leaves the pre-queue (no admission can race the leave there).
	dave := s.UserToken(t, "dave-"+testenv.RandomID())
	ok(k.do(call{method: "POST", path: "/api/v1/sales/" + s4 + "/join", token: dave}), 200)
	ok(k.do(call{method: "DELETE", path: "/api/v1/sales/" + s4 + "/join", token: dave}), 204)
	code(k.do(call{method: "GET", path: "/api/v1/sales/" + s4 + "/status", token: dave}), 404, "not_in_queue")
	code(k.do(call{method: "DELETE", path: "/api/v1/sales/" + s4 + "/join", token: dave}), 404, "not_in_queue")

	s5 := s.CreateSale(t, map[string]any{"stock": 1, "admission_rate": 50})["id"].(string)
	eve := s.UserToken(t, "eve-"+testenv.RandomID())
	eveTicket := k.admit(s5, eve)
	frank := k.do(call{method: "POST", path: "/api/v1/sales/" + s5 + "/join", token: s.UserToken(t, "frank-"+testenv.RandomID())})
	ok(frank, 200)
	fws := k.dial(s5, frank.JSON(t)["queue_token"].(string))
	fws.until("position")
	ok(k.do(call{method: "PATCH", path: "/api/v1/admin/sales/" + s5, token: admin, body: `{"state":"paused"}`}), 200)
	fws.until("paused")
	ok(k.do(call{method: "PATCH", path: "/api/v1/admin/sales/" + s5, token: admin, body: `{"state":"open"}`}), 200)
	fws.until("open")
	ok(k.do(call{method: "POST", path: "/api/v1/sales/" + s5 + "/checkout", token: eveTicket}), 201)
	fws.until("sold_out")
	code(k.do(call{method: "POST", path: "/api/v1/sales/" + s5 + "/join", token: s.UserToken(t, "grace-"+testenv.RandomID())}), 410, "sold_out")

	// The operator's views.
	ok(k.do(call{method: "GET", path: "/api/v1/admin/sales/" + s1 + "/summary", token: admin}), 200)
	code(k.do(call{method: "GET", path: "/api/v1/admin/sales/no-such-sale/summary", token: admin}), 404, "not_found")
	testenv.Eventually(t, 10*time.Second, func() bool {
		r := k.do(call{method: "GET", path: "/api/v1/admin/sales/" + s1 + "/timeline?since=0", token: admin})
		return r.Status == 200 && len(r.JSON(t)["samples"].([]any)) > 0
	}, "the timeline has samples")
	code(k.do(call{method: "GET", path: "/api/v1/admin/sales/" + s1 + "/timeline?step=often", token: admin, breaksDoc: true}), 422, "invalid_request")
	csv := k.do(call{method: "GET", path: "/api/v1/admin/sales/" + s1 + "/orders.csv", token: admin})
	ok(csv, 200)
	require.Contains(t, string(csv.Body), orderA)
	ok(k.do(call{method: "GET", path: "/api/v1/admin/audit?limit=5", token: admin}), 200)
	ok(k.do(call{method: "GET", path: "/api/v1/admin/audit?sale=" + s1, token: admin}), 200)
	code(k.do(call{method: "GET", path: "/api/v1/admin/audit?limit=0", token: admin, breaksDoc: true}), 422, "invalid_request")
	testenv.Eventually(t, 15*time.Second, func() bool {
		r := k.do(call{method: "GET", path: "/api/v1/admin/webhooks", token: admin})
		return r.Status == 200 && len(r.JSON(t)["failing"].([]any)) > 0
	}, "the webhooks view lists the failing deliveries")

	// The router's own errors: an unknown API path, a known one's other method.
	nf := k.do(call{method: "GET", path: "/api/v1/no-such-thing", breaksDoc: true})
	code(nf, 404, "not_found")
	k.componentResponse("NotFound", nf)
	na := k.do(call{method: "PUT", path: "/api/v1/sales", breaksDoc: true})
	code(na, 405, "method_not_allowed")
	k.componentResponse("MethodNotAllowed", na)
	// A plain GET of the socket's path is no handshake.
	code(k.do(call{method: "GET", path: "/api/v1/sales/" + s1 + "/ws?qt=" + qt}), 422, "invalid_request")

	require.Empty(t, k.missed(), "operations of the document the run never reached with a success")
	k.routesDocumented()
}

// admit joins saleID as the user of userTok and polls status until
// admitted; it returns the ticket.
func (k *checker) admit(saleID, userTok string) string {
	k.t.Helper()
	j := k.do(call{method: "POST", path: "/api/v1/sales/" + saleID + "/join", token: userTok})
	require.Equal(k.t, 200, j.Status, "%s", j.Body)
	var tk string
	testenv.Eventually(k.t, 10*time.Second, func() bool {
		r := k.do(call{method: "GET", path: "/api/v1/sales/" + saleID + "/status", token: userTok})
		tk, _ = r.JSON(k.t)["ticket"].(string)
		return tk != ""
	}, "admitted to %s", saleID)
	return tk
}

// buy admits the user and buys one unit; it returns the order's id.
func (k *checker) buy(saleID, userTok string) string {
	k.t.Helper()
	r := k.do(call{method: "POST", path: "/api/v1/sales/" + saleID + "/checkout", token: k.admit(saleID, userTok)})
	require.Equal(k.t, 201, r.Status, "%s", r.Body)
	return r.JSON(k.t)["id"].(string)
}

var routeLabel = regexp.MustCompile(`flashsale_http_request_duration_seconds_count\{code="[0-9]+",route="([^"]+)"\}`)

// routesDocumented reads the routes the node's router matched during the
// run (the request metric's route label is the mux pattern) and checks
// each is an operation of the document.
func (k *checker) routesDocumented() {
	k.t.Helper()
	m := k.s.Do(k.t, "GET", "/metrics", "", nil)
	require.Equal(k.t, 200, m.Status)
	found := 0
	for _, sub := range routeLabel.FindAllStringSubmatch(string(m.Body), -1) {
		pattern := sub[1]
		if pattern == "unmatched" || pattern == "/" {
			continue // no route (the API's 404), or the pages' catch-all
		}
		method, path, ok := strings.Cut(pattern, " ")
		require.True(k.t, ok, "route %q has no method", pattern)
		if path == "/{$}" {
			path = "/"
		}
		item := k.doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			k.errorf("the node served %s, which the document does not have", pattern)
		}
		found++
	}
	require.Greater(k.t, found, 20, "the metrics name too few routes: %s", m.Body)
}

// TestRateLimitsAndDevOffMatchTheDocument validates the answers of a node
// without --dev (its dev routes are 404) and with small rate limits (429
// with Retry-After) against the document.
func TestRateLimitsAndDevOffMatchTheDocument(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t, func(c *node.Config) { c.IPRate, c.IPBurst = 0.2, 3 })
	k := newChecker(t, s)
	saleID := s.CreateSale(t, nil)["id"].(string)
	user := s.UserToken(t, "rita-"+testenv.RandomID())

	nf := k.do(call{method: "POST", path: "/api/v1/dev/orders/ord_x/pay", token: user})
	require.Equal(t, http.StatusNotFound, nf.Status, "%s", nf.Body)
	nf = k.do(call{method: "POST", path: "/api/v1/dev/token", body: `{"user":"rita"}`})
	require.Equal(t, http.StatusNotFound, nf.Status, "%s", nf.Body)

	var limited *testenv.Response
	for range 10 {
		r := k.do(call{method: "GET", path: "/api/v1/sales/" + saleID + "/status", token: user})
		if r.Status == http.StatusTooManyRequests {
			limited = r
			break
		}
		require.Equal(t, "not_in_queue", r.Code(t), "%s", r.Body)
	}
	require.NotNil(t, limited, "no 429 within 10 calls at a burst of 3")
	require.Equal(t, "rate_limited", limited.Code(t))
	require.Regexp(t, `^[1-9][0-9]*$`, limited.Header.Get("Retry-After"))
	r := k.do(call{method: "POST", path: "/api/v1/sales/" + saleID + "/join", token: user})
	require.Equal(t, http.StatusTooManyRequests, r.Status, "%s", r.Body)
}

// TestStoreDownMatchesTheDocument validates the 503 answers (with
// Retry-After) of a node whose Redis has stopped against the document:
// a join, a status poll and a checkout.
func TestStoreDownMatchesTheDocument(t *testing.T) {
	t.Parallel()
	rd := faults.StartRedis(t)
	s := testenv.Start(t, testenv.WithRedisURL(rd.URL))
	k := newChecker(t, s)
	saleID := s.CreateSale(t, nil)["id"].(string)
	user := s.UserToken(t, "una-"+testenv.RandomID())
	r := k.do(call{method: "POST", path: "/api/v1/sales/" + saleID + "/join", token: user})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	rd.Stop()
	unavailable := func(r *testenv.Response) {
		t.Helper()
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
		require.Equal(t, "unavailable", r.Code(t))
		require.Regexp(t, `^[1-9][0-9]*$`, r.Header.Get("Retry-After"))
		k.componentResponse("Unavailable", r)
	}
	unavailable(k.do(call{method: "GET", path: "/api/v1/sales/" + saleID + "/status", token: user}))
	unavailable(k.do(call{method: "POST", path: "/api/v1/sales/" + saleID + "/join", token: s.UserToken(t, "vic-"+testenv.RandomID())}))
	unavailable(k.do(call{method: "POST", path: "/api/v1/sales/" + saleID + "/checkout", token: s.Ticket(saleID, "una", time.Minute)}))
}
