package waitingroom_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// queueCookieIn finds the queue-token cookie a response sets.
func queueCookieIn(t *testing.T, r *testenv.Response) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == "fs_qt" {
			return c
		}
	}
	t.Fatalf("no fs_qt cookie in %v", r.Header.Values("Set-Cookie"))
	return nil
}

// TestLeaveClearsQueueCookie: the cookie a leave clears is the one the join
// set (same name and path, so the browser drops it), with the same
// protections.
func TestLeaveClearsQueueCookie(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, nil)["id"].(string)
	path := "/api/v1/sales/" + saleID + "/join"
	tok := s.UserToken(t, "u1")

	r := s.Do(t, "POST", path, tok, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	set := queueCookieIn(t, r)
	require.NotEmpty(t, set.Value)
	require.Equal(t, "/api/v1/sales/"+saleID, set.Path)
	require.True(t, set.HttpOnly)
	require.Equal(t, http.SameSiteLaxMode, set.SameSite)
	require.True(t, set.Expires.After(time.Now()), "expires %v", set.Expires)

	r = s.Do(t, "DELETE", path, tok, nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	cleared := queueCookieIn(t, r)
	require.Empty(t, cleared.Value)
	require.Less(t, cleared.MaxAge, 0, "the cookie is deleted")
	require.Equal(t, set.Path, cleared.Path)
	require.Equal(t, set.HttpOnly, cleared.HttpOnly)
	require.Equal(t, set.SameSite, cleared.SameSite)
	require.Equal(t, set.Secure, cleared.Secure)
}
