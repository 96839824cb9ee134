package waitingroom

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/ticket"
)

// userToken finds the shop's user token: the Authorization header, else the
// fs_token cookie.
func userToken(r *http.Request) string {
	if t := api.Bearer(r); t != "" {
		return t
	}
	if c, err := r.Cookie("fs_token"); err == nil {
		return c.Value
	}
	return ""
}

const queueCookie = "fs_qt"

// queueTokenCookie is the queue-token cookie of a sale's page, as join sets
// it and leave clears it: a clearing cookie must name the same path, or the
// browser keeps the old one.
func (s *Server) queueTokenCookie(r *http.Request, saleID, value string) *http.Cookie {
	return &http.Cookie{Name: queueCookie, Value: value, Path: "/api/v1/sales/" + saleID,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.cfg.Proxies.IsHTTPS(r)}
}

// shopper authenticates a status, ws or leave call: a queue token of this
// sale (header, cookie, or ?qt= when allowQuery), else a user token. With a
// queue token it also returns the place the token remembers.
func (s *Server) shopper(r *http.Request, saleID string, allowQuery bool) (string, ticket.QueuePlace, error) {
	now := time.Now()
	var candidates []string
	if t := api.Bearer(r); t != "" {
		candidates = append(candidates, t)
	}
	if allowQuery {
		if t := r.URL.Query().Get("qt"); t != "" {
			candidates = append(candidates, t)
		}
	}
	if c, err := r.Cookie(queueCookie); err == nil && c.Value != "" {
		candidates = append(candidates, c.Value)
	}
	for _, t := range candidates {
		if user, at, err := s.issuer.VerifyQueueTokenAt(t, saleID, now); err == nil {
			return user, at, nil
		}
	}
	if t := userToken(r); t != "" {
		if user, err := s.ident.Verify(r.Context(), t); err == nil {
			return user, ticket.QueuePlace{}, nil
		}
	}
	return "", ticket.QueuePlace{}, api.ErrUnauthorized
}

// checkCookieOrigin refuses cross-site request forgery on a call that
// changes state (join, leave) when it is authenticated by a cookie alone:
// no Authorization header, and a user or queue token cookie.
func (s *Server) checkCookieOrigin(r *http.Request) error {
	if api.Bearer(r) != "" {
		return nil
	}
	_, errUser := r.Cookie("fs_token")
	_, errQueue := r.Cookie(queueCookie)
	if errUser != nil && errQueue != nil {
		return nil // no cookie: the call fails authentication
	}
	return api.CheckCookieOrigin(r, s.cfg.AllowedOrigins)
}

func (s *Server) user(r *http.Request) (string, error) {
	t := userToken(r)
	if t == "" {
		return "", api.ErrUnauthorized
	}
	user, err := s.ident.Verify(r.Context(), t)
	if err != nil {
		return "", api.Errorf(http.StatusUnauthorized, "unauthorized", "the user token is invalid or expired")
	}
	return user, nil
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	if err := s.checkCookieOrigin(r); err != nil {
		s.countJoin("forbidden")
		s.fail(w, r, err)
		return
	}
	user, authErr := s.user(r)
	// lim: the rate checks still to make, carried by the join's own script
	// call when the sale's door needs nothing else first (one round trip)
	lim, err := s.gateQueue(r, user, saleID, authErr)
	if err != nil {
		s.countJoin(api.AsError(err).Code)
		s.fail(w, r, err)
		return
	}
	settle := func(err error) error { return s.settle(r, &lim, err) }
	var proof JoinProof
	if err := api.ReadJSON(r, &proof, true); err != nil {
		err = settle(err)
		s.countJoin(api.AsError(err).Code)
		s.fail(w, r, err)
		return
	}
	sl, err := s.store.Cached(r.Context(), saleID, time.Second)
	if err != nil {
		s.fail(w, r, settle(err))
		return
	}
	addr := s.cfg.Proxies.Addr(r)
	if needsDoor(sl, &proof) {
		if err := settle(nil); err != nil {
			s.countJoin(api.AsError(err).Code)
			s.fail(w, r, err)
			return
		}
		if err := s.admit(r.Context(), sl, user, addr, &proof); err != nil {
			s.countJoin("refused")
			s.fail(w, r, s.queueErr(saleID, err))
			return
		}
	}
	st, err := s.queue.Limited(r.Context(), saleID, opJoin, user, lim)
	if err != nil {
		s.countJoin("error")
		s.fail(w, r, s.queueErr(saleID, err))
		return
	}
	if st.Kind == KindLimited {
		err := lim.Refusal(st.Wait, st.Worst)
		s.countJoin(api.AsError(err).Code)
		s.fail(w, r, err)
		return
	}
	s.countJoin(st.Kind)
	if s.cfg.Sources != nil {
		s.cfg.Sources.Record(saleID, addr, st.New)
	}
	switch st.Kind {
	case KindClosed:
		s.fail(w, r, errSaleClosed)
		return
	case KindSoldOut:
		s.fail(w, r, errSoldOut)
		return
	case KindNotOpen:
		s.fail(w, r, api.Errorf(http.StatusConflict, "queue_not_open", "the queue opens at %s", api.Time(sl.QueueOpens())))
		return
	case KindRestoring:
		s.fail(w, r, errRestoring)
		return
	}
	now := time.Now()
	exp := now.Add(24 * time.Hour)
	if sl.EndsAt != nil {
		exp = *sl.EndsAt
	}
	var at ticket.QueuePlace
	if st.Kind == KindWaiting || st.Kind == KindLane || st.Kind == KindPrequeue {
		at = ticket.QueuePlace{Place: strconv.FormatFloat(st.Place, 'f', 0, 64), Gen: st.Gen}
	}
	qt := s.issuer.QueueTokenAt(saleID, user, at, now, exp)
	cookie := s.queueTokenCookie(r, saleID, qt)
	cookie.Expires = exp
	http.SetCookie(w, cookie)
	body := s.hub.view(sl, user, st, s.etaFor(saleID, st), false, now)
	switch b := body.(type) {
	case *Position:
		b.QueueToken = qt
	case *Admitted:
		b.QueueToken = qt
	case *Simple:
		b.QueueToken = qt
	}
	api.WriteJSON(w, http.StatusOK, body)
}

