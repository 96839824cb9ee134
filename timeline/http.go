package timeline

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

// Handler serves GET /api/v1/admin/sales/{sale}/timeline?since=&step=.
type Handler struct {
	store  *Store
	sales  *sale.Store
	logger *slog.Logger
}

// NewHandler returns the timeline's HTTP API.
func NewHandler(store *Store, sales *sale.Store, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	return &Handler{store: store, sales: sales, logger: logger}
}

// Register mounts the route, each handler wrapped by admin (the operator's
// token check).
func (h *Handler) Register(mux *http.ServeMux, admin func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /api/v1/admin/sales/{sale}/timeline", admin(h.timeline))
}

// maxStep is the coarsest thinning a caller may ask for: a day.
const maxStep = 86400

func (h *Handler) timeline(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := wholeParam(q.Get("since"), 0, 1<<40,
		"since: must be a time in Unix seconds, a whole number (0 or absent: the whole timeline)")
	if err == nil {
		var step int64
		step, err = wholeParam(q.Get("step"), 1, maxStep,
			"step: must be a whole number of seconds between 1 and 86400 (absent: every sample)")
		if err == nil {
			h.serve(w, r, since, step)
			return
		}
	}
	api.WriteError(w, err)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, since, step int64) {
	id := r.PathValue("sale")
	if _, err := h.sales.Get(r.Context(), id); err != nil {
		h.fail(w, r, err)
		return
	}
	series, err := h.store.Read(r.Context(), id, since, step)
	if err != nil {
		h.fail(w, r, api.Unavailable("Redis"))
		h.logger.Error("timeline: read", "sale", id, "err", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, series)
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var se *sale.StoreError
	if errors.As(err, &se) && r.Context().Err() == nil {
		h.logger.Error("timeline: request failed", "path", r.URL.Path, "err", err)
	}
	api.WriteError(w, err)
}

// wholeParam reads an optional whole-number query parameter within
// [lo, hi]; absent is lo.
func wholeParam(v string, lo, hi int64, msg string) (int64, error) {
	if v == "" {
		return lo, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, api.Invalid("%s", msg)
	}
	return n, nil
}
