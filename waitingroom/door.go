package waitingroom

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/challenge"
	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/ticket"
)

var (
	//go:embed ipusers.lua
	ipUsersLua string
	//go:embed pass.lua
	passLua string

	ipUsersScript = sale.NewScript(ipUsersLua)
	passScript    = sale.NewScript(passLua)
)

var errIPLimit = api.Errorf(http.StatusForbidden, "ip_limit",
	"too many shoppers have joined this sale from your network address")

// ipUsersLife is how long an address's users are remembered for a sale
// without an end.
const ipUsersLife = 24 * time.Hour

// userHash is a fixed-length stand-in for a user id inside a Redis set or
// key: a user id may hold any byte.
func userHash(user string) string {
	h := sha256.Sum256([]byte(user))
	return hex.EncodeToString(h[:12])
}

// checkIPUsers lets user join sl from addr unless max_users_per_ip other
// users already did (DESIGN.md: the next is 403 ip_limit). One script, only
// for sales with a bound.
func (s *Server) checkIPUsers(ctx context.Context, sl *sale.Sale, user string, addr netip.Prefix) error {
	if sl.MaxUsersPerIP <= 0 || !addr.IsValid() {
		return nil
	}
	life := ipUsersLife
	if sl.EndsAt != nil {
		life = max(time.Until(*sl.EndsAt)+time.Hour, time.Hour)
	}
	ok, err := ipUsersScript.Run(ctx, s.queue.rdb, []string{s.store.Keys.Sale(sl.ID).IPUsers(addr.String())},
		userHash(user), sl.MaxUsersPerIP, life.Milliseconds()).Int()
	if err != nil {
		return &sale.StoreError{Store: "Redis", Err: err}
	}
	if ok == 0 {
		return errIPLimit
	}
	return nil
}

// JoinProof is a join's optional body: the proof a sale's join challenge
// asks for, or an operator's pass. No body is {}.
type JoinProof struct {
	PoW *struct {
		Challenge string `json:"challenge"`
		Nonce     string `json:"nonce"`
	} `json:"pow"`
	Captcha *string `json:"captcha"`
	Pass    *string `json:"pass"`
}

// admit is the door a join goes through before it changes anything: the
// sale's join challenge (a newcomer must prove it; a user already queued,
// admitted or who bought rejoins with no proof) and max_users_per_ip.
func (s *Server) admit(ctx context.Context, sl *sale.Sale, user string, addr netip.Addr, proof *JoinProof) error {
	if proof.Pass != nil {
		return s.usePass(ctx, sl, user, *proof.Pass)
	}
	if sl.JoinChallenge != sale.ChallengeNone || sl.MaxUsersPerIP > 0 {
		st, err := s.queue.Status(ctx, sl.ID, user)
		if err != nil {
			return err
		}
		switch st.Kind {
		case KindWaiting, KindLane, KindPrequeue, KindAdmitted, KindPurchased:
			return nil // already in: join stays idempotent
		}
	}
	if err := s.checkChallenge(ctx, sl, user, addr, proof); err != nil {
		return err
	}
	return s.checkIPUsers(ctx, sl, user, clientaddr.Key(addr))
}

// needsDoor reports whether admit has anything to check for this join: a
// pass, the sale's join challenge or its max_users_per_ip. Most sales need
// none, and their joins go straight to the queue.
func needsDoor(sl *sale.Sale, proof *JoinProof) bool {
	return proof.Pass != nil || sl.JoinChallenge != sale.ChallengeNone || sl.MaxUsersPerIP > 0
}

// challengeRequired is the 403 a newcomer gets without the proof the sale
// asks for; error.kind says which.
func challengeRequired(kind string) error {
	e := api.Errorf(http.StatusForbidden, "challenge_required",
		"this sale asks newcomers for a %s: get one with POST /api/v1/sales/{sale}/challenge", kindName(kind))
	e.Extra = map[string]any{"kind": kind}
	return e
}

func kindName(kind string) string {
	if kind == sale.ChallengePoW {
		return "proof of work"
	}
	return kind
}

var errNoCaptcha = &api.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: 30,
	Message: "this sale asks for a captcha, but this server has no captcha verifier (--captcha-verify-url)"}

