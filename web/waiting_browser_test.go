package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// The shopper's waiting page in each of its states (issue 11; DESIGN.md,
// "Pages"), reached for real against a whole node in headless Chromium at
// 360 px: each state is checked (no sideways scroll, no serious or critical
// axe-core violation, a screenshot) and its action done with the keyboard.

// at is a time d from now as the API takes it, whole seconds.
func at(d time.Duration) string {
	return time.Now().Add(d).UTC().Truncate(time.Second).Format(time.RFC3339)
}

// joinAhead puts users in the sale's queue through the API.
func joinAhead(t *testing.T, s *testenv.Server, id string, users ...string) {
	t.Helper()
	for _, u := range users {
		r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, u), nil)
		require.Equal(t, http.StatusOK, r.Status, "join %s: %s", u, r.Body)
	}
}

// shopper opens the waiting page at 360 px and signs in as user with the
// keyboard (typing the name, Enter), which joins at once.
func shopper(t *testing.T, s *testenv.Server, id, user string) context.Context {
	t.Helper()
	ctx := newBrowser(t)
	phone(t, ctx)
	do(t, ctx, "open the waiting page", chromedp.Navigate(s.URL+"/sales/"+id), chromedp.WaitVisible(chromedp.ID("signin-user")))
	tabTo(t, ctx, "#signin-user")
	do(t, ctx, "type a name and press Enter", clear("signin-user"), chromedp.KeyEvent(user), chromedp.KeyEvent(kb.Enter))
	return ctx
}

// viewJS is the waiting page's shown view ("waiting", "admitted", …).
const viewJS = `(() => { const v = [...document.querySelectorAll("main .view")].find((e) => e.checkVisibility()); return v ? v.id.replace("view-", "") : ""; })()`

func waitView(t *testing.T, ctx context.Context, within time.Duration, view string) {
	t.Helper()
	waitFor[bool](t, ctx, within, "the "+view+" view", viewJS+` === `+jsString(view))
}

// statusTextJS is the text of every role=status region; spokenJS the
// sentence the position's region speaks.
const (
	statusTextJS = `[...document.querySelectorAll('[role="status"]')].map((e) => e.textContent).join(" ")`
	spokenJS     = `document.getElementById("position-spoken").textContent`
)

// TestBrowserBeforeTheQueueOpens: a prequeue sale whose queue opens in a
// few seconds. The page counts down to the opening, then offers Join
// (pressed with the keyboard); before the start it says the place will
// be drawn at random, with a countdown; at the start, with no reload, the
// shopper is in line or admitted.
func TestBrowserBeforeTheQueueOpens(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Midnight drop", "queue_mode": "prequeue",
		// far enough ahead for a browser started under load (CI saw 5 s pass
		// before the first view)
		"queue_opens_at": at(15 * time.Second), "starts_at": at(24 * time.Second), "admission_rate": 5})["id"].(string)
	ctx := shopper(t, s, id, "early-bird")

	waitView(t, ctx, 10*time.Second, "upcoming")
	require.Equal(t, "Upcoming", eval[string](t, ctx, textJS("state")))
	require.Regexp(t, `^The queue opens in 0:(0\d|1[0-5])$`, eval[string](t, ctx, `document.querySelector("#view-upcoming .countdown").textContent.trim()`))
	require.Equal(t, "timer", eval[string](t, ctx, `document.getElementById("opens-countdown").getAttribute("role")`))
	require.False(t, eval[bool](t, ctx, visibleJS("join")), "no Join before the queue opens")
	checkPage(t, ctx, "queue-opens-soon")

	waitFor[bool](t, ctx, 20*time.Second, "Join once the queue opens", visibleJS("join"))
	require.Contains(t, eval[string](t, ctx, textJS("join")), "Join")
	press(t, ctx, "#join")
	waitView(t, ctx, 10*time.Second, "prequeue")
	require.Contains(t, eval[string](t, ctx, textJS("view-prequeue")), "drawn at random")
	require.Regexp(t, `^Starts in 0:0\d$`, eval[string](t, ctx, `document.querySelector("#view-prequeue .countdown").textContent.trim()`))
	require.True(t, eval[bool](t, ctx, visibleJS("leave")), "a shopper in the pre-queue may leave")
	checkPage(t, ctx, "prequeue")

	waitFor[bool](t, ctx, 20*time.Second, "in line or admitted at the start",
		`["waiting", "admitted"].includes(`+viewJS+`)`)
}

