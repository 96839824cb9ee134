package waitingroom

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/ticket"
)

// leaves voids the places shoppers gave up. A queue token remembers its
// shopper's place so that, after Redis loses the queue, a poll or a socket
// with the token puts the shopper back there (see Queue.StatusAt); a
// shopper who left must not be put back. A leave is recorded in MySQL,
// which outlives the Redis that lost the queue, and read only when a token
// would put its shopper back (Redis lost the keys since the token's place).
type leaves struct {
	db *sql.DB
}

// record notes that user gave up place in the sale.
func (l leaves) record(ctx context.Context, saleID, user string, place float64) error {
	if l.db == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := l.db.ExecContext(ctx, `INSERT IGNORE INTO queue_leaves (sale_id, user_id, place) VALUES (?, ?, ?)`,
		saleID, user, uint64(place))
	if err != nil {
		return &sale.StoreError{Store: "MySQL", Err: err}
	}
	return nil
}

// gaveUp reports whether user gave up place (a queue token's decimal
// place) in the sale.
func (l leaves) gaveUp(ctx context.Context, saleID, user, place string) (bool, error) {
	if l.db == nil {
		return false, nil
	}
	p, err := strconv.ParseUint(place, 10, 64)
	if err != nil {
		return false, fmt.Errorf("queue token place %q: %w", place, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var n int
	err = l.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM queue_leaves WHERE sale_id = ? AND user_id = ? AND place = ?`,
		saleID, user, p).Scan(&n)
	if err != nil {
		return false, &sale.StoreError{Store: "MySQL", Err: err}
	}
	return n > 0, nil
}

// statusAt is the shopper's state for a status poll or a socket: with a
// queue token that remembers a place, a shopper Redis lost is put back
// there, unless they gave that place up.
func (s *Server) statusAt(ctx context.Context, saleID, user string, at ticket.QueuePlace, lim ratelimit.Pending) (UserState, error) {
	st, err := s.queue.Limited(ctx, saleID, opStatus, user, lim)
	if err != nil || at.Place == "" || (st.Kind != KindNotInQueue && st.Kind != KindRestoring) || st.Gen == at.Gen {
		// nothing to put back: the shopper is somewhere, or Redis did not
		// lose the keys since the token's place (the script would not
		// put them back either)
		return st, err
	}
	gone, err := s.leaves.gaveUp(ctx, saleID, user, at.Place)
	if err != nil || gone {
		return st, err
	}
	return s.queue.StatusAt(ctx, saleID, user, at)
}
