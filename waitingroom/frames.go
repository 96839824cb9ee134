package waitingroom

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/ticket"
)

// pollAfter is how often a polling client should ask again.
const pollAfter = 2

// Position is the waiting answer of join and status, and the position frame.
type Position struct {
	Type        string  `json:"type,omitempty"`
	State       string  `json:"state,omitempty"`
	Position    int64   `json:"position"`
	QueueLength int64   `json:"queue_length"`
	ETASeconds  *int64  `json:"eta_seconds"`
	Paused      bool    `json:"paused"`
	AllReserved bool    `json:"all_reserved"`
	PollAfter   int     `json:"poll_after_seconds"`
	StartsAt    *string `json:"starts_at,omitempty"`
	QueueToken  string  `json:"queue_token,omitempty"`
}

// positionFrameSize is room for a position frame with every field (about
// 150 bytes with a start time): one allocation per frame.
const positionFrameSize = 192

// appendPosition appends p encoded as json.Marshal encodes it (a test holds
// the two to the same bytes). The tick encodes a frame per waiting socket
// whose position changed, every second: done by hand it costs a tenth of
// the reflection-driven encoder and one allocation.
func appendPosition(b []byte, p *Position) []byte {
	b = append(b, '{')
	if p.Type != "" {
		b = append(b, `"type":`...)
		b = appendJSONString(b, p.Type)
		b = append(b, ',')
	}
	if p.State != "" {
		b = append(b, `"state":`...)
		b = appendJSONString(b, p.State)
		b = append(b, ',')
	}
	b = append(b, `"position":`...)
	b = strconv.AppendInt(b, p.Position, 10)
	b = append(b, `,"queue_length":`...)
	b = strconv.AppendInt(b, p.QueueLength, 10)
	b = append(b, `,"eta_seconds":`...)
	if p.ETASeconds != nil {
		b = strconv.AppendInt(b, *p.ETASeconds, 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"paused":`...)
	b = strconv.AppendBool(b, p.Paused)
	b = append(b, `,"all_reserved":`...)
	b = strconv.AppendBool(b, p.AllReserved)
	b = append(b, `,"poll_after_seconds":`...)
	b = strconv.AppendInt(b, int64(p.PollAfter), 10)
	if p.StartsAt != nil {
		b = append(b, `,"starts_at":`...)
		b = appendJSONString(b, *p.StartsAt)
	}
	if p.QueueToken != "" {
		b = append(b, `,"queue_token":`...)
		b = appendJSONString(b, p.QueueToken)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string as encoding/json writes it:
// plain printable ASCII as it is, anything else by encoding/json itself
// (escapes, HTML-safe <, > and &, invalid UTF-8).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return append(b, mustJSON(s)...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Admitted is the admitted answer and frame.
type Admitted struct {
	Type            string `json:"type,omitempty"`
	State           string `json:"state,omitempty"`
	Ticket          string `json:"ticket"`
	TicketExpiresAt string `json:"ticket_expires_at"`
	QueueToken      string `json:"queue_token,omitempty"`
}

// MessageFrame is the operator's message to a sale's shoppers ("" when it
// was cleared).
type MessageFrame struct {
	Type string `json:"type"`
	Text string `json:"text"`
	At   string `json:"at"`
}

// KindMessage is the type of a MessageFrame.
const KindMessage = "message"

func messageFrame(text string, at time.Time) []byte {
	return mustJSON(MessageFrame{Type: KindMessage, Text: text, At: api.Time(at)})
}

// Simple is a state with no more fields (prequeue has starts_at).
type Simple struct {
	Type       string  `json:"type,omitempty"`
	State      string  `json:"state,omitempty"`
	OrderID    string  `json:"order_id,omitempty"`
	StartsAt   *string `json:"starts_at,omitempty"`
	QueueToken string  `json:"queue_token,omitempty"`
}

// view turns a user's state into the contract's answer: for HTTP (frame
// false: a "state" field) or as a WebSocket frame (a "type" field). It
// returns nil for states that are errors over HTTP (ended, not in queue).
func (h *Hub) view(s *sale.Sale, user string, st UserState, eta *int64, frame bool, now time.Time) any {
	kind := st.Kind
	switch kind {
	case KindWaiting, KindLane:
		p := &Position{Position: st.Position, QueueLength: st.QueueLen, ETASeconds: eta,
			PollAfter: pollAfter}
		eff := s.Effective(now)
		p.Paused = eff == sale.Paused
		if p.Paused {
			p.ETASeconds = nil
		}
		p.AllReserved = s.AllReserved
		if eff == sale.Upcoming {
			p.StartsAt = api.TimePtr(&s.StartsAt)
		}
		if frame {
			p.Type = "position"
		} else {
			p.State = KindWaiting
		}
		return p
	case KindAdmitted:
		a := &Admitted{
			Ticket: h.issuer.Ticket(ticket.Admission{Sale: s.ID, User: user, JTI: st.JTI,
				IssuedAt: st.IssuedAt, ExpiresAt: st.Expires}),
			TicketExpiresAt: api.Time(time.Unix(st.Expires, 0)),
		}
		if frame {
			a.Type = KindAdmitted
		} else {
			a.State = KindAdmitted
		}
		return a
	case KindPrequeue:
		return simple(frame, KindPrequeue, "", api.TimePtr(&s.StartsAt))
	case KindPurchased:
		if frame {
			return nil // the order frame tells it
		}
		return simple(false, KindPurchased, st.OrderID, nil)
	case KindExpired:
		return simple(frame, KindExpired, "", nil)
	}
	return nil
}

func simple(frame bool, kind, order string, startsAt *string) *Simple {
	if frame {
		return &Simple{Type: kind, StartsAt: startsAt}
	}
	return &Simple{State: kind, OrderID: order, StartsAt: startsAt}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed struct types reach here
	}
	return b
}

// typeFrame is a frame with only a type.
func typeFrame(t string) []byte { return mustJSON(Simple{Type: t}) }