// TestBrowserWaitingMovesAndSpeaks: forty shoppers ahead, one admitted a
// second. The number on screen, the people ahead and the progress bar
// follow the queue, while the live region keeps its sentence (a step of
// a few places in forty is not a big change, and 30 s have not passed);
// a pause is spoken at once and shown; resuming takes the banner away;
// Leave works from the keyboard.
func TestBrowserWaitingMovesAndSpeaks(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Long line", "stock": 100, "admission_rate": 1})["id"].(string)
	var ahead []string
	for i := range 40 {
		ahead = append(ahead, fmt.Sprintf("ahead-%02d", i))
	}
	joinAhead(t, s, id, ahead...)
	ctx := shopper(t, s, id, "patient")

	first := waitFor[int](t, ctx, 20*time.Second, "a position", positionJS)
	require.Greater(t, first, 20, "most of the forty are still ahead")
	waitFor[bool](t, ctx, 5*time.Second, "the position spoken", spokenJS+` !== ""`)
	said := eval[string](t, ctx, spokenJS)
	require.Regexp(t, `^You are number \d+ in line\.`, said)
	require.Contains(t, eval[string](t, ctx, statusTextJS), said, "the spoken sentence is in a role=status region")
	require.Equal(t, "true", eval[string](t, ctx, `document.getElementById("position").closest("[aria-hidden]").getAttribute("aria-hidden")`),
		"the rolling number is not spoken on every step")
	require.NotNil(t, eval[any](t, ctx, `document.getElementById("position").closest('[role="status"]')`), "the position sits in a role=status region")
	checkPage(t, ctx, "waiting")

	// Two places of forty is 5%: not a big change (10% is, two steps on).
	later := waitFor[int](t, ctx, 20*time.Second, "the position to fall by two",
		fmt.Sprintf(`(() => { const n = %s; return n >= 1 && n <= %d ? n : 0; })()`, positionJS, first-2))
	require.Equal(t, said, eval[string](t, ctx, spokenJS), "a small step within 30 s is not spoken")
	require.Equal(t, fmt.Sprint(later-1), strings.ReplaceAll(eval[string](t, ctx, textJS("ahead")), ",", ""))
	require.Positive(t, eval[float64](t, ctx, `document.getElementById("progress").value`), "the progress bar moved")
	require.Regexp(t, `ahead of you went through`, eval[string](t, ctx, textJS("progress-hint")))
	waitFor[bool](t, ctx, 10*time.Second, "an estimate", textJS("eta")+`.startsWith("about ")`)

	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": "paused"})
	require.Equal(t, http.StatusOK, r.Status, "pause: %s", r.Body)
	waitFor[bool](t, ctx, 10*time.Second, "the paused banner", visibleJS("paused-banner"))
	waitFor[bool](t, ctx, 5*time.Second, "the pause spoken at once", spokenJS+`.includes("paused")`)
	require.Equal(t, "paused", eval[string](t, ctx, textJS("eta")))
	require.Contains(t, eval[string](t, ctx, textJS("paused-banner")), "paused")
	checkPage(t, ctx, "paused")

	r = s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": "open"})
	require.Equal(t, http.StatusOK, r.Status, "resume: %s", r.Body)
	waitFor[bool](t, ctx, 10*time.Second, "the banner gone on resume", `!`+visibleJS("paused-banner"))
	waitFor[bool](t, ctx, 5*time.Second, "the resume spoken", `!`+spokenJS+`.includes("paused")`)
	require.Equal(t, "Open", eval[string](t, ctx, textJS("state")))
	require.NotEqual(t, "paused", eval[string](t, ctx, textJS("eta")))
	resumed := eval[int](t, ctx, positionJS)
	waitFor[int](t, ctx, 20*time.Second, "the line moving again",
		fmt.Sprintf(`(() => { const n = %s; return n >= 1 && n < %d ? n : 0; })()`, positionJS, resumed))

	press(t, ctx, "#leave")
	waitView(t, ctx, 10*time.Second, "join")
	require.Equal(t, "Join the queue", eval[string](t, ctx, textJS("join")))
	r = s.Do(t, "GET", "/api/v1/sales/"+id+"/status", s.UserToken(t, "patient"), nil)
	require.Equal(t, http.StatusNotFound, r.Status, "left the queue: %s", r.Body)
}

