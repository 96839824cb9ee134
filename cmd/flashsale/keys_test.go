package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/shopticket"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// runKeys runs flashsale keys ARGS in-process and returns stdout.
func runKeys(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(append([]string{"keys"}, args...), &out, &errb)
	return out.String() + errb.String(), err
}

// loadKeys loads a key file as flashsale serve does.
func loadKeys(t *testing.T, path string) *ticket.KeySet {
	t.Helper()
	ks, err := ticket.LoadKeySet(path)
	require.NoError(t, err)
	return ks
}

// onlyFile says the directory holds the key file and nothing else (no
// temporary file left behind).
func onlyFile(t *testing.T, path string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, ents, 1, "%v", ents)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

func TestKeysGenerateAndRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets", "ticket.pem")
	out, err := runKeys(t, "generate", "--ticket-key", path)
	require.NoError(t, err, out)
	a := loadKeys(t, path)
	require.Contains(t, out, a.Kid)
	require.Empty(t, a.Previous)
	onlyFile(t, path)

	before, err := os.ReadFile(path)
	require.NoError(t, err)
	out, err = runKeys(t, "generate", "--ticket-key", path)
	require.ErrorContains(t, err, "flashsale keys rotate --ticket-key "+path)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "generate never overwrites a key file: %s", out)

	out, err = runKeys(t, "rotate", "--ticket-key", path)
	require.NoError(t, err, out)
	b := loadKeys(t, path)
	require.NotEqual(t, a.Kid, b.Kid, "a new key signs")
	require.Contains(t, b.Previous, a.Kid, "the old key still verifies")
	require.Len(t, b.Previous, 1)
	require.Contains(t, out, "kid "+b.Kid+" signs from now on; kid "+a.Kid+" still verifies.")
	require.Contains(t, out, "Restart the nodes")
	onlyFile(t, path)

	// openssl reads the file too (the comments sit outside the blocks),
	// and finds the signing key first.
	if openssl, err := exec.LookPath("openssl"); err == nil {
		pub, err := exec.Command(openssl, "pkey", "-in", path, "-pubout").Output()
		require.NoError(t, err)
		wantB := pemPublic(t, b)
		require.Equal(t, wantB, string(pub))
	}

	list, err := runKeys(t, "list", "--ticket-key", path)
	require.NoError(t, err)
	require.Equal(t, b.Kid+"  signs\n"+a.Kid+"  verifies\n", list)

	// Rotations beyond --keep drop the oldest keys, and say which.
	var kids []string
	for range 4 {
		out, err = runKeys(t, "rotate", "--ticket-key", path, "--keep", "2")
		require.NoError(t, err, out)
		kids = append(kids, loadKeys(t, path).Kid)
	}
	ks := loadKeys(t, path)
	require.Len(t, ks.Previous, 2)
	require.Contains(t, ks.Previous, kids[2])
	require.Contains(t, ks.Previous, kids[1])
	require.Contains(t, out, "Dropped (older than --keep 2): kid "+kids[0]+";")
	require.Contains(t, out, "kids "+kids[2]+", "+kids[1]+" still verify")
}

// pemPublic is the PEM of a key set's current public key, as openssl
// prints it.
func pemPublic(t *testing.T, ks *ticket.KeySet) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(ks.Current.Public())
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestKeysAddThenPromote(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ticket.pem")
	_, err := runKeys(t, "generate", "--ticket-key", path)
	require.NoError(t, err)
	a := loadKeys(t, path)

	out, err := runKeys(t, "add", "--ticket-key", path)
	require.NoError(t, err, out)
	staged := loadKeys(t, path)
	require.Equal(t, a.Kid, staged.Kid, "add does not change the signing key")
	require.Len(t, staged.Previous, 1)
	var newKid string
	for kid := range staged.Previous {
		newKid = kid
	}
	require.Contains(t, out, "flashsale keys rotate --ticket-key "+path+" --to "+newKid)
	require.Contains(t, string(staged.JWKS()), newKid, "the added key is published")

	_, err = runKeys(t, "rotate", "--ticket-key", path, "--to", "nope")
	require.ErrorContains(t, err, `no key of kid "nope"`)
	_, err = runKeys(t, "rotate", "--ticket-key", path, "--to", a.Kid)
	require.ErrorContains(t, err, "already signs")

	out, err = runKeys(t, "rotate", "--ticket-key", path, "--to", newKid)
	require.NoError(t, err, out)
	promoted := loadKeys(t, path)
	require.Equal(t, newKid, promoted.Kid)
	require.Equal(t, []string{a.Kid}, keysOf(promoted.Previous))
	onlyFile(t, path)
}

