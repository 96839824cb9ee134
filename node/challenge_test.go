package node_test

import (
	"crypto/sha256"
	"math/bits"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// solve finds the decimal nonce of a proof-of-work challenge, as the
// waiting page's worker does.
func solve(t *testing.T, challenge string, difficulty int) string {
	t.Helper()
	for n := 0; n < 1<<26; n++ {
		nonce := strconv.Itoa(n)
		sum := sha256.Sum256([]byte(challenge + ":" + nonce))
		zeros := 0
		for _, b := range sum {
			if b == 0 {
				zeros += 8
				continue
			}
			zeros += bits.LeadingZeros8(b)
			break
		}
		if zeros >= difficulty {
			return nonce
		}
	}
	t.Fatal("no nonce found")
	return ""
}

// TestJoinProofOfWork: a sale with join_challenge pow asks newcomers for a
// solved challenge bound to them and the sale, good for one join; a user
// already in the queue rejoins without one; the operator turns it on live.
func TestJoinProofOfWork(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, map[string]any{"admission_rate": 0.001})["id"].(string)
	other := s.CreateSale(t, map[string]any{"join_challenge": "pow", "pow_difficulty": 4})["id"].(string)
	join := func(saleID, user string, body any) *testenv.Response {
		return s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), body)
	}
	get := func(saleID, user string) map[string]any {
		r := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/challenge", s.UserToken(t, user), nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		return r.JSON(t)
	}
	require.Equal(t, map[string]any{"kind": "none"}, get(saleID, "early"))
	require.Equal(t, http.StatusOK, join(saleID, "early", nil).Status, "before the challenge")

	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+saleID, s.AdminToken, map[string]any{"join_challenge": "pow", "pow_difficulty": 8})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	r = join(saleID, "ann", nil)
	require.Equal(t, http.StatusForbidden, r.Status, "%s", r.Body)
	require.Equal(t, "challenge_required", r.Code(t))
	require.Equal(t, "pow", r.JSON(t)["error"].(map[string]any)["kind"])
	require.Equal(t, http.StatusOK, join(saleID, "early", nil).Status, "a queued user rejoins with no proof")

	c := get(saleID, "ann")
	require.Equal(t, "pow", c["kind"])
	require.EqualValues(t, 8, c["difficulty"])
	exp, err := time.Parse(time.RFC3339, c["expires_at"].(string))
	require.NoError(t, err)
	require.InDelta(t, 10*time.Minute.Seconds(), time.Until(exp).Seconds(), 5)
	ch := c["challenge"].(string)
	nonce := solve(t, ch, 8)
	proof := map[string]any{"pow": map[string]any{"challenge": ch, "nonce": nonce}}

	failed := func(r *testenv.Response, what string) {
		t.Helper()
		require.Equal(t, http.StatusForbidden, r.Status, "%s: %s", what, r.Body)
		require.Equal(t, "challenge_failed", r.Code(t), what)
	}
	failed(join(saleID, "bob", proof), "another user's proof")
	failed(join(other, "ann", proof), "another sale's proof")
	failed(join(saleID, "ann", map[string]any{"pow": map[string]any{"challenge": ch, "nonce": "12a"}}), "a nonce that is not decimal")
	failed(join(saleID, "ann", map[string]any{"pow": map[string]any{"challenge": ch + "x", "nonce": nonce}}), "a tampered challenge")
	require.Equal(t, http.StatusRequestEntityTooLarge, join(saleID, "ann", map[string]any{
		"pow": map[string]any{"challenge": strings.Repeat("A", 1<<20), "nonce": "1"}}).Status)
	require.Equal(t, http.StatusOK, join(saleID, "ann", proof).Status)
	require.Equal(t, http.StatusNoContent, s.Do(t, "DELETE", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, "ann"), nil).Status)
	failed(join(saleID, "ann", proof), "a used proof")
	require.Equal(t, http.StatusUnprocessableEntity, join(saleID, "ann", map[string]any{"proof": 1}).Status, "unknown field")
}

// TestJoinCaptcha: a sale with join_challenge captcha checks the widget's
// token with the siteverify protocol against a local verifier (a stand-in
// for Turnstile: a real HTTP server speaking the protocol); a verifier that
// is down answers 503 with Retry-After, never a pass.
func TestJoinCaptcha(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	var got atomic.Value
	verifier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		require.NoError(t, r.ParseForm())
		got.Store(r.PostForm.Encode())
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("secret") == "sekret" && r.PostForm.Get("response") == "good" {
			_, _ = w.Write([]byte(`{"success":true}`))
			return
		}
		_, _ = w.Write([]byte(`{"success":false,"error-codes":["invalid-input-response"]}`))
	}))
	defer verifier.Close()
	s := testenv.Start(t, func(c *node.Config) {
		c.CaptchaVerifyURL, c.CaptchaSecret, c.CaptchaSiteKey = verifier.URL, "sekret", "site-123"
	})
	saleID := s.CreateSale(t, map[string]any{"join_challenge": "captcha"})["id"].(string)
	join := func(user string, body any) *testenv.Response {
		return s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), body)
	}
	c := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/challenge", s.UserToken(t, "ann"), nil)
	require.Equal(t, map[string]any{"kind": "captcha", "site_key": "site-123"}, c.JSON(t))
	r := join("ann", nil)
	require.Equal(t, "challenge_required", r.Code(t))
	require.Equal(t, "captcha", r.JSON(t)["error"].(map[string]any)["kind"])
	r = join("ann", map[string]any{"captcha": "bad"})
	require.Equal(t, http.StatusForbidden, r.Status)
	require.Equal(t, "challenge_failed", r.Code(t))
	require.Equal(t, http.StatusOK, join("ann", map[string]any{"captcha": "good"}).Status)
	require.Contains(t, got.Load().(string), "remoteip=127.0.0.1")
	require.Contains(t, got.Load().(string), "response=good")

	down.Store(true)
	r = join("bob", map[string]any{"captcha": "good"})
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
	require.Equal(t, "unavailable", r.Code(t))
	require.NotEmpty(t, r.Header.Get("Retry-After"))
	st := s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", s.UserToken(t, "bob"), nil)
	require.Equal(t, http.StatusNotFound, st.Status, "never a pass")

	// without a verifier, no sale may ask for a captcha
	plain := testenv.Start(t)
	body := map[string]any{"name": "x", "price_cents": 1, "currency": "EUR", "stock": 1, "join_challenge": "captcha"}
	r = plain.Do(t, "POST", "/api/v1/admin/sales", plain.AdminToken, body)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status)
	require.Contains(t, string(r.Body), "join_challenge")
}
