package checkout_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// sign makes a JWT of claims with alg EdDSA (or the method given) and kid.
func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

// ticketClaims are a valid ticket's claims, for forging variants of.
func ticketClaims(saleID, user string) jwt.MapClaims {
	now := time.Now().Unix()
	return jwt.MapClaims{"iss": "flashsale", "sub": user, "aud": saleID, "use": "ticket",
		"jti": "forged-" + testenv.RandomID(), "iat": now, "nbf": now, "exp": now + 300}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// b64 is a JWT segment of a JSON value.
func b64(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestCheckoutForgedTickets: every ticket that is missing, forged, for
// another sale, not yet valid, expired or used, and every other kind of
// token, gets the contract's 4xx and creates no order.
func TestCheckoutForgedTickets(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := newSale(t, s, nil)
	other := newSale(t, s, nil)
	const user = "mallory"
	keys := s.Issuer.Keys()
	pub := s.Issuer.PublicKey()
	_, strangerKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	claims := ticketClaims(saleID, user)
	now := time.Now().Unix()

	// A ticket that has bought already.
	used := s.Ticket(saleID, "used-ticket-user", time.Minute)
	require.Equal(t, http.StatusCreated, buy(t, s, saleID, used, nil).Status)

	// A queue token, as join answers it.
	join := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, join.Status, "join: %s", join.Body)
	queueToken, _ := join.JSON(t)["queue_token"].(string)
	require.NotEmpty(t, queueToken)

	valid := s.Ticket(saleID, user, time.Minute)
	parts := strings.Split(valid, ".")
	var payload map[string]any
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &payload))
	payload["sub"] = "someone-else"
	altered := parts[0] + "." + b64(t, payload) + "." + parts[2]

	tests := []struct {
		name   string
		header string // the Authorization header ("" for none)
		status int
		code   string
	}{
		{name: "no Authorization", header: "", status: 401, code: "ticket_invalid"},
		{name: "not a bearer token", header: "Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), status: 401, code: "ticket_invalid"},
		{name: "garbage", header: "Bearer not.a.jwt", status: 401, code: "ticket_invalid"},
		{name: "empty segments", header: "Bearer ..", status: 401, code: "ticket_invalid"},
		{name: "alg none", header: "Bearer " + b64(t, map[string]any{"alg": "none", "typ": "JWT", "kid": keys.Kid}) +
			"." + b64(t, claims) + ".", status: 401, code: "ticket_invalid"},
		{name: "HS256 keyed with the public key", header: "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(pub), keys.Kid, claims),
			status: 401, code: "ticket_invalid"},
		{name: "HS256 keyed with the public key's JWKS x", header: "Bearer " + sign(t, jwt.SigningMethodHS256,
			[]byte(base64.RawURLEncoding.EncodeToString(pub)), keys.Kid, claims), status: 401, code: "ticket_invalid"},
		{name: "another Ed25519 key under our kid", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, strangerKey, keys.Kid, claims),
			status: 401, code: "ticket_invalid"},
		{name: "another Ed25519 key under its own kid", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, strangerKey, "stranger", claims),
			status: 401, code: "ticket_invalid"},
		{name: "no kid", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, keys.Current, "", claims),
			status: 401, code: "ticket_invalid"},
		{name: "altered payload", header: "Bearer " + altered, status: 401, code: "ticket_invalid"},
		{name: "signature cut off", header: "Bearer " + parts[0] + "." + parts[1] + ".", status: 401, code: "ticket_invalid"},
		{name: "use queue, signed with our key", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, keys.Current, keys.Kid,
			with(claims, "use", "queue")), status: 401, code: "ticket_invalid"},
		{name: "another issuer", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, keys.Current, keys.Kid,
			with(claims, "iss", "evil")), status: 401, code: "ticket_invalid"},
		{name: "no jti", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, keys.Current, keys.Kid,
			with(claims, "jti", nil)), status: 401, code: "ticket_invalid"},
		{name: "no exp", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, keys.Current, keys.Kid,
			with(claims, "exp", nil)), status: 401, code: "ticket_invalid"},
		{name: "aud as a list", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, keys.Current, keys.Kid,
			with(claims, "aud", []string{saleID})), status: 401, code: "ticket_invalid"},
		{name: "nbf in the future", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, keys.Current, keys.Kid,
			with(claims, "nbf", now+3600, "exp", now+7200)), status: 401, code: "ticket_invalid"},
		{name: "expired", header: "Bearer " + s.Ticket(saleID, user, -time.Minute), status: 401, code: "ticket_expired"},
		{name: "expires now", header: "Bearer " + sign(t, jwt.SigningMethodEdDSA, keys.Current, keys.Kid,
			with(claims, "exp", now)), status: 401, code: "ticket_expired"},
		{name: "another sale's ticket", header: "Bearer " + s.Ticket(other, user, time.Minute), status: 403, code: "wrong_sale"},
		{name: "used ticket", header: "Bearer " + used, status: 401, code: "ticket_used"},
		{name: "queue token", header: "Bearer " + queueToken, status: 401, code: "ticket_invalid"},
		{name: "user token", header: "Bearer " + s.UserToken(t, user), status: 401, code: "ticket_invalid"},
		{name: "admin token", header: "Bearer " + s.AdminToken, status: 401, code: "ticket_invalid"},
		{name: "service token", header: "Bearer " + s.ServiceToken, status: 401, code: "ticket_invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: each case counts the orders around its request.
			before := orderRows(t, s, saleID)
			var headers []string
			if tt.header != "" {
				headers = []string{"Authorization", tt.header}
			}
			r := buy(t, s, saleID, "", map[string]any{"quantity": 1}, headers...)
			requireError(t, r, tt.status, tt.code)
			require.Equal(t, before, orderRows(t, s, saleID), "no order created")
		})
	}
	require.Equal(t, 1, orderRows(t, s, saleID), "only the used ticket's order")
	count, _ := liveOrders(t, s, other)
	require.Zero(t, count)

	// None of this hurt the shopper's real ticket.
	r := buy(t, s, saleID, valid, nil)
	require.Equal(t, http.StatusCreated, r.Status, "the valid ticket still buys: %s", r.Body)
	require.Equal(t, user, r.JSON(t)["user_id"])
}
