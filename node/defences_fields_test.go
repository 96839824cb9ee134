package node_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// TestSaleDefenceFields: the abuse-defence and shop fields of a sale, with
// their defaults, on create and PATCH, in every answer that shows a sale;
// bad values are 422 naming the field.
func TestSaleDefenceFields(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t, func(c *node.Config) {
		c.CaptchaVerifyURL, c.CaptchaSecret, c.CaptchaSiteKey = "http://127.0.0.1:9/siteverify", "secret", "site"
	})
	sl := s.CreateSale(t, nil)
	id := sl["id"].(string)
	require.Equal(t, "none", sl["join_challenge"])
	require.EqualValues(t, 18, sl["pow_difficulty"])
	require.EqualValues(t, 0, sl["max_users_per_ip"])
	require.Contains(t, sl, "message")
	require.Nil(t, sl["message"])
	require.Contains(t, sl, "return_url")
	require.Nil(t, sl["return_url"])

	made := s.CreateSale(t, map[string]any{"join_challenge": "pow", "pow_difficulty": 20, "max_users_per_ip": 3,
		"return_url": "https://shop.example/checkout?x=1"})
	require.Equal(t, "pow", made["join_challenge"])
	require.EqualValues(t, 20, made["pow_difficulty"])
	require.EqualValues(t, 3, made["max_users_per_ip"])
	require.Equal(t, "https://shop.example/checkout?x=1", made["return_url"])

	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"join_challenge": "captcha",
		"pow_difficulty": 16, "max_users_per_ip": 2, "return_url": "http://127.0.0.1:9000/shop"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	p := r.JSON(t)
	require.Equal(t, "captcha", p["join_challenge"])
	require.EqualValues(t, 16, p["pow_difficulty"])
	require.EqualValues(t, 2, p["max_users_per_ip"])
	require.Equal(t, "http://127.0.0.1:9000/shop", p["return_url"])
	for _, path := range []string{"/api/v1/sales/" + id, "/api/v1/admin/sales/" + id} {
		g := s.Do(t, "GET", path, s.AdminToken, nil).JSON(t)
		require.Equal(t, "captcha", g["join_challenge"], path)
		require.EqualValues(t, 2, g["max_users_per_ip"], path)
	}
	// MySQL keeps them: a live copy Redis lost comes back with them
	require.NoError(t, s.Redis.Del(context.Background(), s.Keys.Sale(id).Cfg).Err())
	g := s.Do(t, "GET", "/api/v1/admin/sales/"+id, s.AdminToken, nil).JSON(t)
	require.Equal(t, "captcha", g["join_challenge"])
	require.EqualValues(t, 16, g["pow_difficulty"])
	require.Equal(t, "http://127.0.0.1:9000/shop", g["return_url"])

	r = s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"return_url": nil})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	require.Nil(t, r.JSON(t)["return_url"], "null clears it")
	require.Equal(t, "captcha", r.JSON(t)["join_challenge"], "the rest stays")

	for _, tc := range []struct {
		field string
		value any
	}{
		{"join_challenge", "riddle"}, {"pow_difficulty", 0}, {"pow_difficulty", 31}, {"max_users_per_ip", -1},
		{"return_url", "http://shop.example/"}, {"return_url", "/relative"}, {"return_url", "ftp://x/"},
		{"return_url", ""},
	} {
		body := map[string]any{"name": "x", "price_cents": 1, "currency": "EUR", "stock": 1, tc.field: tc.value}
		c := s.Do(t, "POST", "/api/v1/admin/sales", s.AdminToken, body)
		require.Equal(t, http.StatusUnprocessableEntity, c.Status, "create %s=%v: %s", tc.field, tc.value, c.Body)
		require.Contains(t, string(c.Body), tc.field)
		pt := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{tc.field: tc.value})
		require.Equal(t, http.StatusUnprocessableEntity, pt.Status, "patch %s=%v: %s", tc.field, tc.value, pt.Body)
		require.Contains(t, string(pt.Body), tc.field)
	}
}
