package waitingroom

import (
	"net/http"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/identity"
)

func (s *Server) devToken(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DevSecret == nil {
		api.WriteError(w, api.ErrNotFound)
		return
	}
	if err := s.limit(r, ""); err != nil {
		s.fail(w, r, err)
		return
	}
	var req struct {
		User string `json:"user"`
	}
	if err := api.ReadJSON(r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.User == "" || len(req.User) > 64 {
		s.fail(w, r, api.Invalid("user: required, 1 to 64 characters"))
		return
	}
	tok, exp, err := identity.Mint(s.cfg.DevSecret, req.User, 12*time.Hour)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"user": req.User, "token": tok, "expires_at": api.Time(exp)})
}
