package waitingroom

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"net/netip"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/sale"
)

//go:embed ipusers.lua
var ipUsersLua string

var ipUsersScript = sale.NewScript(ipUsersLua)

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

// checkChallenge asks a newcomer for the proof the sale's join challenge
// needs (the lead wires proof of work and captcha in here).
func (s *Server) checkChallenge(ctx context.Context, sl *sale.Sale, user string, addr netip.Addr, proof *JoinProof) error {
	return nil
}
