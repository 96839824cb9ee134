package waitingroom

import (
	"net/http"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

func (s *Server) publicList(w http.ResponseWriter, r *http.Request) {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	if time.Since(s.listAt) >= time.Second {
		sales, err := s.store.List(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.list, s.listAt = mustJSON(salesJSON(sales, time.Now())), time.Now()
	}
	api.WriteRaw(w, http.StatusOK, s.list)
}

// salesJSON is the contract's list of sales, shared by the public list and
// the operators' one.
func salesJSON(sales []*sale.Sale, now time.Time) map[string]any {
	out := make([]any, len(sales))
	for i, sl := range sales {
		out[i] = sl.JSON(now)
	}
	return map[string]any{"sales": out}
}

func (s *Server) publicGet(w http.ResponseWriter, r *http.Request) {
	sl, err := s.store.Cached(r.Context(), r.PathValue("sale"), time.Second)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, sl.JSON(time.Now()))
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.issuer.Keys().JWKS())
}