// TestBrowserPositionRolls: when the line jumps ahead (the operator raises
// the rate), the number on screen rolls down through the places between
// the positions the server sends rather than jumping, and never goes up.
func TestBrowserPositionRolls(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Fast line", "stock": 200, "admission_rate": 0.001})["id"].(string)
	var ahead []string
	for i := range 60 {
		ahead = append(ahead, fmt.Sprintf("r-%02d", i))
	}
	joinAhead(t, s, id, ahead...)
	ctx := newBrowser(t)
	phone(t, ctx)
	var mu sync.Mutex
	sent := map[int]bool{} // the positions the server sent
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventWebSocketFrameReceived); ok {
			var f struct {
				Type     string `json:"type"`
				Position int    `json:"position"`
			}
			if json.Unmarshal([]byte(e.Response.PayloadData), &f) == nil && f.Type == "position" {
				mu.Lock()
				sent[f.Position] = true
				mu.Unlock()
			}
		}
	}))
	signIn(t, ctx, s, id, "roller")
	first := waitFor[int](t, ctx, 20*time.Second, "a position", positionJS)
	eval[bool](t, ctx, `(() => { const seen = window.__shown = [];
		new MutationObserver(() => seen.push(parseInt(document.getElementById("position").textContent.replace(/\D/g, ""), 10)))
			.observe(document.getElementById("position"), { childList: true, characterData: true, subtree: true });
		return true; })()`)

	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"admission_rate": 25})
	require.Equal(t, http.StatusOK, r.Status, "raise the rate: %s", r.Body)
	waitFor[int](t, ctx, 20*time.Second, "the line to jump ahead",
		fmt.Sprintf(`(() => { const n = %s; return n >= 1 && n <= %d ? n : 0; })()`, positionJS, first-20))
	r = s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": "paused"})
	require.Equal(t, http.StatusOK, r.Status, "pause: %s", r.Body)

	shownValues := eval[[]int](t, ctx, `window.__shown`)
	mu.Lock()
	defer mu.Unlock()
	between := 0
	for i, v := range shownValues {
		if i > 0 {
			require.LessOrEqual(t, v, shownValues[i-1], "the number went up: %v", shownValues)
		}
		if !sent[v] {
			between++
		}
	}
	require.Positive(t, between, "every number shown was one the server sent (it jumped): shown %v, sent %v", shownValues, sent)
}

// TestBrowserAllReservedThenSoldOut: the one unit is reserved by a ticket
// someone else holds, so the shopper waits with "all reserved"; that
// someone buys it, and the page says sold out with no reload.
func TestBrowserAllReservedThenSoldOut(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Last one", "stock": 1, "admission_rate": 5})["id"].(string)
	holder := s.UserToken(t, "holder")
	joinAhead(t, s, id, "holder")
	var ticket string
	testenv.Eventually(t, 10*time.Second, func() bool {
		r := s.Do(t, "GET", "/api/v1/sales/"+id+"/status", holder, nil)
		st := r.JSON(t)
		ticket, _ = st["ticket"].(string)
		return st["state"] == "admitted"
	}, "the holder admitted")

	ctx := shopper(t, s, id, "hopeful")
	waitView(t, ctx, 20*time.Second, "waiting")
	waitFor[bool](t, ctx, 10*time.Second, "the all-reserved banner", visibleJS("reserved-banner"))
	require.Contains(t, eval[string](t, ctx, textJS("reserved-banner")), "All units are reserved")
	waitFor[bool](t, ctx, 5*time.Second, "all reserved spoken", spokenJS+`.includes("reserved")`)
	checkPage(t, ctx, "all-reserved")
	eval[bool](t, ctx, `window.__noReload = true`)

	r := s.Do(t, "POST", "/api/v1/sales/"+id+"/checkout", ticket, map[string]any{"quantity": 1}, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusCreated, r.Status, "checkout: %s", r.Body)
	waitView(t, ctx, 15*time.Second, "sold_out")
	require.Contains(t, eval[string](t, ctx, textJS("view-sold_out")), "sold out")
	require.Equal(t, "Sold out", eval[string](t, ctx, textJS("state")))
	require.False(t, eval[bool](t, ctx, visibleJS("leave")))
	require.True(t, eval[bool](t, ctx, `window.__noReload === true`), "the page was reloaded")
	checkPage(t, ctx, "sold-out")
}

