package node_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// kidOf is the kid in a JWT's header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	head, _, ok := strings.Cut(tok, ".")
	require.True(t, ok, "not a JWT: %q", tok)
	b, err := base64.RawURLEncoding.DecodeString(head)
	require.NoError(t, err)
	var h struct{ Kid string }
	require.NoError(t, json.Unmarshal(b, &h))
	return h.Kid
}

// admitted polls status with a queue token until its shopper is admitted,
// and returns the ticket status answers.
func admitted(t *testing.T, s *testenv.Server, saleID, qt string) string {
	t.Helper()
	var tok string
	testenv.Eventually(t, 20*time.Second, func() bool {
		r := s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		tok, _ = r.JSON(t)["ticket"].(string)
		return r.JSON(t)["state"] == "admitted" && tok != ""
	}, "admitted in sale %s", saleID)
	return tok
}

// TestTicketKeyRotation rotates the ticket key as the operator does: a
// node runs with the key file [A]; a shopper joins and is admitted; the
// node restarts on the same stores with the file [B, A]. The shopper's old
// queue token still answers status (a rotation must not log out the
// waiters), the old ticket (kid A) still buys, the JWKS serves both kids,
// and tickets are signed with B from then on.
func TestTicketKeyRotation(t *testing.T) {
	t.Parallel()
	rdb, ks := testenv.Redis(t)
	dsn, db := testenv.MySQL(t)
	pathA, keysA := testenv.KeyFile(t)
	pathB, keysB := testenv.KeyFile(t)
	pemA, err := os.ReadFile(pathA)
	require.NoError(t, err)
	pemB, err := os.ReadFile(pathB)
	require.NoError(t, err)
	rotated := append(append([]byte{}, pemB...), pemA...) // the new key first: it signs
	pathBA := filepath.Join(t.TempDir(), "ticket.pem")
	require.NoError(t, os.WriteFile(pathBA, rotated, 0o600))
	keysBA, err := ticket.ParseKeySet(rotated)
	require.NoError(t, err)
	require.NotEqual(t, keysA.Kid, keysB.Kid)

	before := testenv.StartOn(t, rdb, ks, dsn, db, pathA, keysA)
	saleID := before.CreateSale(t, map[string]any{"stock": 5, "admission_rate": 20, "max_active": 10})["id"].(string)
	alice := "alice-" + testenv.RandomID()
	join := before.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", before.UserToken(t, alice), nil)
	require.Equal(t, http.StatusOK, join.Status, "%s", join.Body)
	qt, _ := join.JSON(t)["queue_token"].(string)
	require.NotEmpty(t, qt)
	oldTicket := admitted(t, before, saleID, qt)
	require.Equal(t, keysA.Kid, kidOf(t, oldTicket))
	before.Stop()

	// The same shop (identity secret) and stores, the rotated key file.
	after := testenv.StartOn(t, rdb, ks, dsn, db, pathBA, keysBA, func(c *node.Config) {
		c.IdentitySecret = before.Config.IdentitySecret
	})

	// The JWKS serves both kids, the new one first.
	jwks := after.Do(t, "GET", "/.well-known/jwks.json", "", nil)
	require.Equal(t, http.StatusOK, jwks.Status)
	var set struct{ Keys []struct{ Kid string } }
	require.NoError(t, json.Unmarshal(jwks.Body, &set))
	require.Len(t, set.Keys, 2)
	require.Equal(t, keysB.Kid, set.Keys[0].Kid)
	require.Equal(t, keysA.Kid, set.Keys[1].Kid)

	// Alice's queue token of key A still answers status; the ticket it
	// answers now is signed with B.
	st := after.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil)
	require.Equal(t, http.StatusOK, st.Status, "the old queue token still works: %s", st.Body)
	require.Equal(t, "admitted", st.JSON(t)["state"])
	resigned, _ := st.JSON(t)["ticket"].(string)
	require.Equal(t, keysB.Kid, kidOf(t, resigned), "tickets are signed with the new key")

	// Her old ticket (kid A) still buys.
	buy := after.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", oldTicket, `{"quantity":1}`,
		"Idempotency-Key", "rotation-1")
	require.Equal(t, http.StatusCreated, buy.Status, "the old ticket still verifies: %s", buy.Body)
	require.Equal(t, alice, buy.JSON(t)["user_id"])
	st = after.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil)
	require.Equal(t, http.StatusOK, st.Status, "%s", st.Body)
	require.Equal(t, "purchased", st.JSON(t)["state"])

	// A shopper who joins after the rotation gets a queue token and a
	// ticket of the new key.
	bob := "bob-" + testenv.RandomID()
	join = after.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", after.UserToken(t, bob), nil)
	require.Equal(t, http.StatusOK, join.Status, "%s", join.Body)
	qt2, _ := join.JSON(t)["queue_token"].(string)
	bobTicket := admitted(t, after, saleID, qt2)
	require.Equal(t, keysB.Kid, kidOf(t, bobTicket))
	_, err = ticket.NewIssuer(keysB, "flashsale").VerifyTicket(bobTicket, saleID, time.Now())
	require.NoError(t, err, "signed by B alone")
	_, err = ticket.NewIssuer(keysB, "flashsale").VerifyQueueToken(qt2, saleID, time.Now())
	require.NoError(t, err, "the new queue token is of B")
	_, err = ticket.NewIssuer(keysA, "flashsale").VerifyQueueToken(qt2, saleID, time.Now())
	require.ErrorIs(t, err, ticket.ErrInvalid, "not of A")
}
