package checkout

import (
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

// exportTimeout bounds one export: a sale of a million orders streams in
// well under a minute; a client that reads slower than that is cut off.
const exportTimeout = 10 * time.Minute

// EachOfSale calls fn with every order of a sale, oldest first, as MySQL
// streams them (one row in memory at a time), after begin; ErrNoSale when
// the sale has no row (begin is then not called). An error of fn stops the
// walk and is returned as it is; it is not MySQL's failure.
func (o *Orders) EachOfSale(ctx context.Context, saleID string, begin func(), fn func(*Order) error) error {
	var fnErr error
	err := o.call(func() error {
		ctx, cancel := context.WithTimeout(ctx, exportTimeout)
		defer cancel()
		var one int
		err := o.db.QueryRowContext(ctx, `SELECT 1 FROM sales WHERE id = ?`, saleID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoSale
		}
		if err != nil {
			return err
		}
		rows, err := o.db.QueryContext(ctx, selectOrder+` WHERE sale_id = ? ORDER BY created_at, id`, saleID)
		if err != nil {
			return err
		}
		defer rows.Close()
		begin()
		for rows.Next() {
			ord, err := scanOrder(rows)
			if err != nil {
				return err
			}
			if fnErr = fn(ord); fnErr != nil {
				return nil // MySQL answered; the caller's side failed
			}
		}
		return rows.Err()
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// ordersCSVHeader names the export's columns: the contract's order fields.
var ordersCSVHeader = []string{"id", "sale_id", "user_id", "quantity", "amount_cents", "currency", "status",
	"created_at", "hold_expires_at"}

var saleIDPattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// exportOrders streams a sale's orders as CSV (admin token):
// GET /api/v1/admin/sales/{sale}/orders.csv.
func (h *Handler) exportOrders(w http.ResponseWriter, r *http.Request) {
	api.AdminOnly(h.cfg.AdminToken)(h.serveOrdersCSV)(w, r)
}

func (h *Handler) serveOrdersCSV(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("sale")
	if !saleIDPattern.MatchString(id) {
		api.WriteError(w, api.ErrNotFound)
		return
	}
	cw := csv.NewWriter(w)
	started := false
	begin := func() {
		started = true
		hd := w.Header()
		hd.Set("Content-Type", "text/csv; charset=utf-8")
		// the id is [a-z0-9-]: nothing in it needs quoting in the header
		hd.Set("Content-Disposition", `attachment; filename="orders-`+id+`.csv"`)
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		_ = cw.Write(ordersCSVHeader)
	}
	n := 0
	err := h.svc.orders.EachOfSale(r.Context(), id, begin, func(o *Order) error {
		hold := ""
		if o.HoldExpiresAt != nil {
			hold = api.Time(*o.HoldExpiresAt)
		}
		if err := cw.Write([]string{o.ID, o.SaleID, csvCell(o.UserID), strconv.Itoa(o.Quantity),
			strconv.FormatInt(o.AmountCents, 10), o.Currency, o.Status, api.Time(o.CreatedAt), hold}); err != nil {
			return err
		}
		if n++; n%1000 == 0 { // hand the rows to the client as they come
			cw.Flush()
			return cw.Error()
		}
		return nil
	})
	if err == nil {
		cw.Flush()
		err = cw.Error()
	}
	switch {
	case err == nil:
	case !started && errors.Is(err, ErrNoSale):
		api.WriteError(w, sale.ErrNotFound)
	case !started:
		h.fail(w, r, &sale.StoreError{Store: "MySQL", Err: err})
	default:
		// The status line is gone: cut the connection so that the client
		// sees a broken download, never a short file that looks whole.
		if r.Context().Err() == nil {
			h.svc.cfg.Logger.Error("orders export failed midway", "sale", id, "rows", n, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// csvCell defuses a cell a spreadsheet would run as a formula (CSV
// injection): one that starts with = + - @, a tab or a carriage return gets
// a leading apostrophe, which spreadsheets show as text. Only the user id
// comes from outside; every other column is ours (ids, numbers, times).
func csvCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}
