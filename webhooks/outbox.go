package webhooks

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/flashsale/flashsale/api"
)

// The events of DESIGN.md, "Shop integration".
const (
	OrderCreated   = "order.created"
	OrderPaid      = "order.paid"
	OrderCancelled = "order.cancelled"
	OrderExpired   = "order.expired"
	SaleSoldOut    = "sale.sold_out"
	SaleClosed     = "sale.closed"
)

// Event is one change to report: its type, the order's or sale's id it is
// about (its events are delivered in the order they were added), and the
// order or sale as the API shows it.
type Event struct {
	Type    string
	Subject string
	Data    any
}

// Outbox writes events into the transaction of the change they report, so
// an event exists exactly when its change committed. A nil *Outbox writes
// nothing: webhooks are off.
type Outbox struct{}

// NewOutbox returns the outbox of a node whose webhooks are on.
func NewOutbox() *Outbox { return &Outbox{} }

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newEventID is "evt_" and 26 random base32 characters.
func newEventID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "evt_" + idEncoding.EncodeToString(b)
}

// body is what a receiver gets.
type body struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	CreatedAt string `json:"created_at"`
	Data      any    `json:"data"`
}

// Add writes the events in tx, in the order given (one INSERT).
func (o *Outbox) Add(ctx context.Context, tx *sql.Tx, events ...Event) error {
	if o == nil || len(events) == 0 {
		return nil
	}
	now := time.Now().UTC()
	var sb strings.Builder
	sb.WriteString(`INSERT INTO webhook_events (id, type, subject, payload, created_at, next_at) VALUES `)
	args := make([]any, 0, 6*len(events))
	for i, ev := range events {
		id := newEventID()
		payload, err := json.Marshal(body{ID: id, Type: ev.Type, CreatedAt: api.Time(now), Data: ev.Data})
		if err != nil {
			return fmt.Errorf("webhooks: encode %s of %s: %w", ev.Type, ev.Subject, err)
		}
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("(?,?,?,?,?,?)")
		args = append(args, id, ev.Type, ev.Subject, payload, now, now)
	}
	if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
		return fmt.Errorf("webhooks: write events: %w", err)
	}
	return nil
}
