package node_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAuditLog: every operator change (sale creation, PATCH, message,
// pass, ban and its lift) is recorded with who, what, when, from where and
// the request, newest first and paginated; refused changes and reads are
// not recorded; the log is the admin's only.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	s := proxied(t)
	xff := []string{"X-Forwarded-For", "198.51.100.23"}
	r := s.Do(t, "POST", "/api/v1/admin/sales", s.AdminToken, map[string]any{"id": "audited", "name": "A", "price_cents": 1,
		"currency": "EUR", "stock": 3}, xff...)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	require.Equal(t, http.StatusOK, s.Do(t, "PATCH", "/api/v1/admin/sales/audited", s.AdminToken, map[string]any{"state": "paused"}, xff...).Status)
	require.Equal(t, http.StatusUnprocessableEntity, s.Do(t, "PATCH", "/api/v1/admin/sales/audited", s.AdminToken, map[string]any{"state": "nope"}, xff...).Status)
	require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/admin/sales/audited/message", s.AdminToken, map[string]any{"text": "hi"}, xff...).Status)
	require.Equal(t, http.StatusCreated, s.Do(t, "POST", "/api/v1/admin/sales/audited/passes", s.AdminToken, map[string]any{"user_id": "vip", "ttl_seconds": 60}, xff...).Status)
	b := s.Do(t, "POST", "/api/v1/admin/bans", s.AdminToken, map[string]any{"ip": "203.0.113.0/24", "reason": "bots"}, xff...)
	require.Equal(t, http.StatusCreated, b.Status, "%s", b.Body)
	banID := b.JSON(t)["id"].(string)
	require.Equal(t, http.StatusNoContent, s.Do(t, "DELETE", "/api/v1/admin/bans/"+banID, s.AdminToken, nil, xff...).Status)
	require.Equal(t, http.StatusOK, s.Do(t, "GET", "/api/v1/admin/sales/audited", s.AdminToken, nil, xff...).Status)

	page := s.Do(t, "GET", "/api/v1/admin/audit?limit=4", s.AdminToken, nil)
	require.Equal(t, http.StatusOK, page.Status, "%s", page.Body)
	first := page.JSON(t)
	entries := first["entries"].([]any)
	require.Len(t, entries, 4)
	actions := []string{}
	for _, e := range entries {
		actions = append(actions, e.(map[string]any)["action"].(string))
	}
	require.Equal(t, []string{"ban.lift", "ban.create", "pass.create", "sale.message"}, actions, "newest first")
	lift := entries[0].(map[string]any)
	require.Equal(t, "admin", lift["actor"])
	require.Equal(t, "198.51.100.23", lift["address"])
	require.Equal(t, banID, lift["target"])
	require.NotEmpty(t, lift["at"])
	require.Equal(t, banID, entries[1].(map[string]any)["target"], "the new ban's id")
	require.Equal(t, map[string]any{"text": "hi"}, entries[3].(map[string]any)["request"])
	require.Equal(t, "audited", entries[3].(map[string]any)["sale_id"])

	next := s.Do(t, "GET", "/api/v1/admin/audit?limit=4&before="+itoa(first["next"]), s.AdminToken, nil).JSON(t)
	rest := next["entries"].([]any)
	require.Len(t, rest, 2, "the refused PATCH and the read are not recorded")
	require.Equal(t, "sale.update", rest[0].(map[string]any)["action"])
	require.Equal(t, "sale.create", rest[1].(map[string]any)["action"])
	require.Equal(t, "audited", rest[1].(map[string]any)["sale_id"])
	require.Nil(t, next["next"])

	require.Equal(t, http.StatusUnauthorized, s.Do(t, "GET", "/api/v1/admin/audit", "", nil).Status)
	require.Equal(t, http.StatusUnprocessableEntity, s.Do(t, "GET", "/api/v1/admin/audit?limit=0", s.AdminToken, nil).Status)
}

func itoa(v any) string {
	f, _ := v.(float64)
	return strconv.FormatInt(int64(f), 10)
}