func keysOf(m map[string]ed25519.PublicKey) []string { return slices.Sorted(maps.Keys(m)) }

// countingForwarder stands where a shop reaches the JWKS (its load
// balancer): it forwards to the node upstream names and counts the fetches.
type countingForwarder struct {
	URL      string
	upstream atomic.Pointer[string]
	fetches  atomic.Int64
}

func newForwarder(t *testing.T, upstream string) *countingForwarder {
	t.Helper()
	f := &countingForwarder{}
	f.upstream.Store(&upstream)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.fetches.Add(1)
		resp, err := http.Get(*f.upstream.Load() + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func TestKeysRefusals(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.pem")
	for _, cmd := range []string{"rotate", "add", "list"} {
		_, err := runKeys(t, cmd, "--ticket-key", missing)
		require.ErrorContains(t, err, "flashsale keys generate --ticket-key "+missing, cmd)
	}
	_, err := runKeys(t, "rotate")
	require.ErrorContains(t, err, "--ticket-key FILE is required")
	_, err = runKeys(t, "frobnicate", "--ticket-key", missing)
	require.ErrorContains(t, err, `unknown command "frobnicate"`)
	_, err = runKeys(t)
	require.ErrorContains(t, err, "a command is required")
	_, err = runKeys(t, "rotate", "--ticket-key", missing, "--keep", "-1")
	require.ErrorContains(t, err, "--keep must be 0 or more")

	// A file serve would refuse is left alone.
	bad := filepath.Join(dir, "bad.pem")
	require.NoError(t, os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600))
	_, err = runKeys(t, "rotate", "--ticket-key", bad)
	require.ErrorContains(t, err, "left as it was")
	b, err := os.ReadFile(bad)
	require.NoError(t, err)
	require.Contains(t, string(b), "AAAA")

	// -h prints the usage and succeeds.
	out, err := runKeys(t, "rotate", "-h")
	require.NoError(t, err)
	require.Contains(t, out, "--keep")

	// The file may come from the environment, as serve's does.
	env := filepath.Join(dir, "env.pem")
	t.Setenv("FLASHSALE_TICKET_KEY", env)
	_, err = runKeys(t, "generate")
	require.NoError(t, err)
	loadKeys(t, env)
}

// TestKeysRotateWithANode runs the whole rotation against a real node and a
// shop's middleware: a node on a generated key file; "keys rotate" on that
// file; the node restarted on it. The shop accepts the tickets of both
// keys, fetching the JWKS once more for the new kid.
func TestKeysRotateWithANode(t *testing.T) {
	rdb, ks := testenv.Redis(t)
	dsn, db := testenv.MySQL(t)
	path := filepath.Join(t.TempDir(), "ticket.pem")
	_, err := runKeys(t, "generate", "--ticket-key", path)
	require.NoError(t, err)
	before := testenv.StartOn(t, rdb, ks, dsn, db, path, loadKeys(t, path))
	saleID := before.CreateSale(t, nil)["id"].(string)

	// The shop reaches the JWKS through one address (its load balancer).
	lb := newForwarder(t, before.URL)
	v, err := shopticket.New(shopticket.Config{JWKSURL: lb.URL + "/.well-known/jwks.json", Sale: saleID,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer v.Close()

	oldTicket := before.Ticket(saleID, "alice", 10*time.Minute)
	_, err = v.Verify(t.Context(), oldTicket)
	require.NoError(t, err)
	before.Stop()

	out, err := runKeys(t, "rotate", "--ticket-key", path)
	require.NoError(t, err, out)
	newKid := regexp.MustCompile(`kid (\S+) signs`).FindStringSubmatch(out)[1]
	after := testenv.StartOn(t, rdb, ks, dsn, db, path, loadKeys(t, path), func(c *node.Config) {
		c.IdentitySecret = before.Config.IdentitySecret
	})
	lb.upstream.Store(&after.URL)
	jwks := after.Do(t, "GET", "/.well-known/jwks.json", "", nil)
	require.Equal(t, http.StatusOK, jwks.Status)
	require.Contains(t, string(jwks.Body), newKid)

	_, err = v.Verify(t.Context(), oldTicket)
	require.NoError(t, err, "the old key still verifies")
	c, err := v.Verify(t.Context(), after.Ticket(saleID, "bob", 10*time.Minute))
	require.NoError(t, err, "the new key is fetched")
	require.Equal(t, newKid, c.KeyID)
	require.EqualValues(t, 2, lb.fetches.Load(), "at start and once for the new kid")
	require.True(t, strings.HasPrefix(out, "rotated "+path))
}
