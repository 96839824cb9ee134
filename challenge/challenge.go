// Package challenge is the join challenge of DESIGN.md ("Abuse defence",
// "Join challenge"): a proof of work the server verifies with one SHA-256
// and no state beyond single use (PoW, Spend), and the siteverify protocol
// that Cloudflare Turnstile, hCaptcha and reCAPTCHA share (Captcha).
//
// Every refusal that is the client's doing is ErrFailed (errors.Is), which
// the API maps to 403 challenge_failed; a captcha verifier that fails is a
// 503 unavailable, never a pass.
package challenge

import (
	"net/http"

	"github.com/flashsale/flashsale/api"
)

// ErrFailed is a proof that does not pass: wrong, expired, reused, or for
// another user or sale. The errors this package returns for those reasons
// match it with errors.Is and carry their own message for the person; all
// of them answer 403 challenge_failed through api.AsError.
var ErrFailed error = failure("the join challenge was not passed: ask POST /api/v1/sales/{sale}/challenge for a new one and solve it")

// failure is a refusal with a message that says what went wrong. It is a
// string so that the refusals below are constants of sorts: returning one
// allocates nothing, which matters on a path a flood of forged proofs takes.
type failure string

func (f failure) Error() string { return string(f) }

// Is makes every failure match ErrFailed.
func (f failure) Is(target error) bool { return target == ErrFailed }

// APIError maps a failure to the contract's 403 challenge_failed.
func (f failure) APIError() *api.Error {
	return api.Errorf(http.StatusForbidden, "challenge_failed", "%s", string(f))
}

// The reasons a proof fails, each for the person who sent it. They are
// errors already, so returning one does not box a string.
var (
	errMalformed error = failure("the proof of work's challenge is not one this server issued: ask for a new challenge")
	errNonce     error = failure("the proof of work's nonce must be 1 to 20 decimal digits")
	errExpired   error = failure("the proof of work's challenge expired: ask for a new challenge")
	errWrong     error = failure("the proof of work is wrong: SHA-256 of challenge + \":\" + nonce does not start with the challenge's number of zero bits")
	errForeign   error = failure("the proof of work's challenge was issued to another user or for another sale: ask for a new challenge")
	errUsed      error = failure("the proof of work's challenge was already used for a join: ask for a new challenge")
	errCaptcha   error = failure("the captcha was not solved, or its token expired or was already used: solve the captcha again")
)