// TestBrowserTicketExpires: an admitted shopper who does not buy sees the
// ticket's life count down, then "your turn passed", and joins again from
// the keyboard, at the back.
func TestBrowserTicketExpires(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Quick drop", "ticket_ttl_seconds": 10, "admission_rate": 5})["id"].(string)
	ctx := shopper(t, s, id, "dawdler")

	waitView(t, ctx, 20*time.Second, "admitted")
	require.Regexp(t, `^0:(10|0\d)$`, eval[string](t, ctx, textJS("ticket-countdown")))
	require.Contains(t, eval[string](t, ctx, textJS("buy")), "Buy")
	checkPage(t, ctx, "admitted")
	first := eval[string](t, ctx, textJS("ticket-countdown"))
	waitFor[bool](t, ctx, 5*time.Second, "the countdown running", textJS("ticket-countdown")+` !== `+jsString(first))

	waitView(t, ctx, 30*time.Second, "expired")
	require.Contains(t, eval[string](t, ctx, textJS("view-expired")), "join again")
	require.Equal(t, "Join again", eval[string](t, ctx, textJS("join")))
	checkPage(t, ctx, "expired")

	press(t, ctx, "#join")
	waitFor[bool](t, ctx, 20*time.Second, "back in line or admitted again", `["waiting", "admitted"].includes(`+viewJS+`)`)
}

// socketGate is a reverse proxy in front of a node, as a shop's proxy would
// be, that can refuse WebSocket upgrades (502), like a proxy that does not
// pass them. Chromium's request blocking does not cover WebSockets.
type socketGate struct {
	URL    string
	closed atomic.Bool
}