// checkChallenge asks a newcomer for the proof the sale's join challenge
// needs: a solved proof of work, single-use (one SET NX), or a captcha
// token the verifier accepts.
func (s *Server) checkChallenge(ctx context.Context, sl *sale.Sale, user string, addr netip.Addr, proof *JoinProof) error {
	switch sl.JoinChallenge {
	case sale.ChallengePoW:
		if proof.PoW == nil {
			return challengeRequired(sl.JoinChallenge)
		}
		if s.cfg.PoW == nil {
			return api.Unavailable("the proof-of-work verifier")
		}
		now := time.Now()
		id, exp, err := s.cfg.PoW.Check(proof.PoW.Challenge, proof.PoW.Nonce, sl.ID, user, now)
		if err != nil {
			return err
		}
		return challenge.Spend(ctx, s.queue.rdb, challenge.SpendKey(s.store.Keys, sl.ID, id), exp.Sub(now))
	case sale.ChallengeCaptcha:
		if proof.Captcha == nil {
			return challengeRequired(sl.JoinChallenge)
		}
		if s.cfg.Captcha == nil {
			return errNoCaptcha
		}
		remote := ""
		if addr.IsValid() {
			remote = addr.String()
		}
		if err := s.cfg.Captcha.Verify(ctx, *proof.Captcha, remote); err != nil {
			if !errors.Is(err, challenge.ErrFailed) {
				s.cfg.Logger.Warn("captcha verifier failed", "sale", sl.ID, "err", err)
			}
			return err
		}
	}
	return nil
}

// challenge answers what the sale's join challenge asks of the caller (user
// or queue token): {"kind":"none"}, the captcha's site key, or a fresh
// proof-of-work challenge bound to the caller and the sale.
func (s *Server) challenge(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	user, _, err := s.shopper(r, saleID, false)
	if err := s.gate(r, user, saleID, err); err != nil {
		s.fail(w, r, err)
		return
	}
	sl, err := s.store.Cached(r.Context(), saleID, time.Second)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch {
	case sl.JoinChallenge == sale.ChallengePoW && s.cfg.PoW != nil:
		c, exp := s.cfg.PoW.Issue(sl.ID, user, sl.PowDifficulty, time.Now())
		api.WriteJSON(w, http.StatusOK, map[string]any{"kind": "pow", "challenge": c,
			"difficulty": sl.PowDifficulty, "expires_at": api.Time(exp)})
	case sl.JoinChallenge == sale.ChallengeCaptcha && s.cfg.Captcha != nil:
		api.WriteJSON(w, http.StatusOK, map[string]any{"kind": "captcha", "site_key": s.cfg.Captcha.SiteKey})
	case sl.JoinChallenge == sale.ChallengeNone:
		api.WriteJSON(w, http.StatusOK, map[string]any{"kind": "none"})
	default:
		s.fail(w, r, errNoCaptcha)
	}
}

// usePass lets the holder of an operator's pass in with no challenge and no
// bound per address, into the priority lane (admitted at the next tick
// ahead of the queue), once. A pass of another user or sale is 403
// forbidden; an invalid, expired or used one 403 challenge_failed.
func (s *Server) usePass(ctx context.Context, sl *sale.Sale, user, pass string) error {
	now := time.Now()
	c, err := s.issuer.VerifyPass(pass, now)
	switch {
	case errors.Is(err, ticket.ErrExpired):
		return passFailed("the pass has expired")
	case err != nil:
		return passFailed("the pass is not valid")
	case c.Subject != user || c.Audience != sl.ID:
		return api.Errorf(http.StatusForbidden, "forbidden", "this pass is for another user or sale")
	}
	k := s.store.Keys.Sale(sl.ID)
	ttl := time.Unix(c.ExpiresAt, 0).Sub(now)
	res, err := passScript.Run(ctx, s.queue.rdb, []string{k.Cfg, k.Q, k.Lane, k.Tix, k.Buyers, k.Skipped, k.Expired,
		k.Pass(c.ID), k.Passes}, user, max(ttl.Milliseconds(), 1)).Text()
	switch {
	case err != nil:
		return &sale.StoreError{Store: "Redis", Err: err}
	case res == "nostate":
		return ErrNoState
	case res == "used":
		return passFailed("the pass was used already")
	}
	s.cfg.Logger.Info("pass used", "sale", sl.ID, "user", user, "result", res)
	return nil
}

func passFailed(why string) error {
	return api.Errorf(http.StatusForbidden, "challenge_failed", "%s: ask the operator for a new one", why)
}
