// Package testenv gives tests real stores of their own: a Redis key prefix
// per test (so tests run in parallel on one Redis), a MySQL database per
// test (created with the schema, dropped after), and a whole flashsale node
// on a free port. The stores are the local ones deploy/services.sh starts;
// FLASHSALE_TEST_REDIS and FLASHSALE_TEST_MYSQL point elsewhere.
package testenv

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/ticket"
)

// RedisURL is the Redis tests use (testdb.RedisURL).
func RedisURL() string { return testdb.RedisURL() }

// MySQLDSN is the server tests create their databases on (testdb.MySQLDSN).
func MySQLDSN() string { return testdb.MySQLDSN() }

// RandomID is a short random hex id.
func RandomID() string { return testdb.RandomID() }

// Redis returns a client and a key prefix of the test's own (testdb.Redis).
func Redis(t testing.TB) (*redis.Client, sale.Keyspace) { t.Helper(); return testdb.Redis(t) }

// RedisOn is Redis on the server at url (testdb.RedisOn).
func RedisOn(t testing.TB, url string) (*redis.Client, sale.Keyspace) {
	t.Helper()
	return testdb.RedisOn(t, url)
}

// MySQL creates a database of the test's own with the schema (testdb.MySQL).
func MySQL(t testing.TB) (string, *sql.DB) { t.Helper(); return testdb.MySQL(t) }

// MySQLOn is MySQL on the server of serverDSN (testdb.MySQLOn).
func MySQLOn(t testing.TB, serverDSN string) (string, *sql.DB) {
	t.Helper()
	return testdb.MySQLOn(t, serverDSN)
}

// KeyFile writes a new Ed25519 ticket key to a temporary file.
func KeyFile(t testing.TB) (string, *ticket.KeySet) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	require.NoError(t, err)
	b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	path := filepath.Join(t.TempDir(), "ticket.pem")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	ks, err := ticket.ParseKeySet(b)
	require.NoError(t, err)
	return path, ks
}

// Server is a running flashsale node with its own stores.
type Server struct {
	URL          string
	Node         *node.Node
	Config       node.Config
	Redis        redis.UniversalClient // a *redis.ClusterClient under StartCluster
	Keys         sale.Keyspace
	DB           *sql.DB
	DSN          string
	Issuer       *ticket.Issuer
	AdminToken   string
	ServiceToken string
	Secret       []byte
	stop         func()
}

// Options change a test server's config before it starts.
type Options func(*node.Config)

// Start runs a whole node (all roles unless changed) on a free port, on a
// fresh key prefix and database, and stops it when the test ends.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	rdb, ks := Redis(t)
	dsn, db := MySQL(t)
	keyPath, keys := KeyFile(t)
	return StartOn(t, rdb, ks, dsn, db, keyPath, keys, opts...)
}

// StartOn runs a node on stores a test already has (e.g. a second node on
// the same Redis and MySQL). A Redis other than RedisURL() needs the option
// WithRedisURL too.
func StartOn(t testing.TB, rdb redis.UniversalClient, ks sale.Keyspace, dsn string, db *sql.DB,
	keyPath string, keys *ticket.KeySet, opts ...Options) *Server {
	t.Helper()
	cfg := node.Config{
		Listen: "127.0.0.1:0", Roles: []string{node.RoleAll}, RedisURL: RedisURL(), MySQLDSN: dsn,
		AdminToken: "admin-" + RandomID(), ServiceToken: "service-" + RandomID(),
		IdentitySecret: "secret-" + RandomID(), TicketKey: keyPath, TicketIssuer: "flashsale",
		KeyPrefix: ks.Prefix, DataDir: t.TempDir(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("FLASHSALE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, log)
	require.NoError(t, err)
	addr, err := n.Listen()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	s := &Server{URL: "http://" + addr.String(), Node: n, Config: cfg, Redis: rdb, Keys: ks, DB: db, DSN: dsn,
		Issuer: ticket.NewIssuer(keys, "flashsale"), AdminToken: cfg.AdminToken, ServiceToken: cfg.ServiceToken,
		Secret: []byte(cfg.IdentitySecret)}
	var stopped bool
	s.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("node did not stop within 30 s")
		}
	}
	t.Cleanup(s.stop)
	return s
}

// StartCluster is Start on the local Redis Cluster (--redis-cluster).
func StartCluster(t testing.TB, opts ...Options) *Server {
	t.Helper()
	rdb, ks := testdb.RedisCluster(t)
	dsn, db := MySQL(t)
	keyPath, keys := KeyFile(t)
	cluster := func(c *node.Config) { c.RedisURL, c.RedisCluster = testdb.RedisClusterURL(), true }
	return StartOn(t, rdb, ks, dsn, db, keyPath, keys, append([]Options{cluster}, opts...)...)
}

// Backend is a Redis the suites run on (testdb.Backend), and a whole node
// on it.
type Backend struct{ testdb.Backend }

// EachBackend runs fn once per backend, one Redis and the local Redis
// Cluster, as parallel subtests "redis" and "cluster" (testdb.EachBackend).
func EachBackend(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	testdb.EachBackend(t, func(t *testing.T, b testdb.Backend) { fn(t, Backend{b}) })
}

// EachBackendInTurn is EachBackend with the backends one after the other
// (testdb.EachBackendInTurn).
func EachBackendInTurn(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	testdb.EachBackendInTurn(t, func(t *testing.T, b testdb.Backend) { fn(t, Backend{b}) })
}

// Start is Start, or StartCluster on the cluster backend.
func (b Backend) Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	if b.Cluster {
		return StartCluster(t, opts...)
	}
	return Start(t, opts...)
}

