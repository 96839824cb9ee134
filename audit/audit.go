// Package audit records what operators do: every change made through the
// operator API (sale creation, PATCH, messages, passes, bans) with who
// (admin), what, when and from which address, in MySQL, and reads it back
// newest first for GET /api/v1/admin/audit.
//
// It is one HTTP middleware around the node's routes rather than a call in
// each handler: a change answered 2xx under /api/v1/admin/ is recorded with
// the route's action name, the sale and target of its path (or the id its
// answer names, for a new ban), and its request body, so a route added
// later is recorded without anyone remembering to.
package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/clientaddr"
)

// Entry is one recorded operator action.
type Entry struct {
	ID      int64           `json:"id"`
	At      string          `json:"at"`
	Actor   string          `json:"actor"`
	Address string          `json:"address"`
	Action  string          `json:"action"`
	SaleID  *string         `json:"sale_id"`
	Target  *string         `json:"target"`
	Request json.RawMessage `json:"request"`
}

// actions names the operator routes' changes.
var actions = map[string]string{
	"POST /api/v1/admin/sales":                "sale.create",
	"PATCH /api/v1/admin/sales/{sale}":        "sale.update",
	"POST /api/v1/admin/sales/{sale}/message": "sale.message",
	"POST /api/v1/admin/sales/{sale}/passes":  "pass.create",
	"POST /api/v1/admin/bans":                 "ban.create",
	"DELETE /api/v1/admin/bans/{id}":          "ban.lift",
}

// maxRequest bounds the request kept with an entry.
const maxRequest = 4096

// Log records and lists operator actions.
type Log struct {
	db      *sql.DB
	proxies *clientaddr.Resolver
	log     *slog.Logger
}

// New returns a Log on db; proxies name the client address (nil: the peer).
func New(db *sql.DB, proxies *clientaddr.Resolver, log *slog.Logger) *Log {
	if log == nil {
		log = slog.Default()
	}
	return &Log{db: db, proxies: proxies, log: log}
}

// Middleware records the operator changes next answers with 2xx.
func (l *Log) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || !strings.HasPrefix(r.URL.Path, "/api/v1/admin/") {
			next.ServeHTTP(w, r)
			return
		}
		// the body as the handler reads it (a copy of its first bytes): the
		// handler's own reading, limits and errors stay as they are
		var seen capped
		if r.Body != nil {
			r.Body = readCloser{io.TeeReader(r.Body, &seen), r.Body}
		}
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		if rec.code < 200 || rec.code > 299 {
			return
		}
		action, ok := actions[r.Pattern]
		if !ok {
			action = r.Pattern
		}
		addr := ""
		if a := l.proxies.Addr(r); a.IsValid() {
			addr = a.String()
		}
		e := entry{actor: "admin", address: addr, action: action,
			sale: r.PathValue("sale"), target: r.PathValue("id"), request: seen.Bytes()}
		if action == "sale.create" || action == "ban.create" {
			var answer struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(rec.body.Bytes(), &answer)
			if action == "sale.create" {
				e.sale = answer.ID
			} else {
				e.target = answer.ID
			}
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer cancel()
		if err := l.record(ctx, e); err != nil {
			l.log.Error("audit: record an operator action", "action", action, "sale", e.sale, "err", err)
		}
	})
}

type entry struct {
	actor, address, action, sale, target string
	request                              []byte
}

func (l *Log) record(ctx context.Context, e entry) error {
	req := e.request
	if len(req) > maxRequest || !json.Valid(req) {
		req = nil // a body too large, or not JSON, is not kept
	}
	_, err := l.db.ExecContext(ctx, `INSERT INTO audit_log (actor, address, action, sale_id, target, request)
		VALUES (?, ?, ?, ?, ?, ?)`, e.actor, e.address, e.action, nullable(e.sale), nullable(e.target), nullable(string(req)))
	return err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// List answers GET /api/v1/admin/audit: newest first, ?limit (1–200,
// default 50), ?before (an id: the page after the one that ended there),
// ?sale (one sale's). The answer is {"entries":[...],"next":id or null}.
func (l *Log) List(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			api.WriteError(w, api.Invalid("limit: a number from 1 to 200"))
			return
		}
		limit = n
	}
	where, args := []string{"1=1"}, []any{}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			api.WriteError(w, api.Invalid("before: an entry id"))
			return
		}
		where, args = append(where, "id < ?"), append(args, n)
	}
	if v := q.Get("sale"); v != "" {
		where, args = append(where, "sale_id = ?"), append(args, v)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	rows, err := l.db.QueryContext(ctx, `SELECT id, at, actor, address, action, sale_id, target, request
		FROM audit_log WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, append(args, limit+1)...)
	if err != nil {
		api.WriteError(w, api.Unavailable("MySQL"))
		return
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		var e Entry
		var at time.Time
		var sale, target, req sql.NullString
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Address, &e.Action, &sale, &target, &req); err != nil {
			api.WriteError(w, api.Unavailable("MySQL"))
			return
		}
		e.At = api.Time(at)
		if sale.Valid {
			e.SaleID = &sale.String
		}
		if target.Valid {
			e.Target = &target.String
		}
		if req.Valid {
			e.Request = json.RawMessage(req.String)
		} else {
			e.Request = json.RawMessage("null")
		}
		out = append(out, e)
	}
	if rows.Err() != nil {
		api.WriteError(w, api.Unavailable("MySQL"))
		return
	}
	var next *int64
	if len(out) > limit {
		out = out[:limit]
		n := out[limit-1].ID
		next = &n
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"entries": out, "next": next})
}

// capped keeps the first maxRequest+1 bytes written to it (one more, so
// that a longer body is known to be too long).
type capped struct{ bytes.Buffer }

func (c *capped) Write(b []byte) (int, error) {
	if room := maxRequest + 1 - c.Len(); room > 0 {
		c.Buffer.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// recorder keeps a handler's status and the first bytes of its answer.
type recorder struct {
	http.ResponseWriter
	code int
	body bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.body.Len() < maxRequest {
		r.body.Write(b[:min(len(b), maxRequest-r.body.Len())])
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