func newSocketGate(t *testing.T, s *testenv.Server) *socketGate {
	t.Helper()
	target, err := url.Parse(s.URL)
	require.NoError(t, err)
	g := &socketGate{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.closed.Load() && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "no WebSockets through this proxy", http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// TestBrowserCutSocketPolls: the shopper's socket is cut and no new one
// can open (the proxy in front refuses them). The page says it lost the
// connection, keeps the place by polling status and shows the line
// moving; once sockets work again it goes live and stops polling. A
// close with 4410 (the sale closed) is final: no socket after it.
func TestBrowserCutSocketPolls(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	gate := newSocketGate(t, s)
	id := s.CreateSale(t, map[string]any{"name": "Shaky line", "admission_rate": 0.5})["id"].(string)
	var ahead []string // enough that the shopper is still waiting when the sale closes
	for i := range 16 {
		ahead = append(ahead, fmt.Sprintf("a-%02d", i))
	}
	joinAhead(t, s, id, ahead...)
	ctx := newBrowser(t)
	phone(t, ctx)
	tr := watchTraffic(t, ctx)
	signIn(t, ctx, &testenv.Server{URL: gate.URL}, id, "shaky")
	first := waitFor[int](t, ctx, 20*time.Second, "a position", positionJS)
	testenv.Eventually(t, 10*time.Second, func() bool { _, _, _, frames := tr.snapshot(); return frames > 0 }, "a live socket")
	eval[bool](t, ctx, `window.__noReload = true`)

	statusCalls := func() int {
		calls, _, _, _ := tr.snapshot()
		n := 0
		for _, c := range calls {
			if c.method == "GET" && strings.HasSuffix(c.path, "/status") {
				n++
			}
		}
		return n
	}
	before := statusCalls()
	gate.closed.Store(true)
	cut := time.Now()
	s.Node.Hub.CloseAll(1012, "restarting")

	waitFor[bool](t, ctx, 10*time.Second, "the lost-connection notice", textJS("notice")+`.startsWith("Connection lost")`)
	require.Contains(t, eval[string](t, ctx, textJS("notice")), "you keep your place")
	_, _, _, framesCut := tr.snapshot()
	testenv.Eventually(t, 15*time.Second, func() bool { return statusCalls() >= before+3 }, "status polled while sockets fail")
	waitFor[int](t, ctx, 30*time.Second, "the position falling by polling",
		fmt.Sprintf(`(() => { const n = %s; return n >= 1 && n < %d ? n : 0; })()`, positionJS, first))
	_, opened, _, frames := tr.snapshot()
	require.Equal(t, framesCut, frames, "no socket got through the proxy")
	checkPage(t, ctx, "polling")

	// It kept trying sockets, backing off: 0.5–1 s, then 1–2 s, then
	// 2–4 s after the last (jittered halves of 1, 2, 4 s).
	testenv.Eventually(t, 15*time.Second, func() bool { _, o, _, _ := tr.snapshot(); return len(o) >= len(opened)+1 },
		"another socket tried")
	var tries []time.Time
	_, all, _, _ := tr.snapshot()
	for _, o := range all {
		if o.After(cut) {
			tries = append(tries, o)
		}
	}
	require.GreaterOrEqual(t, len(tries), 3, "sockets tried after the cut")
	require.GreaterOrEqual(t, tries[2].Sub(tries[1]), tries[1].Sub(tries[0])-200*time.Millisecond, "the tries back off: %v", tries)
	require.GreaterOrEqual(t, tries[0].Sub(cut), 400*time.Millisecond, "no reconnect at once")

	gate.closed.Store(false)
	testenv.Eventually(t, 30*time.Second, func() bool { _, _, _, f := tr.snapshot(); return f > frames }, "live again")
	waitFor[bool](t, ctx, 5*time.Second, "the notice gone", `!`+visibleJS("notice"))
	polled := statusCalls()
	_, openedLive, _, _ := tr.snapshot()

	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": "closed"})
	require.Equal(t, http.StatusOK, r.Status, "close: %s", r.Body)
	waitView(t, ctx, 10*time.Second, "closed")
	require.Contains(t, eval[string](t, ctx, textJS("view-closed")), "closed")
	checkPage(t, ctx, "closed")
	require.Never(t, func() bool { _, opened, _, _ := tr.snapshot(); return len(opened) > len(openedLive) },
		4*time.Second, 100*time.Millisecond, "a socket opened after 4410")
	require.LessOrEqual(t, statusCalls(), polled+1, "polling stopped once live (one status after the close at most)")
	require.True(t, eval[bool](t, ctx, `window.__noReload === true`), "the page was reloaded")
}

// TestBrowserReloadKeepsPlace: a reload finds the shopper where they were,
// by their stored queue token, without joining again.
func TestBrowserReloadKeepsPlace(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Steady line", "admission_rate": 0.001})["id"].(string)
	joinAhead(t, s, id, "b-1", "b-2", "b-3")
	// the rate's burst admits the first of the three at once; wait for it,
	// so that the place cannot move between the two reads below
	testenv.Eventually(t, 10*time.Second, func() bool {
		return adminGet(t, s, "/sales/"+id+"/summary")["active"] == float64(1)
	}, "the first of the three admitted")
	ctx := newBrowser(t)
	phone(t, ctx)
	tr := watchTraffic(t, ctx)
	signIn(t, ctx, s, id, "reloader")
	place := waitFor[int](t, ctx, 20*time.Second, "a position", positionJS)
	require.Equal(t, 3, place)
	calls, _, _, _ := tr.snapshot()
	joinsBefore := 0
	for _, c := range calls {
		if c.method == "POST" && strings.HasSuffix(c.path, "/join") {
			joinsBefore++
		}
	}
	require.Equal(t, 1, joinsBefore)

	do(t, ctx, "reload", chromedp.Reload())
	require.Equal(t, place, waitFor[int](t, ctx, 20*time.Second, "the same place after the reload", positionJS))
	require.Equal(t, "reloader", eval[string](t, ctx, textJS("user-name")))
	calls, _, _, _ = tr.snapshot()
	joins := 0
	for _, c := range calls {
		if c.method == "POST" && strings.HasSuffix(c.path, "/join") {
			joins++
		}
	}
	require.Equal(t, joinsBefore, joins, "the reload did not join again")
	checkPage(t, ctx, "after-reload")
}

// TestBrowserLanguages: a German browser (Accept-Language) gets the page in
// German with German numbers and prices; the switcher, used from the
// keyboard, turns it Spanish, and a reload keeps Spanish.
func TestBrowserLanguages(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Großer Verkauf", "price_cents": 123456, "currency": "EUR",
		"stock": 1500, "admission_rate": 0.001})["id"].(string)
	joinAhead(t, s, id, "c-1", "c-2") // the rate's burst admits c-1 at once
	ctx := newBrowser(t)
	phone(t, ctx)
	_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Accept-Language": "de-DE,de;q=0.9"}})
	require.NoError(t, err)

	do(t, ctx, "open the waiting page", chromedp.Navigate(s.URL+"/sales/"+id))
	waitFor[bool](t, ctx, 10*time.Second, "the German sign-in", visibleJS("signin-title")+` && `+textJS("signin-title")+` === "Demo-Anmeldung"`)
	require.Equal(t, "de", eval[string](t, ctx, `document.documentElement.lang`))
	require.Equal(t, "de", eval[string](t, ctx, `document.getElementById("lang").value`))
	require.Equal(t, "Sprache", eval[string](t, ctx, `document.querySelector('label[for="lang"]').textContent`))
	require.Equal(t, "Großer Verkauf", eval[string](t, ctx, textJS("sale-name")), "the h1 stays the sale's name")
	checkPage(t, ctx, "german-signin")

	tabTo(t, ctx, "#signin-user")
	do(t, ctx, "sign in", clear("signin-user"), chromedp.KeyEvent("Bruno"), chromedp.KeyEvent(kb.Enter))
	testenv.Eventually(t, 10*time.Second, func() bool {
		return s.Do(t, "GET", "/api/v1/sales/"+id+"/status", s.UserToken(t, "c-1"), nil).JSON(t)["state"] == "admitted"
	}, "c-1 admitted")
	require.Equal(t, 2, waitFor[int](t, ctx, 20*time.Second, "a position", positionJS))
	require.Equal(t, "Sie sind Nummer 2 in der Schlange", eval[string](t, ctx, `document.querySelector(".position-line [aria-hidden]").textContent.replace(/\s+/g, " ").trim()`))
	require.Equal(t, "1.234,56\u00a0€", eval[string](t, ctx, textJS("price")))
	require.Equal(t, "1.500 von 1.500 übrig", eval[string](t, ctx, textJS("stock")))
	require.Equal(t, "Geöffnet", eval[string](t, ctx, textJS("state")))
	require.Equal(t, "Warteschlange verlassen", eval[string](t, ctx, textJS("leave")))
	require.Contains(t, eval[string](t, ctx, spokenJS), "Sie sind Nummer 2")
	checkPage(t, ctx, "german-waiting")

	tabTo(t, ctx, "#lang")
	do(t, ctx, "choose the next language with the arrow key", chromedp.KeyEvent(kb.ArrowDown))
	waitFor[bool](t, ctx, 10*time.Second, "the page in Spanish", textJS("leave")+` === "Salir de la cola"`)
	require.Equal(t, "es", eval[string](t, ctx, `document.documentElement.lang`))
	require.Equal(t, "Eres el número 2 de la cola", eval[string](t, ctx, `document.querySelector(".position-line [aria-hidden]").textContent.replace(/\s+/g, " ").trim()`))
	require.Equal(t, "1234,56\u00a0€", eval[string](t, ctx, textJS("price")), "Spanish groups four-digit numbers not")
	require.Equal(t, "Abierta", eval[string](t, ctx, textJS("state")))
	waitFor[bool](t, ctx, 5*time.Second, "the position spoken in Spanish", spokenJS+`.startsWith("Eres el número 2")`)
	require.Equal(t, "es", eval[string](t, ctx, `localStorage.getItem("fs_lang")`))
	checkPage(t, ctx, "spanish-waiting")

	do(t, ctx, "reload", chromedp.Reload())
	waitFor[int](t, ctx, 20*time.Second, "a position after the reload", positionJS)
	waitFor[bool](t, ctx, 10*time.Second, "still Spanish (the choice beats Accept-Language)", textJS("leave")+` === "Salir de la cola"`)
	require.Equal(t, "es", eval[string](t, ctx, `document.getElementById("lang").value`))

	do(t, ctx, "open the list of sales", chromedp.Navigate(s.URL+"/"))
	waitFor[bool](t, ctx, 10*time.Second, "the list in Spanish", `document.querySelector("h1").textContent === "Ventas"`)
	waitFor[bool](t, ctx, 10*time.Second, "the sale listed", `document.querySelector("#sales .card p") !== null`)
	require.Equal(t, "1234,56\u00a0€ · Quedan 1500 de 1500", eval[string](t, ctx, `document.querySelector("#sales .card p").textContent`))
	checkPage(t, ctx, "spanish-list")
}

