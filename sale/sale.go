// Package sale is a flash sale: its settings and lifecycle, its JSON shape,
// its Redis key layout, and its store (MySQL the durable record, Redis the
// live copy that the Lua scripts read).
package sale

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/flashsale/flashsale/api"
)

// State is a sale's lifecycle state.
type State string

// The lifecycle: upcoming → open ⇄ paused → closed | sold_out (final).
const (
	Upcoming State = "upcoming"
	Open     State = "open"
	Paused   State = "paused"
	Closed   State = "closed"
	SoldOut  State = "sold_out"
)

// Final reports whether no transition leaves s.
func (s State) Final() bool { return s == Closed || s == SoldOut }

// Queue modes.
const (
	FIFO     = "fifo"
	Prequeue = "prequeue"
)

// Sale is one sale's settings and live counts.
type Sale struct {
	ID             string
	Name           string
	PriceCents     int64
	Currency       string
	StockTotal     int
	StockRemaining int
	StartsAt       time.Time
	EndsAt         *time.Time
	QueueOpensAt   *time.Time
	State          State // the stored state; Effective gives the state at a time
	AllReserved    bool
	AdmissionRate  float64
	MaxActive      int
	TicketTTL      int // seconds
	HoldTTL        int // seconds; 0: orders are paid at once
	PerUserLimit   int
	QueueMode      string
	AbandonAfter   int // seconds
	ReturnWindow   int // seconds
	// JoinChallenge is what a newcomer's join must prove: ChallengeNone,
	// ChallengePoW (PowDifficulty leading zero bits) or ChallengeCaptcha.
	JoinChallenge string
	PowDifficulty int
	// MaxUsersPerIP bounds the distinct users joining from one client
	// address (0: no bound).
	MaxUsersPerIP int
	// Message is the operator's message to the sale's shoppers, or nil.
	Message *Message
	// ReturnURL is where an admitted shopper continues to the shop, or "".
	ReturnURL string
	Version   int64
}

// Message is an operator's message to a sale's shoppers.
type Message struct {
	Text string
	At   time.Time
}

// The join challenges a sale may ask for.
const (
	ChallengeNone    = "none"
	ChallengePoW     = "pow"
	ChallengeCaptcha = "captcha"
)

// DefaultPowDifficulty is pow_difficulty's default: leading zero bits of
// SHA-256 a newcomer's browser must find (see docs/BENCHMARKS.md for how
// long a page takes).
const DefaultPowDifficulty = 18

// Effective is the state at now: a stored upcoming sale is open once it
// starts, and any sale not final is closed once it ends. The Lua prelude
// (state.lua) computes the same thing on Redis time.
func (s *Sale) Effective(now time.Time) State {
	if s.State.Final() {
		return s.State
	}
	if s.EndsAt != nil && !now.Before(*s.EndsAt) {
		return Closed
	}
	if s.State == Upcoming && !now.Before(s.StartsAt) {
		return Open
	}
	return s.State
}

// QueueOpens is when joins are first accepted.
func (s *Sale) QueueOpens() time.Time {
	if s.QueueOpensAt != nil {
		return *s.QueueOpensAt
	}
	return time.Time{}
}

// JSON is the contract's shape of a sale, with the state at now.
func (s *Sale) JSON(now time.Time) map[string]any {
	return map[string]any{
		"id": s.ID, "name": s.Name, "price_cents": s.PriceCents, "currency": s.Currency,
		"stock_total": s.StockTotal, "stock_remaining": s.StockRemaining,
		"starts_at": api.Time(s.StartsAt), "ends_at": api.TimePtr(s.EndsAt),
		"queue_opens_at": api.TimePtr(s.QueueOpensAt),
		"state":          s.Effective(now), "all_reserved": s.AllReserved,
		"admission_rate": s.AdmissionRate, "max_active": s.MaxActive,
		"ticket_ttl_seconds": s.TicketTTL, "hold_ttl_seconds": s.HoldTTL,
		"per_user_limit": s.PerUserLimit, "queue_mode": s.QueueMode,
		"abandon_after_seconds": s.AbandonAfter, "return_window_seconds": s.ReturnWindow,
		"join_challenge": s.JoinChallenge, "pow_difficulty": s.PowDifficulty,
		"max_users_per_ip": s.MaxUsersPerIP, "message": s.Message.JSON(), "return_url": optString(s.ReturnURL),
	}
}

