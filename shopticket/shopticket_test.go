package shopticket_test

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/shopticket"
	"github.com/flashsale/flashsale/testenv"
)

// TestAnswersAsCheckoutDoes sends each kind of ticket to a shop behind the
// middleware and to the real node's checkout: a good one passes with its
// claims; every bad one gets the same status and code from both.
func TestAnswersAsCheckoutDoes(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, nil)["id"].(string)
	otherSale := s.CreateSale(t, nil)["id"].(string)
	front := newJWKSFront(t, s.URL)
	sh := newShop(t, shopticket.Config{JWKSURL: front.URL(), Sale: saleID}, nil)
	key, kid := s.Issuer.Keys().Current, s.Issuer.Keys().Kid

	good := s.Ticket(saleID, "auth0|alice", 5*time.Minute)
	c := sh.get(t, good, "").Claims(t)
	require.Equal(t, "auth0|alice", c.User)
	require.Equal(t, saleID, c.Sale)
	require.Equal(t, "flashsale", c.Issuer)
	require.Equal(t, kid, c.KeyID)
	require.Equal(t, good, c.Token)
	require.NotEmpty(t, c.ID)
	require.InDelta(t, time.Now().Add(5*time.Minute).Unix(), c.ExpiresAt, 2)

	tampered := func(tok string) string {
		// Another user in the claims, the signature left as it was.
		parts := strings.Split(tok, ".")
		other := strings.Split(signed(t, key, kid, ticketClaims(saleID, "mallory")), ".")
		return parts[0] + "." + other[1] + "." + parts[2]
	}
	with := func(change func(jwt.MapClaims)) string {
		cl := ticketClaims(saleID, "bob")
		change(cl)
		return signed(t, key, kid, cl)
	}
	cases := []struct {
		name, ticket string
		status       int
		code         string
	}{
		{"missing", "", http.StatusUnauthorized, "ticket_invalid"},
		{"not a JWT", "not-a-ticket", http.StatusUnauthorized, "ticket_invalid"},
		{"expired", s.Ticket(saleID, "bob", -time.Minute), http.StatusUnauthorized, "ticket_expired"},
		{"another sale", s.Ticket(otherSale, "bob", 5*time.Minute), http.StatusForbidden, "wrong_sale"},
		{"another sale and expired", s.Ticket(otherSale, "bob", -time.Minute), http.StatusForbidden, "wrong_sale"},
		{"tampered", tampered(good), http.StatusUnauthorized, "ticket_invalid"},
		{"unknown key", strangerTicket(t, saleID, "bob"), http.StatusUnauthorized, "ticket_invalid"},
		{"no kid", signed(t, key, "", ticketClaims(saleID, "bob")), http.StatusUnauthorized, "ticket_invalid"},
		{"use queue", with(func(c jwt.MapClaims) { c["use"] = "queue" }), http.StatusUnauthorized, "ticket_invalid"},
		{"no use", with(func(c jwt.MapClaims) { delete(c, "use") }), http.StatusUnauthorized, "ticket_invalid"},
		{"another issuer", with(func(c jwt.MapClaims) { c["iss"] = "someone-else" }), http.StatusUnauthorized, "ticket_invalid"},
		{"no sub", with(func(c jwt.MapClaims) { delete(c, "sub") }), http.StatusUnauthorized, "ticket_invalid"},
		{"no jti", with(func(c jwt.MapClaims) { delete(c, "jti") }), http.StatusUnauthorized, "ticket_invalid"},
		{"no exp", with(func(c jwt.MapClaims) { delete(c, "exp") }), http.StatusUnauthorized, "ticket_invalid"},
		{"nbf ahead", with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Minute).Unix() }), http.StatusUnauthorized, "ticket_invalid"},
		{"alg none", unsigned(t, kid, ticketClaims(saleID, "bob")), http.StatusUnauthorized, "ticket_invalid"},
		{"HS256 keyed with the public key", hmacSigned(t, key.Public().(ed25519.PublicKey), kid, ticketClaims(saleID, "bob")), http.StatusUnauthorized, "ticket_invalid"},
		{"too long", strings.Repeat("a", 5000), http.StatusUnauthorized, "ticket_invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := sh.get(t, tc.ticket, "")
			require.Equal(t, tc.status, a.Status, "shop: %s", a.Body)
			require.Equal(t, tc.code, a.Code(t))
			require.Equal(t, "application/json", a.Header.Get("Content-Type"))
			if tc.status == http.StatusUnauthorized {
				require.True(t, strings.HasPrefix(a.Header.Get("WWW-Authenticate"), "Bearer"), "a 401 names its scheme")
			}
			r := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", tc.ticket, `{"quantity":1}`)
			require.Equal(t, tc.status, r.Status, "checkout: %s", r.Body)
			require.Equal(t, tc.code, r.Code(t), "checkout's code for the same ticket")
		})
	}
	require.EqualValues(t, 2, front.fetches.Load(), "the start and the stranger's kid fetched; nothing else")
}