// TestBrowserTheme: a node started with --theme-dir (a copy of
// deploy/theme-example in a temp dir, less its Spanish texts) shows the shop's logo, colours,
// fonts, title and notice, in the shopper's language, with no inline style
// or script (the CSP is unchanged) and no axe-core finding in its colours.
func TestBrowserTheme(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	dir := t.TempDir()
	example, err := os.ReadDir("../deploy/theme-example")
	require.NoError(t, err)
	for _, e := range example {
		if e.Name() == "text.es.json" {
			continue // a language the theme has no texts for
		}
		b, err := os.ReadFile(filepath.Join("../deploy/theme-example", e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644))
	}
	s := testenv.Start(t, func(c *node.Config) {
		c.Dev = true
		c.SampleSale = false
		c.ThemeDir = dir
	})
	id := s.CreateSale(t, map[string]any{"name": "Branded drop", "admission_rate": 0.001})["id"].(string)
	joinAhead(t, s, id, "d-1", "d-2")
	ctx := shopper(t, s, id, "branded")

	waitFor[int](t, ctx, 20*time.Second, "a position", positionJS)
	waitFor[bool](t, ctx, 10*time.Second, "the logo loaded",
		`(() => { const i = document.querySelector("header .logo"); return !!i && i.complete && i.naturalWidth === 132; })()`)
	require.Equal(t, "Northwind Store", eval[string](t, ctx, textJS("brand-title")))
	require.Equal(t, "Branded drop · Northwind Store", eval[string](t, ctx, `document.title`))
	require.Contains(t, eval[string](t, ctx, textJS("theme-notice")), "One per customer.")
	require.Equal(t, "rgb(15, 107, 92)", eval[string](t, ctx, `getComputedStyle(document.getElementById("progress")).accentColor`),
		"the theme's --accent")
	require.Contains(t, eval[string](t, ctx, `getComputedStyle(document.querySelector("h1")).fontFamily`), "Georgia")
	require.Equal(t, "Branded drop", eval[string](t, ctx, textJS("sale-name")), "the h1 stays the sale's name")
	checkPage(t, ctx, "themed")

	tabTo(t, ctx, "#lang")
	do(t, ctx, "choose German", chromedp.KeyEvent(kb.ArrowDown))
	waitFor[bool](t, ctx, 10*time.Second, "the German title", textJS("brand-title")+` === "Northwind Laden"`)
	require.Contains(t, eval[string](t, ctx, textJS("theme-notice")), "Eins pro Person.")
	checkPage(t, ctx, "themed-german")

	// Spanish has no theme texts: the shop keeps its English title, and no
	// notice shows in a language it was not written for.
	do(t, ctx, "choose Spanish", chromedp.KeyEvent(kb.ArrowDown))
	waitFor[bool](t, ctx, 10*time.Second, "the page in Spanish", textJS("leave")+` === "Salir de la cola"`)
	require.Equal(t, "Northwind Store", eval[string](t, ctx, textJS("brand-title")))
	require.False(t, eval[bool](t, ctx, visibleJS("theme-notice")))
}

