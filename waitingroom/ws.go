package waitingroom

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/sale"
)

// upgrader makes shopper sockets lean, since a node holds tens of
// thousands of them and most are idle: a 256-byte read buffer (clients
// only send pongs and the close; control frames need 125 bytes), and no
// write buffer of their own: one is lent from writeBuffers for a frame and
// given back after it (gorilla's WriteBufferPool). A frame larger than the
// buffer goes out as several fragments of one message, as before.
var upgrader = websocket.Upgrader{
	ReadBufferSize: 256, WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{},
	// Origin is checked after the upgrade, so a refused browser reads 4403.
	CheckOrigin: func(*http.Request) bool { return true },
	Error:       upgradeError,
}

// upgradeError answers a request the upgrader refuses (a plain GET, a
// missing or unsupported Sec-WebSocket-Version or key) in the contract's
// error shape instead of gorilla's plain text: 422 invalid_request, the
// contract's status for that code, where gorilla says 400.
func upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	code := "invalid_request"
	if status == http.StatusMethodNotAllowed {
		code = "method_not_allowed"
		w.Header().Set("Allow", http.MethodGet)
	} else {
		status = http.StatusUnprocessableEntity
	}
	w.Header().Set("Sec-Websocket-Version", "13")
	api.WriteError(w, api.Errorf(status, code, "this is a WebSocket endpoint; open it with a WebSocket client (%v)", reason))
}

// ws upgrades a shopper's socket, sends its first frame and returns: the
// socket's reader goroutine (readLoop) carries it from there. Returning
// lets go of what the HTTP server held for the request (its buffers, the
// request, a stack grown by the handler), a socket's largest cost when it
// stayed blocked in here.
func (s *Server) ws(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the HTTP error
	}
	refuse := func(code int, reason string) {
		msg := websocket.FormatCloseMessage(code, reason)
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		_ = ws.Close()
	}
	if !api.OriginAllowed(r, s.cfg.AllowedOrigins) {
		refuse(CloseOrigin, "origin not allowed")
		return
	}
	user, at, err := s.shopper(r, saleID, true)
	if err := s.gate(r, user, saleID, err); err != nil {
		switch api.AsError(err).Code {
		case "banned":
			refuse(CloseBanned, "banned")
		case "rate_limited":
			refuse(CloseRateLimited, "rate limited")
		default:
			refuse(CloseBadToken, "bad or missing token")
		}
		return
	}
	ctx := r.Context()
	sl, err := s.store.Cached(ctx, saleID, time.Second)
	if err != nil {
		if errors.Is(err, sale.ErrNotFound) {
			refuse(CloseNotInQueue, "no such sale")
		} else {
			refuse(websocket.CloseTryAgainLater, "store unavailable")
		}
		return
	}
	if err := s.hub.track(ctx, saleID); err != nil {
		refuse(websocket.CloseTryAgainLater, "store unavailable")
		return
	}
	c := newConn(ws, s.hub, saleID, user)
	c.addr = s.cfg.Proxies.Addr(r)
	s.hub.add(c)

	st, err := s.statusAt(ctx, saleID, user, at, ratelimit.Pending{})
	now := time.Now()
	switch {
	case err != nil:
		_ = s.queueErr(saleID, err)
		c.closeInstead(websocket.CloseTryAgainLater, "store unavailable")
	case st.Kind == KindNotInQueue:
		c.closeInstead(CloseNotInQueue, "not in queue")
	case st.Kind == KindRestoring:
		c.closeInstead(websocket.CloseTryAgainLater, "queue being restored")
	case st.Kind == KindClosed || st.Kind == KindSoldOut:
		c.first(typeFrame(st.Kind))
		c.Close(CloseFinal, st.Kind)
	case st.Kind == KindPurchased:
		c.setState(KindPurchased, 0)
		c.first(s.orderFrame(ctx, saleID, user, st.OrderID))
	default:
		frame := mustJSON(s.hub.view(sl, user, st, s.etaFor(saleID, st), true, now))
		c.pmu.Lock()
		// An event dispatched since the socket was added (admitted, expired)
		// is newer than this read: its frame is held and follows this one,
		// and its state must stay, or the hub would push positions after it.
		if c.kind == "" {
			c.kind, c.place = st.Kind, st.Place
			if st.Kind == KindWaiting || st.Kind == KindLane {
				c.lastPos = st.Position
			}
		}
		c.pmu.Unlock()
		c.first(frame)
		if msg := s.hub.lastMessage(sl); msg != nil {
			c.Send(msg)
		}
	}
	// From here the socket is read by the hub's poller (or a goroutine of
	// its own); its last writer closes it and takes it out of the hub.
	s.hub.watch(c)
}

// orderFrame is the order frame of a shopper who bought: the whole order
// when it can be read, else its id.
func (s *Server) orderFrame(ctx context.Context, saleID, user, orderID string) []byte {
	if s.cfg.OrderJSON != nil {
		if b, err := s.cfg.OrderJSON(ctx, orderID); err == nil {
			return []byte(`{"type":"order","order":` + string(b) + `}`)
		}
	}
	return mustJSON(map[string]any{"type": "order", "order": map[string]any{"id": orderID, "sale_id": saleID, "user_id": user}})
}