// JSON is the contract's shape of a message: {"text","at"}, or null.
func (m *Message) JSON() any {
	if m == nil {
		return nil
	}
	return map[string]any{"text": m.Text, "at": api.Time(m.At)}
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// CreateRequest is the body of POST /api/v1/admin/sales. Pointers tell a
// missing field from a zero.
type CreateRequest struct {
	ID            *string  `json:"id"`
	Name          *string  `json:"name"`
	PriceCents    *int64   `json:"price_cents"`
	Currency      *string  `json:"currency"`
	Stock         *int     `json:"stock"`
	StartsAt      *string  `json:"starts_at"`
	EndsAt        *string  `json:"ends_at"`
	QueueOpensAt  *string  `json:"queue_opens_at"`
	AdmissionRate *float64 `json:"admission_rate"`
	MaxActive     *int     `json:"max_active"`
	TicketTTL     *int     `json:"ticket_ttl_seconds"`
	HoldTTL       *int     `json:"hold_ttl_seconds"`
	PerUserLimit  *int     `json:"per_user_limit"`
	QueueMode     *string  `json:"queue_mode"`
	AbandonAfter  *int     `json:"abandon_after_seconds"`
	ReturnWindow  *int     `json:"return_window_seconds"`
	JoinChallenge *string  `json:"join_challenge"`
	PowDifficulty *int     `json:"pow_difficulty"`
	MaxUsersPerIP *int     `json:"max_users_per_ip"`
	ReturnURL     *string  `json:"return_url"`
}

var (
	idPattern       = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
)

// Limits that keep numbers sane (and inside the MySQL column types).
const (
	maxStock   = 100_000_000
	maxSeconds = 30 * 24 * 3600
	maxRate    = 1_000_000
)

// MinRate is the least admission_rate: one admission every 1000 s. Below
// it the admitter's interval stops being a number a script can keep.
const MinRate = 0.001

// Build validates the request and returns the sale it describes, with the
// contract's defaults. The error is a 422 naming the field.
func (r *CreateRequest) Build(now time.Time) (*Sale, error) {
	s := &Sale{
		Name: deref(r.Name, ""), Currency: deref(r.Currency, ""),
		StartsAt: now.UTC().Truncate(time.Second), AdmissionRate: deref(r.AdmissionRate, 10),
		MaxActive: deref(r.MaxActive, 100), TicketTTL: deref(r.TicketTTL, 300),
		HoldTTL: deref(r.HoldTTL, 0), PerUserLimit: deref(r.PerUserLimit, 1),
		QueueMode: deref(r.QueueMode, FIFO), AbandonAfter: deref(r.AbandonAfter, 60),
		ReturnWindow:  deref(r.ReturnWindow, 900),
		JoinChallenge: deref(r.JoinChallenge, ChallengeNone), PowDifficulty: deref(r.PowDifficulty, DefaultPowDifficulty),
		MaxUsersPerIP: deref(r.MaxUsersPerIP, 0), ReturnURL: deref(r.ReturnURL, ""),
	}
	if r.ID != nil {
		s.ID = *r.ID
		if !idPattern.MatchString(s.ID) {
			return nil, api.Invalid("id: must match [a-z0-9-]{1,64}")
		}
	} else {
		s.ID = NewID()
	}
	switch {
	case r.Name == nil || s.Name == "" || len(s.Name) > 200:
		return nil, api.Invalid("name: required, 1 to 200 bytes")
	case r.PriceCents == nil:
		return nil, api.Invalid("price_cents: required")
	case *r.PriceCents < 0 || *r.PriceCents > math.MaxInt64/maxStock:
		return nil, api.Invalid("price_cents: must be ≥ 0 and sane")
	case !currencyPattern.MatchString(s.Currency):
		return nil, api.Invalid("currency: required, an ISO 4217 code of three capital letters")
	case r.Stock == nil:
		return nil, api.Invalid("stock: required")
	case *r.Stock < 1 || *r.Stock > maxStock:
		return nil, api.Invalid("stock: must be between 1 and %d", maxStock)
	case !(s.AdmissionRate >= MinRate) || s.AdmissionRate > maxRate:
		return nil, api.Invalid("admission_rate: must be between %g and %d admissions per second", MinRate, maxRate)
	case s.MaxActive < 1 || s.MaxActive > maxStock:
		return nil, api.Invalid("max_active: must be ≥ 1")
	case s.PerUserLimit < 1 || s.PerUserLimit > 1000:
		return nil, api.Invalid("per_user_limit: must be between 1 and 1000")
	case s.TicketTTL < 10 || s.TicketTTL > maxSeconds:
		return nil, api.Invalid("ticket_ttl_seconds: must be ≥ 10")
	case s.AbandonAfter < 5 || s.AbandonAfter > maxSeconds:
		return nil, api.Invalid("abandon_after_seconds: must be ≥ 5")
	case s.HoldTTL < 0 || s.HoldTTL > maxSeconds:
		return nil, api.Invalid("hold_ttl_seconds: must be ≥ 0")
	case s.ReturnWindow < 0 || s.ReturnWindow > maxSeconds:
		return nil, api.Invalid("return_window_seconds: must be ≥ 0")
	case s.QueueMode != FIFO && s.QueueMode != Prequeue:
		return nil, api.Invalid("queue_mode: must be fifo or prequeue")
	}
	if err := checkDefences(&s.JoinChallenge, &s.PowDifficulty, &s.MaxUsersPerIP); err != nil {
		return nil, err
	}
	if r.ReturnURL != nil && *r.ReturnURL == "" {
		return nil, api.Invalid("return_url: must be a URL or null, not empty")
	}
	if err := checkReturnURL(s.ReturnURL); err != nil {
		return nil, err
	}
	s.PriceCents, s.StockTotal, s.StockRemaining = *r.PriceCents, *r.Stock, *r.Stock
	var err error
	if r.StartsAt != nil {
		if s.StartsAt, err = parseTime("starts_at", *r.StartsAt); err != nil {
			return nil, err
		}
	}
	if s.EndsAt, err = parseOptTime("ends_at", r.EndsAt); err != nil {
		return nil, err
	}
	if s.QueueOpensAt, err = parseOptTime("queue_opens_at", r.QueueOpensAt); err != nil {
		return nil, err
	}
	if s.EndsAt != nil && !s.EndsAt.After(s.StartsAt) {
		return nil, api.Invalid("ends_at: must be after starts_at")
	}
	if s.QueueOpensAt != nil && s.QueueOpensAt.After(s.StartsAt) {
		return nil, api.Invalid("queue_opens_at: must not be after starts_at")
	}
	s.State = Upcoming
	if !now.Before(s.StartsAt) {
		s.State = Open
	}
	return s, nil
}

// PatchRequest is the body of PATCH /api/v1/admin/sales/{sale}.
type PatchRequest struct {
	AdmissionRate *float64 `json:"admission_rate"`
	MaxActive     *int     `json:"max_active"`
	State         *string  `json:"state"`
	JoinChallenge *string  `json:"join_challenge"`
	PowDifficulty *int     `json:"pow_difficulty"`
	MaxUsersPerIP *int     `json:"max_users_per_ip"`
	// ReturnURL is raw so that null (clear it) differs from absent.
	ReturnURL json.RawMessage `json:"return_url"`
}

// returnURL reads the patch's return_url: set, and the new value ("" for
// null).
func (p *PatchRequest) returnURL() (bool, string, error) {
	if p.ReturnURL == nil {
		return false, "", nil
	}
	if string(p.ReturnURL) == "null" {
		return true, "", nil
	}
	var u string
	if err := json.Unmarshal(p.ReturnURL, &u); err != nil {
		return false, "", api.Invalid("return_url: must be a URL string or null")
	}
	if u == "" {
		return false, "", api.Invalid("return_url: must be a URL or null, not empty")
	}
	return true, u, checkReturnURL(u)
}

// Validate checks the patch's values (not the transition).
func (p *PatchRequest) Validate() error {
	if _, _, err := p.returnURL(); err != nil {
		return err
	}
	if p.JoinChallenge != nil || p.PowDifficulty != nil || p.MaxUsersPerIP != nil {
		ch, pow, ips := deref(p.JoinChallenge, ChallengeNone), deref(p.PowDifficulty, DefaultPowDifficulty), deref(p.MaxUsersPerIP, 0)
		if err := checkDefences(&ch, &pow, &ips); err != nil {
			return err
		}
	}
	switch {
	case p.AdmissionRate == nil && p.MaxActive == nil && p.State == nil && p.JoinChallenge == nil &&
		p.PowDifficulty == nil && p.MaxUsersPerIP == nil && p.ReturnURL == nil:
		return api.Invalid("give at least one of admission_rate, max_active, state, join_challenge, pow_difficulty, " +
			"max_users_per_ip and return_url")
	case p.AdmissionRate != nil && (!(*p.AdmissionRate >= MinRate) || *p.AdmissionRate > maxRate):
		return api.Invalid("admission_rate: must be between %g and %d admissions per second", MinRate, maxRate)
	case p.MaxActive != nil && (*p.MaxActive < 1 || *p.MaxActive > maxStock):
		return api.Invalid("max_active: must be ≥ 1")
	case p.State != nil && *p.State != string(Open) && *p.State != string(Paused) && *p.State != string(Closed):
		return api.Invalid("state: must be paused, open or closed")
	}
	return nil
}

// checkDefences validates the join challenge, its difficulty and the
// users per address.
func checkDefences(challenge *string, pow, perIP *int) error {
	switch {
	case *challenge != ChallengeNone && *challenge != ChallengePoW && *challenge != ChallengeCaptcha:
		return api.Invalid("join_challenge: must be none, pow or captcha")
	case *pow < 1 || *pow > 30:
		return api.Invalid("pow_difficulty: must be between 1 and 30 (leading zero bits)")
	case *perIP < 0 || *perIP > maxStock:
		return api.Invalid("max_users_per_ip: must be ≥ 0 (0: no bound)")
	}
	return nil
}

// checkReturnURL accepts "" (none), an absolute https URL, or http on a
// loopback host (a shop on the operator's own machine).
func checkReturnURL(raw string) error {
	if raw == "" {
		return nil
	}
	if len(raw) > 2048 {
		return api.Invalid("return_url: at most 2048 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return api.Invalid("return_url: must be an absolute URL such as https://shop.example/checkout")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
			return nil
		}
	}
	return api.Invalid("return_url: must be https (http only on a loopback host)")
}

// Transition checks a requested state against the effective one: nil when
// allowed or a no-op, else a 409 invalid_state.
func Transition(from, to State) error {
	if from == to {
		return nil
	}
	ok := false
	switch from {
	case Upcoming:
		ok = to == Open || to == Closed
	case Open:
		ok = to == Paused || to == Closed
	case Paused:
		ok = to == Open || to == Closed
	}
	if !ok {
		return api.Errorf(409, "invalid_state", "a %s sale cannot become %s", from, to)
	}
	return nil
}

// NewID makes a sale id slug.
func NewID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "sale-" + hex.EncodeToString(b)
}

func parseTime(field, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, api.Invalid("%s: must be an RFC 3339 time like 2026-12-01T18:00:00Z", field)
	}
	return t.UTC().Truncate(time.Millisecond), nil
}

func parseOptTime(field string, v *string) (*time.Time, error) {
	if v == nil {
		return nil, nil
	}
	t, err := parseTime(field, *v)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