// TestBrowserKeyboardPurchase: a whole purchase with the keyboard alone:
// sign in, Buy, Cancel the held order, Join again, Buy, Pay.
func TestBrowserKeyboardPurchase(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Keyboard drop", "price_cents": 4200, "stock": 2,
		"admission_rate": 5, "hold_ttl_seconds": 120})["id"].(string)
	ctx := shopper(t, s, id, "keys")

	waitView(t, ctx, 20*time.Second, "admitted")
	press(t, ctx, "#buy")
	waitFor[bool](t, ctx, 20*time.Second, "the order held", textJS("order-status")+` === "held"`)
	require.Regexp(t, `^(2:00|1:[0-5]\d)$`, eval[string](t, ctx, textJS("hold-countdown")))
	require.Regexp(t, `^ord_`, eval[string](t, ctx, textJS("order-id")))
	checkPage(t, ctx, "held")

	press(t, ctx, "#cancel")
	waitFor[bool](t, ctx, 20*time.Second, "the order cancelled", textJS("order-status")+` === "cancelled"`)
	require.Equal(t, "This order was cancelled.", eval[string](t, ctx, textJS("order-message")))
	require.Equal(t, "Join again", eval[string](t, ctx, textJS("join")))
	checkPage(t, ctx, "cancelled")

	press(t, ctx, "#join")
	waitView(t, ctx, 20*time.Second, "admitted")
	press(t, ctx, "#buy")
	waitFor[bool](t, ctx, 20*time.Second, "held again", textJS("order-status")+` === "held"`)
	press(t, ctx, "#pay")
	waitFor[bool](t, ctx, 20*time.Second, "the order paid", textJS("order-status")+` === "paid"`)
	require.Equal(t, "Paid. Thank you for your order!", eval[string](t, ctx, textJS("order-message")))
	checkPage(t, ctx, "paid")
}
