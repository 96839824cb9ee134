package waitingroom_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/waitingroom"
)

// socket is a shopper's WebSocket in a test.
type socket struct {
	t  *testing.T
	ws *websocket.Conn
}

// dial opens a sale's WebSocket with a query (e.g. "qt=...") and headers
// (name, value pairs).
func dial(t *testing.T, s *testenv.Server, saleID, query string, headers ...string) *socket {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.URL, "http") + "/api/v1/sales/" + saleID + "/ws"
	if query != "" {
		u += "?" + query
	}
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	ws, resp, err := websocket.DefaultDialer.Dial(u, h)
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { ws.Close() })
	return &socket{t: t, ws: ws}
}

// next reads the next frame.
func (c *socket) next(within time.Duration) map[string]any {
	c.t.Helper()
	require.NoError(c.t, c.ws.SetReadDeadline(time.Now().Add(within)))
	typ, b, err := c.ws.ReadMessage()
	require.NoError(c.t, err)
	require.Equal(c.t, websocket.TextMessage, typ)
	var f map[string]any
	require.NoError(c.t, json.Unmarshal(b, &f), "frame %s", b)
	return f
}

// closeCode reads until the server closes the socket and returns its code.
func (c *socket) closeCode(within time.Duration) int {
	c.t.Helper()
	require.NoError(c.t, c.ws.SetReadDeadline(time.Now().Add(within)))
	for {
		_, b, err := c.ws.ReadMessage()
		if err == nil {
			c.t.Logf("frame before close: %s", b)
			continue
		}
		var ce *websocket.CloseError
		require.True(c.t, errors.As(err, &ce), "want a close frame, got %v", err)
		return ce.Code
	}
}

// join joins over HTTP and returns the answer.
func join(t *testing.T, s *testenv.Server, saleID, user string) map[string]any {
	t.Helper()
	r := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, r.Status, "join: %s", r.Body)
	return r.JSON(t)
}

func patch(t *testing.T, s *testenv.Server, saleID string, body map[string]any) {
	t.Helper()
	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+saleID, s.AdminToken, body)
	require.Equal(t, http.StatusOK, r.Status, "patch: %s", r.Body)
}

// pausedSale creates a sale and pauses it before anyone joins, so waiters
// stay waiting until the test opens it.
func pausedSale(t *testing.T, s *testenv.Server, fields map[string]any) string {
	t.Helper()
	id := s.CreateSale(t, fields)["id"].(string)
	patch(t, s, id, map[string]any{"state": "paused"})
	return id
}

