package sale

import (
	"strconv"
	"strings"
)

// The records Redis keeps per sale, in Go. A user id may hold any byte
// ("auth0|abc", "a:b"), so a record that carries one keeps it as its last
// field, after a fixed number of fields that never hold "|": decoding takes
// those from the left and the rest is the user. prelude.lua has the same
// codecs for the scripts (adm_*, pend_*, hold_*); records_test.go checks
// that both agree.

// cut takes n fields from the left of s and the rest as field n + 1.
func cut(s string, n int) ([]string, bool) {
	out := make([]string, 0, n+1)
	for range n {
		i := strings.IndexByte(s, '|')
		if i < 0 {
			return nil, false
		}
		out = append(out, s[:i])
		s = s[i+1:]
	}
	return append(out, s), true
}

// Admission is an admission record (Keys.Tix: user → record): the ticket's
// jti, iat and exp (Unix seconds) and the units it still reserves.
type Admission struct {
	JTI      string
	IssuedAt int64
	Expires  int64
	Reserved int
}

// Encode is the record as Redis keeps it: "jti|iat|exp|reserved".
func (a Admission) Encode() string {
	return a.JTI + "|" + strconv.FormatInt(a.IssuedAt, 10) + "|" + strconv.FormatInt(a.Expires, 10) + "|" + strconv.Itoa(a.Reserved)
}

// ParseAdmission reads an admission record.
func ParseAdmission(rec string) (Admission, bool) {
	f, ok := cut(rec, 3)
	if !ok {
		return Admission{}, false
	}
	iat, err1 := strconv.ParseInt(f[1], 10, 64)
	exp, err2 := strconv.ParseInt(f[2], 10, 64)
	r, err3 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || err3 != nil {
		return Admission{}, false
	}
	return Admission{JTI: f[0], IssuedAt: iat, Expires: exp, Reserved: r}, true
}

// Pending is a pending mark (Keys.Pending: order → mark): the Redis step of
// an order that MySQL does not have yet.
type Pending struct {
	User       string
	Quantity   int
	JTI        string
	FromTicket bool   // the units came from the ticket's reservation
	Kind       string // "held" or "sold"
	AtMs       int64  // Redis time of the Redis step
	// Compensating is set once the order's request gave it up (its shopper
	// got 503): it must be cancelled, never finalized.
	Compensating bool
}

// Encode is the mark as Redis keeps it: "qty|jti|from|kind|ms|flag|user".
func (p Pending) Encode() string {
	from, flag := "0", "-"
	if p.FromTicket {
		from = "1"
	}
	if p.Compensating {
		flag = "c"
	}
	return strconv.Itoa(p.Quantity) + "|" + p.JTI + "|" + from + "|" + p.Kind + "|" +
		strconv.FormatInt(p.AtMs, 10) + "|" + flag + "|" + p.User
}

// ParsePending reads a pending mark.
func ParsePending(rec string) (Pending, bool) {
	f, ok := cut(rec, 6)
	if !ok || (f[2] != "0" && f[2] != "1") || (f[5] != "-" && f[5] != "c") {
		return Pending{}, false
	}
	qty, err1 := strconv.Atoi(f[0])
	at, err2 := strconv.ParseInt(f[4], 10, 64)
	if err1 != nil || err2 != nil {
		return Pending{}, false
	}
	return Pending{Quantity: qty, JTI: f[1], FromTicket: f[2] == "1", Kind: f[3], AtMs: at,
		Compensating: f[5] == "c", User: f[6]}, true
}

// HoldRecord is the record of a held order (Keys.Orders: order → record).
func HoldRecord(user string, qty int) string {
	return strconv.Itoa(qty) + "|held|" + user
}

// ParseHoldRecord reads a held order's record: its user and quantity.
func ParseHoldRecord(rec string) (user string, qty int, ok bool) {
	f, ok := cut(rec, 2)
	if !ok || f[1] != "held" {
		return "", 0, false
	}
	q, err := strconv.Atoi(f[0])
	if err != nil {
		return "", 0, false
	}
	return f[2], q, true
}