// TestRealAdmissionAndQueryParameter takes a ticket the way a shopper gets
// one (join, wait, admitted), hands it over as the waiting page does (the
// fs_ticket query parameter), and buys through flashsale's checkout with
// the token the claims carry.
func TestRealAdmissionAndQueryParameter(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, map[string]any{"stock": 3, "admission_rate": 20})["id"].(string)
	front := newJWKSFront(t, s.URL)
	sh := newShop(t, shopticket.Config{JWKSURL: front.URL(), Sale: saleID}, nil)

	user := "google-oauth2|" + testenv.RandomID()
	join := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, join.Status, "%s", join.Body)
	qt := join.JSON(t)["queue_token"].(string)
	var tok string
	testenv.Eventually(t, 20*time.Second, func() bool {
		st := s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil)
		tok, _ = st.JSON(t)["ticket"].(string)
		return tok != ""
	}, "admitted")

	c := sh.get(t, "", tok).Claims(t)
	require.Equal(t, user, c.User)
	require.Equal(t, saleID, c.Sale)

	// The query parameter wins over the header: a shop's front end may
	// send its own login token on the same request...
	require.Equal(t, user, sh.get(t, s.UserToken(t, "someone"), tok).Claims(t).User)
	// ... so a bad fs_ticket is refused even with a good bearer ticket.
	a := sh.get(t, tok, "garbage")
	require.Equal(t, http.StatusUnauthorized, a.Status)
	require.Equal(t, "ticket_invalid", a.Code(t))

	buy := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", c.Token, `{"quantity":1}`)
	require.Equal(t, http.StatusCreated, buy.Status, "%s", buy.Body)
	require.Equal(t, user, buy.JSON(t)["user_id"])
}

// TestExpiryAndLeeway moves the shop's clock: a ticket passes until its
// exp, Leeway more with it; nbf has at least 2 s of skew, as checkout.
func TestExpiryAndLeeway(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := "s-" + testenv.RandomID()
	front := newJWKSFront(t, s.URL)
	clk := newClock()
	strict := newShop(t, shopticket.Config{JWKSURL: front.URL(), Sale: saleID}, clk.Now)
	lenient := newShop(t, shopticket.Config{JWKSURL: front.URL(), Sale: saleID, Leeway: 30 * time.Second}, clk.Now)

	now := clk.Now().Unix()
	key, kid := s.Issuer.Keys().Current, s.Issuer.Keys().Kid
	cl := ticketClaims(saleID, "alice")
	cl["iat"], cl["nbf"], cl["exp"] = now+1, now+1, now+60 // Redis's clock a second ahead
	tok := signed(t, key, kid, cl)
	require.Equal(t, "alice", strict.get(t, tok, "").Claims(t).User, "nbf 1 s ahead passes")

	clk.Add(59 * time.Second)
	strict.get(t, tok, "").Claims(t)
	clk.Add(time.Second)
	a := strict.get(t, tok, "")
	require.Equal(t, http.StatusUnauthorized, a.Status)
	require.Equal(t, "ticket_expired", a.Code(t))
	lenient.get(t, tok, "").Claims(t)
	clk.Add(30 * time.Second)
	require.Equal(t, "ticket_expired", lenient.get(t, tok, "").Code(t))

	cl["nbf"], cl["exp"] = clk.Now().Unix()+20, clk.Now().Unix()+300
	early := signed(t, key, kid, cl)
	require.Equal(t, "ticket_invalid", strict.get(t, early, "").Code(t))
	lenient.get(t, early, "").Claims(t)
}

// TestConfigErrors names every missing or bad setting at once.
func TestConfigErrors(t *testing.T) {
	_, err := shopticket.New(shopticket.Config{})
	require.ErrorContains(t, err, "JWKSURL is required")
	require.ErrorContains(t, err, "Sale is required")
	_, err = shopticket.New(shopticket.Config{JWKSURL: "ftp://x/jwks", Sale: "s", Leeway: -time.Second})
	require.ErrorContains(t, err, `JWKSURL "ftp://x/jwks" is not an http(s) URL`)
	require.ErrorContains(t, err, "Leeway must not be negative")
}

// TestVerifyOutsideHTTP checks a ticket without the middleware (a queue
// consumer, a gRPC service) and uses the context helpers.
func TestVerifyOutsideHTTP(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := "s-" + testenv.RandomID()
	v, err := shopticket.New(shopticket.Config{JWKSURL: s.URL + "/.well-known/jwks.json", Sale: saleID,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer v.Close()
	c, err := v.Verify(t.Context(), s.Ticket(saleID, "alice", time.Minute))
	require.NoError(t, err)
	require.Equal(t, "alice", c.User)
	ctx := shopticket.NewContext(context.Background(), c)
	got, ok := shopticket.FromContext(ctx)
	require.True(t, ok)
	require.Equal(t, c, got)
	_, ok = shopticket.FromContext(context.Background())
	require.False(t, ok)

	c, err = v.Verify(t.Context(), s.Ticket("other", "alice", time.Minute))
	require.ErrorIs(t, err, shopticket.ErrWrongSale)
	require.Equal(t, "other", c.Sale, "the ticket's own sale, for the log")
	_, err = v.Verify(t.Context(), "")
	require.ErrorIs(t, err, shopticket.ErrNoTicket)
	v.Close() // twice is fine
	_, err = v.Verify(t.Context(), strangerTicket(t, saleID, "x"))
	require.ErrorIs(t, err, shopticket.ErrInvalid, "a closed Verifier answers at once")
}

// retryAfter is a 503's Retry-After in seconds.
func retryAfter(t *testing.T, a answer) int {
	t.Helper()
	n, err := strconv.Atoi(a.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", a.Header.Get("Retry-After"))
	return n
}
