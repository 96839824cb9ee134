package node_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestLifecycle checks every transition of the state machine over the
// operator API: allowed ones answer 200 with the new state, a PATCH to the
// current state is a no-op, the rest are 409 invalid_state.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)

	// reach makes a sale in the given state.
	reach := func(t *testing.T, state string) string {
		fields := map[string]any{}
		if state == "upcoming" {
			fields["starts_at"] = future
		}
		id := s.CreateSale(t, fields)["id"].(string)
		switch state {
		case "paused", "closed":
			r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": state})
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		case "sold_out":
			// sold out comes only from MySQL's count: buy the only unit
			id = s.CreateSale(t, map[string]any{"stock": 1})["id"].(string)
			r := s.Do(t, "POST", "/api/v1/sales/"+id+"/checkout", s.Ticket(id, "buyer", time.Minute), nil)
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			testenv.Eventually(t, 5*time.Second, func() bool {
				return s.Do(t, "GET", "/api/v1/admin/sales/"+id, s.AdminToken, nil).JSON(t)["state"] == "sold_out"
			}, "sale %s sold out", id)
		}
		got := s.Do(t, "GET", "/api/v1/admin/sales/"+id, s.AdminToken, nil).JSON(t)["state"]
		require.Equal(t, state, got)
		return id
	}

	allowed := map[string][]string{
		"upcoming": {"open", "closed", "upcoming"},
		"open":     {"paused", "closed", "open"},
		"paused":   {"open", "closed", "paused"},
		"closed":   {"closed"},
		"sold_out": {"sold_out"},
	}
	for _, from := range []string{"upcoming", "open", "paused", "closed", "sold_out"} {
		for _, to := range []string{"open", "paused", "closed"} {
			t.Run(fmt.Sprintf("%s_to_%s", from, to), func(t *testing.T) {
				t.Parallel()
				id := reach(t, from)
				r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": to})
				ok := false
				for _, a := range allowed[from] {
					ok = ok || a == to
				}
				if from == to {
					require.Equal(t, http.StatusOK, r.Status, "no-op: %s", r.Body)
					require.Equal(t, to, r.JSON(t)["state"])
					return
				}
				if !ok {
					require.Equal(t, http.StatusConflict, r.Status, "%s", r.Body)
					require.Equal(t, "invalid_state", r.Code(t))
					require.Equal(t, from, s.Do(t, "GET", "/api/v1/admin/sales/"+id, s.AdminToken, nil).JSON(t)["state"])
					return
				}
				require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
				require.Equal(t, to, r.JSON(t)["state"])
				pub := s.Do(t, "GET", "/api/v1/admin/sales/"+id, s.AdminToken, nil).JSON(t)
				require.Equal(t, to, pub["state"])
				if from == "upcoming" && to == "open" {
					// open on an upcoming sale starts it now
					start, err := time.Parse(time.RFC3339, pub["starts_at"].(string))
					require.NoError(t, err)
					require.WithinDuration(t, time.Now(), start, 5*time.Second)
				}
			})
		}
	}

	t.Run("unknown_state", func(t *testing.T) {
		t.Parallel()
		id := reach(t, "open")
		r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, `{"state":"sold_out"}`)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status)
		require.Equal(t, "invalid_request", r.Code(t))
	})
	t.Run("closed_stops_join_and_checkout", func(t *testing.T) {
		t.Parallel()
		id := reach(t, "closed")
		j := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, "late"), nil)
		require.Equal(t, http.StatusGone, j.Status)
		require.Equal(t, "sale_closed", j.Code(t))
		c := s.Do(t, "POST", "/api/v1/sales/"+id+"/checkout", s.Ticket(id, "late", time.Minute), nil)
		require.Equal(t, http.StatusGone, c.Status)
		require.Equal(t, "sale_closed", c.Code(t))
	})
	t.Run("paused_still_sells", func(t *testing.T) {
		t.Parallel()
		id := reach(t, "paused")
		c := s.Do(t, "POST", "/api/v1/sales/"+id+"/checkout", s.Ticket(id, "holder", time.Minute), nil)
		require.Equal(t, http.StatusCreated, c.Status, "%s", c.Body)
	})
	t.Run("ends_at_closes", func(t *testing.T) {
		t.Parallel()
		ends := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)
		id := s.CreateSale(t, map[string]any{"ends_at": ends})["id"].(string)
		testenv.Eventually(t, 10*time.Second, func() bool {
			return s.Do(t, "GET", "/api/v1/admin/sales/"+id, s.AdminToken, nil).JSON(t)["state"] == "closed"
		}, "sale closed at its end")
		// the admitter records it in MySQL too
		testenv.Eventually(t, 10*time.Second, func() bool {
			var st string
			return s.DB.QueryRow(`SELECT state FROM sales WHERE id = ?`, id).Scan(&st) == nil && st == "closed"
		}, "MySQL state closed")
	})
}