func (s *Server) countJoin(result string) {
	if m := s.cfg.Metrics; m != nil {
		m.Joins.WithLabelValues(result).Inc()
	}
}

func (s *Server) etaFor(saleID string, st UserState) *int64 {
	if st.Kind != KindWaiting && st.Kind != KindLane {
		return nil
	}
	_ = s.hub.track(context.Background(), saleID) // keep this sale's table read, for ETAs
	return s.hub.ETA(saleID, st.Position)
}

var (
	errSaleClosed = api.Errorf(http.StatusGone, "sale_closed", "the sale is closed")
	errSoldOut    = api.Errorf(http.StatusGone, "sold_out", "the sale is sold out")
	errNotInQueue = api.Errorf(http.StatusNotFound, "not_in_queue", "you are not in this sale's queue; join first")
	// errRestoring: Redis lost the queue and nodes are putting its waiters
	// back; a newcomer (or one not yet back) retries shortly.
	errRestoring = api.Unavailable("the queue (being put back after a Redis loss)")
)

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	user, at, err := s.shopper(r, saleID, false)
	// lim: the rate checks, carried by the status's own script call
	lim, err := s.gateQueue(r, user, saleID, err)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sl, err := s.store.Cached(r.Context(), saleID, time.Second)
	if err != nil {
		s.fail(w, r, s.settle(r, &lim, err))
		return
	}
	st, err := s.statusAt(r.Context(), saleID, user, at, lim)
	if err != nil {
		s.fail(w, r, s.queueErr(saleID, err))
		return
	}
	switch st.Kind {
	case KindLimited:
		s.fail(w, r, lim.Refusal(st.Wait, st.Worst))
	case KindClosed:
		s.fail(w, r, errSaleClosed)
	case KindSoldOut:
		s.fail(w, r, errSoldOut)
	case KindNotInQueue:
		s.fail(w, r, errNotInQueue)
	case KindRestoring:
		s.fail(w, r, errRestoring)
	default:
		api.WriteJSON(w, http.StatusOK, s.hub.view(sl, user, st, s.etaFor(saleID, st), false, time.Now()))
	}
}

func (s *Server) leave(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	if err := s.checkCookieOrigin(r); err != nil {
		s.fail(w, r, err)
		return
	}
	user, _, err := s.shopper(r, saleID, false)
	if err := s.gate(r, user, saleID, err); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.store.Cached(r.Context(), saleID, time.Second); err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.queue.Leave(r.Context(), saleID, user)
	if err != nil {
		s.fail(w, r, s.queueErr(saleID, err))
		return
	}
	if st.Kind == KindNotInQueue {
		s.fail(w, r, errNotInQueue)
		return
	}
	// Void the place in queue tokens that remember it. The leave itself is
	// done; should MySQL fail, a token may put its shopper back after a
	// Redis loss, as before this record existed.
	if err := s.leaves.record(r.Context(), saleID, user, st.Place); err != nil {
		s.cfg.Logger.Warn("leave: record the place given up", "sale", saleID, "user", user, "err", err)
	}
	// The page's own queue token goes too.
	cookie := s.queueTokenCookie(r, saleID, "")
	cookie.MaxAge = -1
	http.SetCookie(w, cookie)
	w.WriteHeader(http.StatusNoContent)
}