func TestWebSocket(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)

	// The first frame is the state; then admitted with a ticket that
	// verifies; state frames follow the operator; closed ends with 4410.
	t.Run("frames", func(t *testing.T) {
		t.Parallel()
		saleID := pausedSale(t, s, map[string]any{"stock": 5, "admission_rate": 20, "max_active": 10})
		user := "ann-" + testenv.RandomID()
		jb := join(t, s, saleID, user)
		require.Equal(t, "waiting", jb["state"])
		ws := dial(t, s, saleID, "qt="+jb["queue_token"].(string))

		require.Equal(t, map[string]any{"type": "position", "position": 1.0, "queue_length": 1.0,
			"eta_seconds": nil, "paused": true, "all_reserved": false, "poll_after_seconds": 2.0}, ws.next(5*time.Second))

		patch(t, s, saleID, map[string]any{"state": "open"})
		// the open frame and the admission may come in either order (the
		// admitter can read the new state before the event is appended)
		var adm map[string]any
		sawOpen := false
		for adm == nil || !sawOpen {
			f := ws.next(10 * time.Second)
			switch f["type"] {
			case "open":
				require.Equal(t, map[string]any{"type": "open"}, f)
				sawOpen = true
			case "admitted":
				adm = f
			default:
				require.Equal(t, "position", f["type"], "frame %v", f)
				require.Equal(t, 1.0, f["position"])
			}
		}
		require.Len(t, adm, 3, "type, ticket, ticket_expires_at: %v", adm)
		tok := adm["ticket"].(string)
		claims, err := s.Issuer.VerifyTicket(tok, saleID, time.Now())
		require.NoError(t, err)
		require.Equal(t, user, claims.Subject)
		require.Equal(t, saleID, claims.Audience)
		require.Equal(t, "ticket", claims.Use)
		require.Equal(t, api.Time(time.Unix(claims.ExpiresAt, 0)), adm["ticket_expires_at"])
		require.EqualValues(t, 300, claims.ExpiresAt-claims.IssuedAt)
		rec, ok := tix(t, s.Redis, s.Keys.Sale(saleID), user)
		require.True(t, ok)
		require.Equal(t, admitRecord{JTI: claims.ID, IAT: claims.IssuedAt, Exp: claims.ExpiresAt, Reserved: 1}, rec)
		// polling signs the same ticket from the record, never a new one
		st := s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", jb["queue_token"].(string), nil)
		require.Equal(t, http.StatusOK, st.Status, "%s", st.Body)
		require.Equal(t, map[string]any{"state": "admitted", "ticket": tok, "ticket_expires_at": adm["ticket_expires_at"]}, st.JSON(t))

		patch(t, s, saleID, map[string]any{"state": "paused"})
		require.Equal(t, map[string]any{"type": "paused"}, ws.next(5*time.Second))
		patch(t, s, saleID, map[string]any{"state": "open"})
		require.Equal(t, map[string]any{"type": "open"}, ws.next(5*time.Second))
		patch(t, s, saleID, map[string]any{"state": "closed"})
		require.Equal(t, map[string]any{"type": "closed"}, ws.next(5*time.Second))
		require.Equal(t, waitingroom.CloseFinal, ws.closeCode(5*time.Second))
	})

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		saleID := pausedSale(t, s, nil)
		other := pausedSale(t, s, nil)
		user := "bob-" + testenv.RandomID()
		jb := join(t, s, saleID, user)
		otherQT := join(t, s, other, user)["queue_token"].(string)
		for _, tc := range []struct {
			name    string
			query   string
			headers []string
			want    int
		}{
			{"no token", "", nil, waitingroom.CloseBadToken},
			{"bad token", "qt=not-a-token", nil, waitingroom.CloseBadToken},
			{"another sale's queue token", "qt=" + otherQT, nil, waitingroom.CloseBadToken},
			{"a ticket as a queue token", "qt=" + s.Ticket(saleID, user, time.Minute), nil, waitingroom.CloseBadToken},
			{"origin not allowed", "qt=" + jb["queue_token"].(string), []string{"Origin", "http://evil.example"}, waitingroom.CloseOrigin},
			{"not in queue", "", []string{"Authorization", "Bearer " + s.UserToken(t, "stranger-"+testenv.RandomID())}, waitingroom.CloseNotInQueue},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				ws := dial(t, s, saleID, tc.query, tc.headers...)
				require.Equal(t, tc.want, ws.closeCode(5*time.Second))
			})
		}
	})

	// A socket of an ended sale gets its end and the final close code, even
	// before the admitter has deleted the queue.
	t.Run("ended", func(t *testing.T) {
		t.Parallel()
		saleID := pausedSale(t, s, nil)
		qt := join(t, s, saleID, "ann-"+testenv.RandomID())["queue_token"].(string)
		patch(t, s, saleID, map[string]any{"state": "closed"})
		ws := dial(t, s, saleID, "qt="+qt)
		require.Equal(t, map[string]any{"type": "closed"}, ws.next(5*time.Second))
		require.Equal(t, waitingroom.CloseFinal, ws.closeCode(5*time.Second))
	})

	t.Run("auth", func(t *testing.T) {
		t.Parallel()
		saleID := pausedSale(t, s, nil)
		ann, bob := "ann-"+testenv.RandomID(), "bob-"+testenv.RandomID()
		qt := join(t, s, saleID, ann)["queue_token"].(string)
		join(t, s, saleID, bob)
		for _, tc := range []struct {
			name    string
			query   string
			headers []string
			pos     float64
		}{
			{"queue token in ?qt=", "qt=" + qt, nil, 1},
			{"queue token as a bearer", "", []string{"Authorization", "Bearer " + qt}, 1},
			{"user token as a bearer", "", []string{"Authorization", "Bearer " + s.UserToken(t, bob)}, 2},
			{"queue token cookie", "", []string{"Cookie", "fs_qt=" + qt}, 1},
			{"origin of the server itself", "qt=" + qt, []string{"Origin", s.URL}, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				ws := dial(t, s, saleID, tc.query, tc.headers...)
				f := ws.next(5 * time.Second)
				require.Equal(t, "position", f["type"], "frame %v", f)
				require.Equal(t, tc.pos, f["position"])
				require.Equal(t, 2.0, f["queue_length"])
				require.Equal(t, true, f["paused"])
			})
		}
	})

	// With 150 waiters and a slow rate, a socket's position frames never go
	// up, come at least every 2 s while the position changes, and reach 1
	// (max_active stops admission with the socket's user at the head).
	t.Run("positions", func(t *testing.T) {
		t.Parallel()
		const n = 150
		saleID := pausedSale(t, s, map[string]any{"stock": 1000, "admission_rate": 25, "max_active": n - 1})
		ctx := context.Background()
		for i := range n - 1 {
			st, err := s.Node.Queue.Join(ctx, saleID, fmt.Sprintf("w-%03d", i))
			require.NoError(t, err)
			require.EqualValues(t, i+1, st.Position)
		}
		user := "last-" + testenv.RandomID()
		jb := join(t, s, saleID, user)
		require.EqualValues(t, n, jb["position"])
		ws := dial(t, s, saleID, "qt="+jb["queue_token"].(string))
		f := ws.next(5 * time.Second)
		require.Equal(t, "position", f["type"])
		require.EqualValues(t, n, f["position"])

		patch(t, s, saleID, map[string]any{"state": "open"})
		last, lastAt := float64(n), time.Now()
		var positions []float64
		var all []string
		sawETA := false
		deadline := time.Now().Add(30 * time.Second)
		for last > 1 {
			require.True(t, time.Now().Before(deadline), "position 1 within 30 s; frames: %v", positions)
			f := ws.next(5 * time.Second)
			all = append(all, fmt.Sprintf("%s %v", time.Now().Format("05.000"), f))
			if f["type"] == "open" {
				continue
			}
			require.Equal(t, "position", f["type"], "frame %v", f)
			p := f["position"].(float64)
			positions = append(positions, p)
			require.LessOrEqual(t, p, last, "positions never go up: %v", positions)
			require.GreaterOrEqual(t, p, 1.0)
			require.Equal(t, false, f["paused"], "frame %v after %v", f, all)
			if p < last {
				require.Less(t, time.Since(lastAt), 3*time.Second, "a changed position within 2 s (and a tick)")
				lastAt = time.Now()
			}
			if eta, ok := f["eta_seconds"].(float64); ok {
				require.Positive(t, eta)
				sawETA = true
			}
			last = p
		}
		require.Greater(t, len(positions), 2, "several steps down: %v", positions)
		require.True(t, sawETA, "an ETA once the head moves: %v", positions)
		require.EqualValues(t, n-1, hint(t, s.Redis, s.Keys.Sale(saleID).Stats, "admitted_total"))
	})
}