// TestCreateSaleValidation checks the create endpoint's 422s name the field,
// and auth.
func TestCreateSaleValidation(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	base := func() map[string]any {
		return map[string]any{"name": "X", "price_cents": 100, "currency": "EUR", "stock": 5}
	}
	cases := []struct {
		name  string
		edit  func(m map[string]any)
		field string
	}{
		{"no name", func(m map[string]any) { delete(m, "name") }, "name"},
		{"no price", func(m map[string]any) { delete(m, "price_cents") }, "price_cents"},
		{"negative price", func(m map[string]any) { m["price_cents"] = -1 }, "price_cents"},
		{"bad currency", func(m map[string]any) { m["currency"] = "eur" }, "currency"},
		{"no stock", func(m map[string]any) { delete(m, "stock") }, "stock"},
		{"zero stock", func(m map[string]any) { m["stock"] = 0 }, "stock"},
		{"zero rate", func(m map[string]any) { m["admission_rate"] = 0 }, "admission_rate"},
		{"zero max_active", func(m map[string]any) { m["max_active"] = 0 }, "max_active"},
		{"zero per_user", func(m map[string]any) { m["per_user_limit"] = 0 }, "per_user_limit"},
		{"short ttl", func(m map[string]any) { m["ticket_ttl_seconds"] = 9 }, "ticket_ttl_seconds"},
		{"short abandon", func(m map[string]any) { m["abandon_after_seconds"] = 4 }, "abandon_after_seconds"},
		{"negative hold", func(m map[string]any) { m["hold_ttl_seconds"] = -1 }, "hold_ttl_seconds"},
		{"bad mode", func(m map[string]any) { m["queue_mode"] = "random" }, "queue_mode"},
		{"bad id", func(m map[string]any) { m["id"] = "Not A Slug" }, "id"},
		{"bad time", func(m map[string]any) { m["starts_at"] = "tomorrow" }, "starts_at"},
		{"ends before start", func(m map[string]any) {
			m["starts_at"], m["ends_at"] = "2030-01-02T00:00:00Z", "2030-01-01T00:00:00Z"
		}, "ends_at"},
		{"queue opens after start", func(m map[string]any) {
			m["starts_at"], m["queue_opens_at"] = "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z"
		}, "queue_opens_at"},
		{"unknown field", func(m map[string]any) { m["colour"] = "red" }, "colour"},
		{"string stock", func(m map[string]any) { m["stock"] = "ten" }, "stock"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := base()
			c.edit(m)
			r := s.Do(t, "POST", "/api/v1/admin/sales", s.AdminToken, m)
			require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
			require.Equal(t, "invalid_request", r.Code(t))
			msg := r.JSON(t)["error"].(map[string]any)["message"].(string)
			require.Contains(t, msg, c.field)
		})
	}

	r := s.Do(t, "POST", "/api/v1/admin/sales", s.AdminToken, `{"name":`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status)
	r = s.Do(t, "POST", "/api/v1/admin/sales", s.AdminToken, strings.Repeat("x", 2<<20))
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
	require.Equal(t, "too_large", r.Code(t))

	// Auth: anything but the admin token is 401 unauthorized.
	for _, tok := range []string{"", "wrong", s.ServiceToken, s.UserToken(t, "alice")} {
		r := s.Do(t, "GET", "/api/v1/admin/sales", tok, nil)
		require.Equal(t, http.StatusUnauthorized, r.Status)
		require.Equal(t, "unauthorized", r.Code(t))
	}

	// Defaults and a taken id.
	created := s.CreateSale(t, map[string]any{"id": "dup-" + testenv.RandomID()})
	for k, v := range map[string]any{"admission_rate": 10.0, "max_active": 100.0, "ticket_ttl_seconds": 300.0,
		"hold_ttl_seconds": 0.0, "per_user_limit": 1.0, "queue_mode": "fifo", "abandon_after_seconds": 60.0,
		"return_window_seconds": 900.0, "ends_at": nil, "queue_opens_at": nil, "all_reserved": false} {
		require.Equal(t, v, created[k], k)
	}
	dup := s.Do(t, "POST", "/api/v1/admin/sales", s.AdminToken, map[string]any{"id": created["id"], "name": "X",
		"price_cents": 1, "currency": "EUR", "stock": 1})
	require.Equal(t, http.StatusConflict, dup.Status)
	require.Equal(t, "sale_exists", dup.Code(t))

	// Public reads; an unknown sale is 404.
	require.Equal(t, http.StatusOK, s.Do(t, "GET", "/api/v1/sales", "", nil).Status)
	require.Equal(t, http.StatusNotFound, s.Do(t, "GET", "/api/v1/sales/no-such-sale", "", nil).Status)
}
