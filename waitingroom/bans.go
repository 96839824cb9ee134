package waitingroom

import (
	"context"
	_ "embed"
	"net/http"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/bans"
	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/sale"
)

//go:embed ban.lua
var banLua string

var banScript = sale.NewScript(banLua)

var errBanned = api.Errorf(http.StatusForbidden, "banned", "you are banned from this sale")

// banned answers 403 banned when a live ban matches the user (may be "")
// or the client address in the sale.
func (s *Server) banned(r *http.Request, user, saleID string) error {
	if s.cfg.Bans == nil {
		return nil
	}
	if _, ok := s.cfg.Bans().Match(user, s.cfg.Proxies.Addr(r), saleID, time.Now()); ok {
		return errBanned
	}
	return nil
}

// limit spends one request of the client's address and of the user ("" when
// the caller is not known yet) from the cluster-wide rate limits: 429
// rate_limited with Retry-After when over either.
func (s *Server) limit(r *http.Request, user string) error {
	if s.cfg.Limits == nil {
		return nil
	}
	return s.cfg.Limits.Allow(r.Context(), clientaddr.Key(s.cfg.Proxies.Addr(r)), user)
}

// gate is what every shopper call passes once its caller is known (user
// "" when authentication failed: the address's limit still counts it): a
// live ban (403 banned), then the rate limits (429). authErr is the
// authentication's outcome, answered when the gate lets it through.
func (s *Server) gate(r *http.Request, user, saleID string, authErr error) error {
	if authErr != nil {
		if err := s.limit(r, ""); err != nil {
			return err
		}
		return authErr
	}
	if err := s.banned(r, user, saleID); err != nil {
		s.endBannedPlace(r, user, saleID)
		return err
	}
	return s.limit(r, user)
}

// gateQueue is gate for a call answered by the queue's script (a join, a
// status). When the rate limits can ride in that script call (one Redis
// server), only the local half is done here and the Redis checks are
// returned, to be carried by Queue.Limited; else they are made here, as gate
// does, and the Pending is empty.
func (s *Server) gateQueue(r *http.Request, user, saleID string, authErr error) (ratelimit.Pending, error) {
	lim := s.cfg.Limits
	if authErr != nil || lim == nil || !lim.Foldable() {
		return ratelimit.Pending{}, s.gate(r, user, saleID, authErr)
	}
	if err := s.banned(r, user, saleID); err != nil {
		s.endBannedPlace(r, user, saleID)
		return ratelimit.Pending{}, err
	}
	return lim.Reserve(clientaddr.Key(s.cfg.Proxies.Addr(r)), user)
}

// settle makes the rate checks *lim that a call meant to carry in the
// queue's script on their own, when the call stops before it (an error
// answer, or a door that calls Redis first): over the limit, the 429 wins
// over err, as it does for every other call. *lim is empty after.
func (s *Server) settle(r *http.Request, lim *ratelimit.Pending, err error) error {
	if lim.Empty() {
		return err
	}
	p := *lim
	*lim = ratelimit.Pending{}
	if lerr := s.cfg.Limits.Spend(r.Context(), p); lerr != nil {
		return lerr
	}
	return err
}

// endBannedPlace takes a caller refused by a ban out of the sale: a user
// ban did so when it was made (OnBans), but an address or CIDR ban does not
// know who joined from the address, so its users go when they next call
// (a poll, a join, a socket). The rate limits go first, so a banned flood
// costs Redis no more than an allowed one would.
func (s *Server) endBannedPlace(r *http.Request, user, saleID string) {
	if user == "" || saleID == "" || s.limit(r, user) != nil {
		return
	}
	if err := s.removeUser(r.Context(), saleID, user); err != nil {
		s.cfg.Logger.Warn("ban: take the user out of the sale", "sale", saleID, "err", err)
	}
}

// OnBans makes new bans act at once on this node (the bans.Watcher's
// OnChange): the sockets of banned users and addresses close with 4403
// "banned", and a banned user leaves the queue of the ban's sale (or of
// every sale of the working set) with any live admission ended, its units
// returned. Every node runs it for every new ban, so the Redis step (an
// idempotent script) does not depend on one node living.
func (s *Server) OnBans(added []bans.Ban) {
	now := time.Now()
	type place struct{ sale, user string }
	var byAddr []place // users of sockets an address ban closed
	for _, c := range s.hub.allConns() {
		for i := range added {
			if added[i].Matches(c.user, c.addr, c.sale, now) {
				c.Close(CloseBanned, "banned")
				if added[i].UserID == "" {
					byAddr = append(byAddr, place{c.sale, c.user})
				}
				break
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// An address ban knows its users only by their calls: those with a
	// socket here go now, the others at their next call (endBannedPlace).
	for _, p := range byAddr {
		if err := s.removeUser(ctx, p.sale, p.user); err != nil {
			s.cfg.Logger.Warn("ban: take the user out of the sale", "sale", p.sale, "err", err)
		}
	}
	for _, b := range added {
		if b.UserID == "" {
			continue
		}
		sales := []string{b.SaleID}
		if b.SaleID == "" {
			ids, err := s.queue.rdb.SMembers(ctx, s.store.Keys.Sales()).Result()
			if err != nil {
				s.cfg.Logger.Warn("ban: list the sales", "ban", b.ID, "err", err)
				continue
			}
			sales = ids
		}
		for _, id := range sales {
			if err := s.removeUser(ctx, id, b.UserID); err != nil {
				s.cfg.Logger.Warn("ban: take the user out of the sale", "ban", b.ID, "sale", id, "err", err)
			}
		}
	}
}

// removeUser runs ban.lua for one user in one sale.
func (s *Server) removeUser(ctx context.Context, saleID, user string) error {
	k := s.store.Keys.Sale(saleID)
	v, err := banScript.Run(ctx, s.queue.rdb, []string{k.Q, k.Lane, k.Seen, k.Skipped, k.Expired, k.Adm, k.Tix, k.Units}, user).Int64Slice()
	if err != nil {
		return err
	}
	if len(v) == 2 && (v[0] == 1 || v[1] == 1) {
		s.cfg.Logger.Info("banned user taken out of the sale", "sale", saleID, "user", user,
			"had_place", v[0] == 1, "had_admission", v[1] == 1)
	}
	return nil
}
