package challenge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/flashsale/flashsale/api"
)

// DefaultCaptchaTimeout is how long Verify waits for the verifier
// (DESIGN.md: "does not answer within 5 s").
const DefaultCaptchaTimeout = 5 * time.Second

// MaxCaptchaToken is the longest widget token sent to the verifier; a
// longer one fails without a call. Turnstile documents at most 2048
// characters; the others are of the same order.
const MaxCaptchaToken = 16 << 10

// maxVerifierAnswer bounds what Verify reads of the verifier's answer (a
// real one is a few hundred bytes); a longer one is a verifier failure.
const maxVerifierAnswer = 64 << 10

// verifierRetryAfter is the Retry-After of a verifier failure: a verifier
// that is down or slow is not helped by every waiting shopper coming back
// within the second.
const verifierRetryAfter = 5

// Captcha checks widget tokens with the siteverify protocol that Cloudflare
// Turnstile, hCaptcha and reCAPTCHA share: a form POST of secret, response
// and remoteip to VerifyURL, answered with JSON {"success": bool, ...}.
type Captcha struct {
	VerifyURL string // --captcha-verify-url
	Secret    string // --captcha-secret
	SiteKey   string // --captcha-site-key: what the page's widget needs; Verify does not use it
	// Client sends the requests; nil is http.DefaultClient. Verify bounds
	// each call with Timeout on its context either way.
	Client *http.Client
	// Timeout is how long one verification may take; 0 is
	// DefaultCaptchaTimeout (5 s).
	Timeout time.Duration
}

// verifierErrors are siteverify error codes that blame our side or the
// verifier's, not the shopper's token: a missing or wrong secret, a
// secret of another site key (hCaptcha), a request the verifier could not
// read, the verifier's own failure (Turnstile). Those are 503s, so a
// misconfigured --captcha-secret never looks like every shopper failing.
var verifierErrors = []string{"missing-input-secret", "invalid-input-secret",
	"sitekey-secret-mismatch", "bad-request", "internal-error"}

// Verify checks the widget's token for a shopper at remoteIP ("" sends no
// remoteip). A token the verifier accepts is nil; one it refuses (or an
// empty or oversized one) matches ErrFailed. A verifier that fails, is
// misconfigured, or does not answer within Timeout is an error wrapping an
// *api.Error 503 unavailable with RetryAfter: never a pass. The error's text
// says why, for the log; the *api.Error (errors.As, api.AsError) is what
// the shopper gets.
func (c *Captcha) Verify(ctx context.Context, token, remoteIP string) error {
	if token == "" || len(token) > MaxCaptchaToken {
		return errCaptcha
	}
	if c.VerifyURL == "" {
		return unavailable("--captcha-verify-url is not set")
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCaptchaTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	form := url.Values{"secret": {c.Secret}, "response": {token}}
	if remoteIP != "" {
		form.Set("remoteip", remoteIP)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.VerifyURL, strings.NewReader(form.Encode()))
	if err != nil {
		return unavailable("--captcha-verify-url %q is not a URL: %v", c.VerifyURL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return unavailable("the verifier did not answer (the limit is %s): %v", timeout, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return unavailable("the verifier answered HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxVerifierAnswer+1))
	if err != nil {
		return unavailable("reading the verifier's answer: %v", err)
	}
	if len(body) > maxVerifierAnswer {
		return unavailable("the verifier's answer is over %d bytes", maxVerifierAnswer)
	}
	var answer struct {
		Success    *bool    `json:"success"`
		ErrorCodes []string `json:"error-codes"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.Success == nil {
		return unavailable("the verifier's answer is not siteverify JSON with a \"success\" field: %.200q", body)
	}
	if *answer.Success {
		return nil
	}
	for _, code := range answer.ErrorCodes {
		if slices.Contains(verifierErrors, code) {
			return unavailable("the verifier refused our request with %q: check --captcha-secret and --captcha-verify-url", code)
		}
	}
	return errCaptcha
}

// unavailable is a verifier failure: the reason for the log, wrapping the
// 503 the shopper gets.
func unavailable(format string, args ...any) error {
	e := api.Unavailable("the captcha verifier")
	e.RetryAfter = verifierRetryAfter
	return fmt.Errorf("captcha: "+format+": %w", append(args, e)...)
}