// Options point a node at the backend (--redis-url, --redis-cluster), for
// StartOn with a client of b.Redis.
func (b Backend) Options() Options {
	return func(c *node.Config) { c.RedisURL, c.RedisCluster = b.URL(), b.Cluster }
}

// FlushRedis deletes every key of the server's prefix, on every master:
// what a FLUSHALL does to the node's keys, on a Redis shared with other
// tests (testdb.DeletePrefix). It returns how many keys it deleted.
func (s *Server) FlushRedis(t testing.TB) int {
	t.Helper()
	return testdb.FlushPrefix(t, s.Redis, s.Keys.Prefix)
}

// RedisKeys lists every key of the server's prefix, on every master.
func (s *Server) RedisKeys(t testing.TB) []string {
	t.Helper()
	keys, err := testdb.PrefixKeys(context.Background(), s.Redis, s.Keys.Prefix)
	require.NoError(t, err)
	return keys
}

// RunID is the run id of the Redis server process that holds key (the
// master of its slot on a cluster): the one a sale's scripts compare with
// the sale's stamp.
func RunID(t testing.TB, rdb redis.UniversalClient, key string) string {
	t.Helper()
	ctx := context.Background()
	c, err := testdb.ServerOf(ctx, rdb, key)
	require.NoError(t, err)
	info, err := c.Info(ctx, "server").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			return v
		}
	}
	t.Fatalf("no run_id in INFO server:\n%s", info)
	return ""
}

// WithRedisURL points the node at another Redis (the one rdb talks to).
func WithRedisURL(url string) Options {
	return func(c *node.Config) { c.RedisURL = url }
}

// Stop stops the node (also done at the test's end).
func (s *Server) Stop() { s.stop() }

// UserToken mints a user token for user with the server's identity secret.
func (s *Server) UserToken(t testing.TB, user string) string {
	t.Helper()
	tok, _, err := identity.Mint(s.Secret, user, time.Hour)
	require.NoError(t, err)
	return tok
}

// Ticket mints a ticket for user in saleID with the server's key, valid for
// ttl, as the admitter's records would sign it.
func (s *Server) Ticket(saleID, user string, ttl time.Duration) string {
	now := time.Now().Unix()
	return s.Issuer.Ticket(ticket.Admission{Sale: saleID, User: user, JTI: "test-" + RandomID(),
		IssuedAt: now, ExpiresAt: now + int64(ttl/time.Second)})
}

// Response is an HTTP answer with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r *Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "body: %s", r.Body)
	return m
}

// Code is the error code of an error answer.
func (r *Response) Code(t testing.TB) string {
	t.Helper()
	e, _ := r.JSON(t)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// Do sends a request with an optional bearer token and JSON body (a string
// or []byte is sent as is; anything else is encoded).
func (s *Server) Do(t testing.TB, method, path, token string, body any, headers ...string) *Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// CreateSale creates a sale with the admin token; fields override the
// defaults (a random id, stock 10, price 1000 EUR).
func (s *Server) CreateSale(t testing.TB, fields map[string]any) map[string]any {
	t.Helper()
	body := map[string]any{"id": "s-" + RandomID(), "name": "Test sale", "price_cents": 1000,
		"currency": "EUR", "stock": 10}
	for k, v := range fields {
		body[k] = v
	}
	r := s.Do(t, "POST", "/api/v1/admin/sales", s.AdminToken, body)
	require.Equal(t, http.StatusCreated, r.Status, "create sale: %s", r.Body)
	return r.JSON(t)
}

// Eventually polls cond every 20 ms until it is true or the deadline passes.
func Eventually(t testing.TB, within time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, fmt.Sprintf(msg, args...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SyncBuffer is a buffer a process or node writes while a test reads it.
type SyncBuffer = testdb.SyncBuffer

// Peer starts another node on s's stores (Redis prefix, MySQL database,
// ticket key) with the same admin token and identity secret, so one user
// token and one ticket serve both: a second node of one deployment.
func (s *Server) Peer(t testing.TB, opts ...Options) *Server {
	t.Helper()
	same := func(c *node.Config) { c.AdminToken, c.IdentitySecret = s.AdminToken, s.Config.IdentitySecret }
	// s's Redis first (a cluster too), so an option may still point
	// the peer elsewhere
	redisOf := func(c *node.Config) { c.RedisURL, c.RedisCluster = s.Config.RedisURL, s.Config.RedisCluster }
	all := append(append([]Options{redisOf}, opts...), same)
	return StartOn(t, s.Redis, s.Keys, s.DSN, s.DB, s.Config.TicketKey, s.Issuer.Keys(), all...)
}
