package waitingroom

import (
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return api.AdminOnly(s.cfg.AdminToken)(h)
}

// canChallenge refuses a captcha challenge when no verifier is configured.
func (s *Server) canChallenge(kind string) error {
	if kind == sale.ChallengeCaptcha && s.cfg.Captcha == nil {
		return api.Invalid("join_challenge: captcha needs a verifier: start the server with --captcha-verify-url, " +
			"--captcha-secret and --captcha-site-key")
	}
	return nil
}

func (s *Server) createSale(w http.ResponseWriter, r *http.Request) {
	var req sale.CreateRequest
	if err := api.ReadJSON(r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	sl, err := req.Build(time.Now())
	if err == nil {
		err = s.canChallenge(sl.JoinChallenge)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.store.Create(r.Context(), sl); err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Logger.Info("sale created", "sale", sl.ID, "stock", sl.StockTotal, "rate", sl.AdmissionRate)
	got, err := s.store.Get(r.Context(), sl.ID)
	if err != nil {
		got = sl
	}
	api.WriteJSON(w, http.StatusCreated, got.JSON(time.Now()))
}

func (s *Server) listSales(w http.ResponseWriter, r *http.Request) {
	sales, err := s.store.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, salesJSON(sales, time.Now()))
}

func (s *Server) getSale(w http.ResponseWriter, r *http.Request) {
	sl, err := s.store.Get(r.Context(), r.PathValue("sale"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, sl.JSON(time.Now()))
}

func (s *Server) patchSale(w http.ResponseWriter, r *http.Request) {
	var p sale.PatchRequest
	err := api.ReadJSON(r, &p, false)
	if err == nil && p.JoinChallenge != nil {
		err = s.canChallenge(*p.JoinChallenge)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sl, err := s.store.Patch(r.Context(), r.PathValue("sale"), &p, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Logger.Info("sale changed", "sale", sl.ID, "state", sl.State, "rate", sl.AdmissionRate, "max_active", sl.MaxActive)
	api.WriteJSON(w, http.StatusOK, sl.JSON(time.Now()))
}

// sources lists the 20 client prefixes with the most joining users.
func (s *Server) sources(w http.ResponseWriter, r *http.Request) {
	sl, err := s.store.Cached(r.Context(), r.PathValue("sale"), time.Second)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list := []Source{}
	if s.cfg.Sources != nil {
		if list, err = s.cfg.Sources.Top(r.Context(), sl.ID, 20); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"sources": list})
}

// message sets or clears the operator's message to a sale's shoppers.
func (s *Server) message(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Text *string `json:"text"`
	}
	if err := api.ReadJSON(r, &body, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if body.Text == nil {
		s.fail(w, r, api.Invalid("text: required (\"\" clears the message)"))
		return
	}
	sl, err := s.store.SetMessage(r.Context(), r.PathValue("sale"), *body.Text, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Logger.Info("sale message", "sale", sl.ID, "text", *body.Text)
	api.WriteJSON(w, http.StatusOK, sl.JSON(time.Now()))
}

func (s *Server) summary(w http.ResponseWriter, r *http.Request) {
	sum, err := s.store.Summary(r.Context(), r.PathValue("sale"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, sum)
}

// createPass makes an operator's pass for one user of the sale: that
// user's join with it needs no challenge and is admitted at the next tick
// ahead of the queue, once.
func (s *Server) createPass(w http.ResponseWriter, r *http.Request) {
	var body struct {
		UserID     *string `json:"user_id"`
		TTLSeconds *int64  `json:"ttl_seconds"`
	}
	if err := api.ReadJSON(r, &body, false); err != nil {
		s.fail(w, r, err)
		return
	}
	switch {
	case body.UserID == nil || *body.UserID == "" || len(*body.UserID) > 255 || !utf8.ValidString(*body.UserID):
		s.fail(w, r, api.Invalid("user_id: required, 1 to 255 bytes of text"))
		return
	case body.TTLSeconds == nil || *body.TTLSeconds < 1 || *body.TTLSeconds > maxPassTTL:
		s.fail(w, r, api.Invalid("ttl_seconds: required, between 1 and %d", maxPassTTL))
		return
	}
	sl, err := s.store.Cached(r.Context(), r.PathValue("sale"), time.Second)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := time.Now()
	exp := now.Add(time.Duration(*body.TTLSeconds) * time.Second).Truncate(time.Second)
	pass := s.issuer.Pass(sl.ID, *body.UserID, now, exp)
	s.cfg.Logger.Info("pass made", "sale", sl.ID, "user", *body.UserID, "expires", exp)
	api.WriteJSON(w, http.StatusCreated, map[string]any{"pass": pass, "user_id": *body.UserID, "sale_id": sl.ID,
		"expires_at": api.Time(exp)})
}

// maxPassTTL bounds a pass's life: 30 days.
const maxPassTTL = 30 * 24 * 3600
