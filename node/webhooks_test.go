package node_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/webhooks"
)

// receiver is a shop's webhook endpoint: a real local HTTP server that
// checks every delivery as the Standard Webhooks spec says a receiver must
// (signature over id.timestamp.body, a fresh timestamp, the id of the
// body), and keeps what it accepted in arrival order. down makes it answer
// 503 until set false.
type receiver struct {
	t      *testing.T
	key    []byte
	secret string
	srv    *httptest.Server

	mu       sync.Mutex
	down     bool
	got      []hook // accepted, in arrival order (a redelivery again)
	attempts int
}

type hook struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	CreatedAt string         `json:"created_at"`
	Data      map[string]any `json:"data"`
}

func newReceiver(t *testing.T) *receiver {
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	r := &receiver{t: t, key: raw, secret: "whsec_" + base64.StdEncoding.EncodeToString(raw)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if r.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	id, tsText, sig := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		r.t.Errorf("webhook-timestamp %q is not a fresh Unix time", tsText)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if want := webhooks.Sign(r.key, id, ts, body); sig != want {
		r.t.Errorf("webhook %s: signature %q, want %q", id, sig, want)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var h hook
	if err := json.Unmarshal(body, &h); err != nil || h.ID != id {
		r.t.Errorf("webhook %s: body %s", id, body)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	require.Equal(r.t, "application/json", req.Header.Get("Content-Type"))
	r.got = append(r.got, h)
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// byID is every accepted event, first arrival of each id.
func (r *receiver) byID() map[string]hook {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]hook{}
	for _, h := range r.got {
		if _, ok := out[h.ID]; !ok {
			out[h.ID] = h
		}
	}
	return out
}

// typesOf is the types of one order's or sale's events in arrival order
// (first arrivals only).
func (r *receiver) typesOf(subject string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, h := range r.got {
		if seen[h.ID] || (h.Data["id"] != subject) {
			continue
		}
		seen[h.ID] = true
		out = append(out, h.Type)
	}
	return out
}

func (r *receiver) with(c *node.Config) { c.WebhookURL, c.WebhookSecret = r.srv.URL, r.secret }

// buy joins, waits for admission and checks out one unit: the order.
func buy(t *testing.T, s *testenv.Server, saleID, user string) map[string]any {
	t.Helper()
	var j *testenv.Response
	testenv.Eventually(t, 10*time.Second, func() bool {
		// 503 while the sale is rebuilt after a Redis loss
		j = s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil)
		return j.Status != http.StatusServiceUnavailable
	}, "the join is answered")
	require.Equal(t, http.StatusOK, j.Status, "%s", j.Body)
	tok := admitted(t, s, saleID, j.JSON(t)["queue_token"].(string))
	r := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", tok, `{"quantity":1}`, "Idempotency-Key", "k-"+user)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	return r.JSON(t)
}

// TestWebhooksEveryEvent: every event of the contract reaches a real
// receiver, signed, with the order or sale as the API shows it, each
// order's events in the order of its changes: a held order paid, one
// cancelled, one whose hold ran out, an order paid at once (order.created
// with status paid, then order.paid) that sells the sale out, and a sale
// the operator closed.
func TestWebhooksEveryEvent(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := testenv.Start(t, rcv.with)
	held := s.CreateSale(t, map[string]any{"stock": 10, "admission_rate": 1000, "hold_ttl_seconds": 600})["id"].(string)
	short := s.CreateSale(t, map[string]any{"stock": 10, "admission_rate": 1000, "hold_ttl_seconds": 1})["id"].(string)
	atOnce := s.CreateSale(t, map[string]any{"stock": 1, "admission_rate": 1000})["id"].(string)
	closing := s.CreateSale(t, map[string]any{"stock": 5})["id"].(string)

	paid := buy(t, s, held, "payer")
	require.Equal(t, "held", paid["status"])
	r := s.Do(t, "POST", "/api/v1/orders/"+paid["id"].(string)+"/confirm", s.ServiceToken, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	cancelled := buy(t, s, held, "canceller")
	r = s.Do(t, "POST", "/api/v1/orders/"+cancelled["id"].(string)+"/cancel", s.UserToken(t, "canceller"), nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	expired := buy(t, s, short, "sleeper")
	instant := buy(t, s, atOnce, "quick")
	require.Equal(t, "paid", instant["status"])
	r = s.Do(t, "PATCH", "/api/v1/admin/sales/"+closing, s.AdminToken, map[string]any{"state": "closed"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	want := map[string][]string{
		paid["id"].(string):      {"order.created", "order.paid"},
		cancelled["id"].(string): {"order.created", "order.cancelled"},
		expired["id"].(string):   {"order.created", "order.expired"},
		instant["id"].(string):   {"order.created", "order.paid"},
		atOnce:                   {"sale.sold_out"},
		closing:                  {"sale.closed"},
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		for subject, types := range want {
			if len(rcv.typesOf(subject)) < len(types) {
				return false
			}
		}
		return true
	}, "every event arrives")
	for subject, types := range want {
		require.Equal(t, types, rcv.typesOf(subject), "the events of %s, in order", subject)
	}
	for _, h := range rcv.byID() {
		require.Regexp(t, `^evt_[a-z2-7]{26}$`, h.ID)
		require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`, h.CreatedAt)
		switch h.Type {
		case "order.created":
			wantStatus := "held"
			if h.Data["id"] == instant["id"] {
				wantStatus = "paid"
			}
			require.Equal(t, wantStatus, h.Data["status"], "%v", h)
			require.Contains(t, h.Data, "amount_cents")
			require.Contains(t, h.Data, "user_id")
		case "order.paid":
			require.Equal(t, "paid", h.Data["status"])
		case "order.cancelled":
			require.Equal(t, "cancelled", h.Data["status"])
		case "order.expired":
			require.Equal(t, "expired", h.Data["status"])
		case "sale.sold_out":
			require.Equal(t, "sold_out", h.Data["state"], "%v", h)
		case "sale.closed":
			require.Equal(t, "closed", h.Data["state"], "%v", h)
		default:
			t.Fatalf("unknown event type %q", h.Type)
		}
	}
	adm := s.Do(t, "GET", "/api/v1/admin/webhooks", s.AdminToken, nil)
	require.Equal(t, http.StatusOK, adm.Status, "%s", adm.Body)
	testenv.Eventually(t, 5*time.Second, func() bool {
		return s.Do(t, "GET", "/api/v1/admin/webhooks", s.AdminToken, nil).JSON(t)["pending"] == float64(0)
	}, "nothing pending")
	require.Equal(t, http.StatusUnauthorized, s.Do(t, "GET", "/api/v1/admin/webhooks", "", nil).Status)
}

// TestWebhooksSurviveOutages: the receiver is down (503) while orders are
// made and paid and Redis is flushed under the sale; the events wait
// (the admin view and /metrics show them pending and failing), and once
// the receiver is back every event arrives, at least once, each order's in
// the order of its changes; a second node shares the delivery.
func TestWebhooksSurviveOutages(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := testenv.Start(t, rcv.with)
	peer := s.Peer(t, rcv.with)
	saleID := s.CreateSale(t, map[string]any{"stock": 20, "admission_rate": 1000, "hold_ttl_seconds": 600})["id"].(string)
	ctx := context.Background()

	rcv.setDown(true)
	var orders []string
	for i := range 6 {
		node := s
		if i%2 == 1 {
			node = peer
		}
		o := buy(t, node, saleID, "shopper-"+strconv.Itoa(i))
		orders = append(orders, o["id"].(string))
		if i%3 == 0 {
			r := node.Do(t, "POST", "/api/v1/orders/"+o["id"].(string)+"/confirm", node.ServiceToken, nil)
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		}
		if i == 2 {
			// Redis loses everything mid-sale: the events are in MySQL
			keys, err := s.Redis.Keys(ctx, s.Keys.Prefix+":*").Result()
			require.NoError(t, err)
			require.NoError(t, s.Redis.Del(ctx, keys...).Err())
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		v := s.Do(t, "GET", "/api/v1/admin/webhooks", s.AdminToken, nil).JSON(t)
		f, _ := v["failing"].([]any)
		return v["pending"] == float64(8) && len(f) > 0
	}, "the admin view shows 8 events pending, some failing")
	f := s.Do(t, "GET", "/api/v1/admin/webhooks", s.AdminToken, nil).JSON(t)["failing"].([]any)[0].(map[string]any)
	require.EqualValues(t, 503, f["last_status"], "%v", f)
	require.Equal(t, false, f["given_up"])
	require.NotNil(t, f["next_attempt_at"])
	testenv.Eventually(t, 5*time.Second, func() bool {
		m := s.Do(t, "GET", "/metrics", "", nil)
		return regexpFind(`(?m)^flashsale_webhook_pending 8$`, string(m.Body)) &&
			regexpFind(`(?m)^flashsale_webhook_deliveries_total\{result="failed"\} [1-9]`, string(m.Body))
	}, "the metrics show the backlog and the failures")

	rcv.setDown(false)
	testenv.Eventually(t, 30*time.Second, func() bool {
		for i, id := range orders {
			n := 1
			if i%3 == 0 {
				n = 2
			}
			if len(rcv.typesOf(id)) < n {
				return false
			}
		}
		return true
	}, "every event arrives once the receiver is back")
	for i, id := range orders {
		want := []string{"order.created"}
		if i%3 == 0 {
			want = append(want, "order.paid")
		}
		require.Equal(t, want, rcv.typesOf(id), "order %d's events in order", i)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		return s.Do(t, "GET", "/api/v1/admin/webhooks", s.AdminToken, nil).JSON(t)["pending"] == float64(0)
	}, "nothing pending")
}

func regexpFind(expr, s string) bool { return regexp.MustCompile(expr).MatchString(s) }
