package bans

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/flashsale/flashsale/api"
)

// requestTimeout bounds an operator's call, so a MySQL that does not
// answer is a 503 rather than a hang.
const requestTimeout = 5 * time.Second

// Handler serves the operators' ban endpoints.
type Handler struct {
	store *Store
	log   *slog.Logger

	// Changed, when set, is called after a ban is made or lifted (the node
	// passes its Watcher's Poke, so the change acts here at once rather
	// than at the next tick).
	Changed func()
	// Trusted are the trusted proxies' networks (--trusted-proxies): a ban
	// of an address or network that overlaps one is refused, since a proxy
	// is no client (it would ban nobody, or, were the proxy itself taken
	// for the client, everybody behind it).
	Trusted []netip.Prefix
}

// NewHandler returns the endpoints on store.
func NewHandler(store *Store, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	return &Handler{store: store, log: log}
}

// Register adds POST and GET /api/v1/admin/bans and DELETE
// /api/v1/admin/bans/{id} to mux, each wrapped in admin (the admin-token
// check).
func (h *Handler) Register(mux *http.ServeMux, admin func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("POST /api/v1/admin/bans", admin(h.create))
	mux.HandleFunc("GET /api/v1/admin/bans", admin(h.list))
	mux.HandleFunc("DELETE /api/v1/admin/bans/{id}", admin(h.delete))
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var req CreateRequest
	if err := api.ReadJSON(r, &req, false); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.IP != nil {
		if p, err := ParsePrefix(*req.IP); err == nil {
			for _, tp := range h.Trusted {
				if p.Overlaps(tp) {
					h.fail(w, r, api.Invalid("ip: %s covers a trusted proxy (%s in --trusted-proxies); ban the clients behind it instead",
						*req.IP, tp))
					return
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	b, err := h.store.Create(ctx, &req, time.Now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("ban created", "ban", b.ID, "user", b.UserID, "ip", b.IPString(), "sale", b.SaleID,
		"until", until(b), "reason", b.Reason)
	h.changed()
	api.WriteJSON(w, http.StatusCreated, b)
}

// until is a ban's end for the log.
func until(b *Ban) string {
	if b.ExpiresAt.IsZero() {
		return "lifted"
	}
	return api.Time(b.ExpiresAt)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	bans, err := h.store.List(ctx, time.Now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string][]Ban{"bans": bans})
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	id := r.PathValue("id")
	if err := h.store.Delete(ctx, id); err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("ban lifted", "ban", id)
	h.changed()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) changed() {
	if h.Changed != nil {
		h.Changed()
	}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := api.AsError(err)
	if e.Status >= 500 {
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	api.WriteError(w, e)
}
