package challenge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
)

// verifier is a local siteverify endpoint: the protocol Cloudflare
// Turnstile, hCaptcha and reCAPTCHA share (a form POST of secret, response
// and remoteip; a JSON answer with "success" and "error-codes"), since the
// tests cannot reach the real ones. It answers as they do: a wrong secret is
// invalid-input-secret, a wrong or spent token invalid-input-response or
// timeout-or-duplicate. answer, when set, replaces the protocol's answer.
type verifier struct {
	srv    *httptest.Server
	secret string
	token  string
	answer http.HandlerFunc

	mu    sync.Mutex
	forms []url.Values
	spent map[string]bool
}

func newVerifier(t *testing.T, answer http.HandlerFunc) *verifier {
	t.Helper()
	v := &verifier{secret: "0x4AAA-the-secret", token: "XXXX.the-widget-token.XXXX", answer: answer,
		spent: map[string]bool{}}
	v.srv = httptest.NewServer(http.HandlerFunc(v.serve))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *verifier) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		http.Error(w, "siteverify takes a form POST", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	v.mu.Lock()
	v.forms = append(v.forms, r.PostForm)
	v.mu.Unlock()
	if v.answer != nil {
		v.answer(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	reply := func(ok bool, codes ...string) {
		m := map[string]any{"success": ok, "error-codes": append([]string{}, codes...)}
		if ok {
			m["challenge_ts"] = time.Now().UTC().Format(time.RFC3339)
			m["hostname"] = "shop.example"
		}
		_ = json.NewEncoder(w).Encode(m)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case r.PostForm.Get("secret") == "":
		reply(false, "missing-input-secret")
	case r.PostForm.Get("secret") != v.secret:
		reply(false, "invalid-input-secret")
	case r.PostForm.Get("response") != v.token:
		reply(false, "invalid-input-response")
	case v.spent[v.token]:
		reply(false, "timeout-or-duplicate")
	default:
		v.spent[v.token] = true
		reply(true)
	}
}

func (v *verifier) received() []url.Values {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]url.Values(nil), v.forms...)
}

func (v *verifier) captcha() *Captcha {
	return &Captcha{VerifyURL: v.srv.URL, Secret: v.secret, SiteKey: "0x4AAA-site-key", Client: v.srv.Client()}
}

// requireUnavailable checks err is a verifier failure: a 503 unavailable
// with Retry-After, not a pass and not the shopper's fault.
func requireUnavailable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err, "a failing verifier must never pass")
	require.False(t, errors.Is(err, ErrFailed), "a failing verifier is not the shopper's fault: %v", err)
	var e *api.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, http.StatusServiceUnavailable, e.Status)
	require.Equal(t, "unavailable", e.Code)
	require.GreaterOrEqual(t, e.RetryAfter, 1)
	require.Equal(t, e, api.AsError(err))
}

func requireFailed(t *testing.T, err error) {
	t.Helper()
	require.ErrorIs(t, err, ErrFailed)
	e := api.AsError(err)
	require.Equal(t, http.StatusForbidden, e.Status)
	require.Equal(t, "challenge_failed", e.Code)
}

func TestCaptchaPasses(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, nil)
	c := v.captcha()
	require.NoError(t, c.Verify(context.Background(), v.token, "203.0.113.7"))
	forms := v.received()
	require.Len(t, forms, 1)
	require.Equal(t, url.Values{"secret": {v.secret}, "response": {v.token}, "remoteip": {"203.0.113.7"}}, forms[0])

	// Tokens are single-use at the vendor: the same one again fails.
	requireFailed(t, c.Verify(context.Background(), v.token, "203.0.113.7"))
}

func TestCaptchaSendsNoEmptyRemoteIP(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, nil)
	require.NoError(t, v.captcha().Verify(context.Background(), v.token, ""))
	require.Equal(t, url.Values{"secret": {v.secret}, "response": {v.token}}, v.received()[0])
}

func TestCaptchaRefusesWrongToken(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, nil)
	requireFailed(t, v.captcha().Verify(context.Background(), "a token the widget never gave", "2001:db8::1"))
	require.Len(t, v.received(), 1)
}

// TestCaptchaRefusesWithoutAsking: an empty or oversized token fails
// without a call to the verifier.
func TestCaptchaRefusesWithoutAsking(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, nil)
	for _, token := range []string{"", strings.Repeat("x", MaxCaptchaToken+1)} {
		requireFailed(t, v.captcha().Verify(context.Background(), token, "203.0.113.7"))
	}
	require.Empty(t, v.received())
}

// TestCaptchaWrongSecret: a verifier refusing our secret is our
// misconfiguration, so every shopper gets 503 (and the log says which flag)
// rather than a 403 that blames them, and certainly not a pass.
func TestCaptchaWrongSecret(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, nil)
	for _, secret := range []string{"not the secret", ""} {
		c := v.captcha()
		c.Secret = secret
		err := c.Verify(context.Background(), v.token, "203.0.113.7")
		requireUnavailable(t, err)
		require.Contains(t, err.Error(), "--captcha-secret")
	}
}

func TestCaptchaVerifierFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer http.HandlerFunc
	}{
		{"500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}},
		{"429", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "slow down", http.StatusTooManyRequests)
		}},
		{"garbage", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>oops</html>")) }},
		{"no success field", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"error-codes":[]}`)) }},
		{"success as a string", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"success":"true"}`)) }},
		{"success then garbage", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"success":true} trailing`)) }},
		{"empty", func(w http.ResponseWriter, r *http.Request) {}},
		{"internal-error code", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"success":false,"error-codes":["internal-error"]}`))
		}},
		// A huge answer that would say success if read whole: only 64 KiB is read.
		{"huge body", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"success":true,"pad":"` + strings.Repeat("a", 1<<20) + `"}`))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tt.answer)
			requireUnavailable(t, v.captcha().Verify(context.Background(), v.token, "203.0.113.7"))
			require.Len(t, v.received(), 1)
		})
	}
}

func TestCaptchaVerifierDown(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, nil)
	v.srv.Close() // nothing listens there any more
	requireUnavailable(t, v.captcha().Verify(context.Background(), v.token, "203.0.113.7"))

	c := &Captcha{Secret: "s"} // no --captcha-verify-url
	err := c.Verify(context.Background(), "token", "")
	requireUnavailable(t, err)
	require.Contains(t, err.Error(), "--captcha-verify-url")
}

// TestCaptchaVerifierSlow: a verifier that does not answer within Timeout
// is a 503. The fake blocks until the test ends (or the caller gives up);
// nothing sleeps.
func TestCaptchaVerifierSlow(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	v := newVerifier(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close, which waits for handlers
	c := v.captcha()
	c.Timeout = 100 * time.Millisecond
	start := time.Now()
	requireUnavailable(t, c.Verify(context.Background(), v.token, "203.0.113.7"))
	require.Less(t, time.Since(start), DefaultCaptchaTimeout, "gave up at Timeout, not later")
	require.Len(t, v.received(), 1)

	// A caller that gives up first (the shopper hung up) gets no pass either.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	requireUnavailable(t, v.captcha().Verify(ctx, v.token, "203.0.113.7"))
}
