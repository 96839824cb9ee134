package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// The waiting page's and the console's side of the abuse defence (DESIGN.md,
// "Abuse defence"): the join challenge, bans, rate limits, the operator's
// message, sources and the bans view, each in headless Chromium against a
// whole node.

// positionJS is the position the waiting page shows, 0 when none.
const positionJS = `(() => { const n = parseInt(` + `((document.getElementById("position") || {}).textContent || "")` +
	`.replace(/\D/g, ""), 10); return n >= 1 && document.getElementById("position").checkVisibility() ? n : 0; })()`

// noScrollJS is true when the page has no horizontal scroll.
const noScrollJS = `document.documentElement.scrollWidth <= document.documentElement.clientWidth`

// phone makes the tab 360 px wide, the narrowest the pages are made for.
func phone(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, "a 360 px wide viewport", chromedp.EmulateViewport(360, 740))
}

// checkPage checks the page in its current state: it fits its width (no
// sideways scroll) and has no axe-core violation of impact serious or
// critical (testdata/axe.min.js, vendored from npm's axe-core;
// $FLASHSALE_AXE may name another build). It keeps a screenshot
// (saveScreenshot).
func checkPage(t *testing.T, ctx context.Context, state string) {
	t.Helper()
	noHorizontalScroll(t, ctx, state)
	path := os.Getenv("FLASHSALE_AXE")
	if path == "" {
		path = "testdata/axe.min.js"
	}
	if !eval[bool](t, ctx, `typeof axe === "object"`) {
		src, err := os.ReadFile(path)
		require.NoError(t, err, "axe-core (web/testdata/README.md says where it comes from)")
		// Runtime.evaluate runs it whatever the page's CSP says.
		_, err = chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](string(src)))
		require.NoError(t, err, "load axe-core")
	}
	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`axe.run(document, { resultTypes: ["violations"] }).then((r) => r.violations`+
		`.filter((v) => v.impact === "serious" || v.impact === "critical")`+
		`.map((v) => v.impact + " " + v.id + ": " + v.help + " at " + v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")))`,
		chromedp.EvalAwaitPromise))
	require.NoError(t, err, "run axe-core")
	require.Empty(t, violations, "%s: axe-core finds", state)
}

// noHorizontalScroll checks the page fits its width in its current state,
// and keeps a screenshot of it (saveScreenshot).
func noHorizontalScroll(t *testing.T, ctx context.Context, state string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	saveScreenshot(t, png, strings.ReplaceAll(t.Name()+"-"+state, " ", "-")+".png")
	require.True(t, eval[bool](t, ctx, noScrollJS), "%s: the page scrolls sideways (scrollWidth %d, clientWidth %d); too wide: %s", state,
		eval[int](t, ctx, `document.documentElement.scrollWidth`), eval[int](t, ctx, `document.documentElement.clientWidth`),
		// what sticks out (inside a scrolled table, a row may)
		eval[string](t, ctx, `[...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)`+
			`.slice(0, 8).map((e) => e.tagName + "#" + e.id + "." + e.className + " " + Math.round(e.getBoundingClientRect().right)).join(", ")`))
}

// tabTo presses Tab until the element css finds has the focus, as a
// keyboard user reaches it; past 120 presses it fails the test.
func tabTo(t *testing.T, ctx context.Context, css string) {
	t.Helper()
	focused := fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && document.activeElement === e; })()`, jsString(css))
	for range 120 {
		if eval[bool](t, ctx, focused) {
			return
		}
		do(t, ctx, "press Tab", chromedp.KeyEvent(kb.Tab))
	}
	t.Fatalf("%s cannot be reached with the Tab key; the focus is on %s", css,
		eval[string](t, ctx, `document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : "nothing"`))
}

// press reaches css with the keyboard and presses Enter on it.
func press(t *testing.T, ctx context.Context, css string) {
	t.Helper()
	tabTo(t, ctx, css)
	do(t, ctx, "press Enter on "+css, chromedp.KeyEvent(kb.Enter))
}

// signIn opens the waiting page and signs in as user with the demo sign-in,
// which joins at once.
func signIn(t *testing.T, ctx context.Context, s *testenv.Server, saleID, user string) {
	t.Helper()
	do(t, ctx, "open the waiting page and sign in",
		chromedp.Navigate(s.URL+"/sales/"+saleID),
		chromedp.WaitVisible(chromedp.ID("signin-user")),
		clear("signin-user"),
		chromedp.SendKeys(chromedp.ID("signin-user"), user),
	)
	click(t, ctx, "#signin")
}

// traffic counts what the page sends: shopper API calls (with their
// answers' status) and WebSocket opens and closes, from the browser's own
// network events.
type traffic struct {
	mu       sync.Mutex
	calls    []call
	byID     map[network.RequestID]int
	wsOpened []time.Time
	wsClosed int
	frames   int
}

type call struct {
	at     time.Time
	method string
	path   string
	status int64 // 0 until answered
	// retryAfter is a 429's Retry-After
	retryAfter time.Duration
}

func watchTraffic(t *testing.T, ctx context.Context) *traffic {
	t.Helper()
	tr := &traffic{byID: map[network.RequestID]int{}}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			u, err := url.Parse(e.Request.URL)
			if err != nil || !strings.HasPrefix(u.Path, "/api/") {
				return
			}
			tr.byID[e.RequestID] = len(tr.calls)
			tr.calls = append(tr.calls, call{at: time.Now(), method: e.Request.Method, path: u.Path})
		case *network.EventResponseReceived:
			if i, ok := tr.byID[e.RequestID]; ok {
				tr.calls[i].status = e.Response.Status
				for k, v := range e.Response.Headers {
					if s, ok := v.(string); ok && strings.EqualFold(k, "Retry-After") {
						secs, _ := strconv.Atoi(s)
						tr.calls[i].retryAfter = time.Duration(secs) * time.Second
					}
				}
			}
		case *network.EventWebSocketCreated:
			tr.wsOpened = append(tr.wsOpened, time.Now())
		case *network.EventWebSocketClosed:
			tr.wsClosed++
		case *network.EventWebSocketFrameReceived:
			tr.frames++
		}
	}))
	return tr
}

func (tr *traffic) snapshot() (calls []call, wsOpened []time.Time, wsClosed, frames int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]call(nil), tr.calls...), append([]time.Time(nil), tr.wsOpened...), tr.wsClosed, tr.frames
}

// challengeRecorder runs before the page's own scripts and notes each
// state the challenge view is shown in (title, the progress bar's value
// attribute, its accessible name), so a solve too quick to poll for is
// still seen.
const challengeRecorder = `(() => {
  const seen = window.__challengeSeen = [];
  const look = () => {
    const v = document.getElementById("view-challenge");
    if (!v || !v.checkVisibility()) return;
    const bar = document.getElementById("pow-progress");
    const label = document.getElementById(bar.getAttribute("aria-labelledby") || "");
    const entry = JSON.stringify({
      title: document.getElementById("challenge-title").textContent,
      bar: bar.checkVisibility() ? bar.getAttribute("value") : "hidden",
      tag: bar.tagName, name: label ? label.textContent : "",
    });
    if (seen[seen.length - 1] !== entry) seen.push(entry);
  };
  new MutationObserver(look).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
})()`

// TestBrowserProofOfWork: a sale that asks for proof of work. The page
// fetches the challenge, solves it in the Web Worker with a progress bar
// that moves (at 30 bits, which it cannot finish, so the bar is seen
// moving), cancels from the keyboard; then, at 10 bits, solves it and
// waits in line with a position. All at 360 px with no sideways scroll.
func TestBrowserProofOfWork(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Pow drop", "stock": 5, "admission_rate": 0.001})["id"].(string)
	for _, u := range []string{"ahead-1", "ahead-2"} {
		r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, u), nil)
		require.Equal(t, http.StatusOK, r.Status, "join %s: %s", u, r.Body)
	}
	patch := func(fields map[string]any) {
		t.Helper()
		r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, fields)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	}
	patch(map[string]any{"join_challenge": "pow", "pow_difficulty": 30})

	ctx := newBrowser(t)
	phone(t, ctx)
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: challengeRecorder})
	require.NoError(t, err)
	const user = "browser-pow"
	signIn(t, ctx, s, id, user)

	triedJS := `(() => { const m = ` + textJS("pow-status") + `.match(/tried ([\d,.\s  ]+) answers/);` +
		` return m ? Number(m[1].replace(/\D/g, "")) : 0; })()`
	waitFor[bool](t, ctx, 20*time.Second, "the challenge view", visibleJS("view-challenge")+` && `+visibleJS("pow-progress"))
	require.Equal(t, "Checking your browser…", eval[string](t, ctx, textJS("challenge-title")))
	first := waitFor[int](t, ctx, 10*time.Second, "the worker's progress", triedJS)
	waitFor[bool](t, ctx, 10*time.Second, "the progress bar to move",
		`document.getElementById("pow-progress").hasAttribute("value") && document.getElementById("pow-progress").value > 0`)
	later := waitFor[int](t, ctx, 10*time.Second, "more progress", fmt.Sprintf(`(() => { const n = %s; return n > %d ? n : 0; })()`, triedJS, first))
	t.Logf("progress: %d tries, then %d", first, later)
	require.Equal(t, "PROGRESS", eval[string](t, ctx, `document.getElementById("pow-progress").tagName`), "a progress element: role progressbar")
	require.False(t, eval[bool](t, ctx, visibleJS("join")), "no Join button while solving")
	checkPage(t, ctx, "solving")

	press(t, ctx, "#challenge-cancel")
	waitFor[bool](t, ctx, 10*time.Second, "the join view after Cancel", visibleJS("view-join")+` && `+visibleJS("join"))
	require.False(t, eval[bool](t, ctx, visibleJS("view-challenge")))
	st := s.Do(t, "GET", "/api/v1/sales/"+id+"/status", s.UserToken(t, user), nil)
	require.Equal(t, http.StatusNotFound, st.Status, "cancelled: not in line: %s", st.Body)

	patch(map[string]any{"pow_difficulty": 10})
	eval[bool](t, ctx, `window.__challengeSeen.length = 0, true`)
	press(t, ctx, "#join")
	pos := waitFor[int](t, ctx, 20*time.Second, "a position after the proof of work", positionJS)
	require.Contains(t, []int{2, 3}, pos, "two shoppers joined ahead (the first may be admitted)")
	require.True(t, eval[bool](t, ctx, `!!document.getElementById("position").closest('[role="status"]')`),
		"the position is in a status region")
	require.False(t, eval[bool](t, ctx, visibleJS("error")), "error: %s", eval[string](t, ctx, textJS("error")))
	seen := eval[[]string](t, ctx, `window.__challengeSeen`)
	t.Logf("the challenge view at 10 bits: %v", seen)
	require.NotEmpty(t, seen, "the challenge view was shown")
	require.Contains(t, seen[0], `"title":"Checking your browser…"`)
	require.Contains(t, seen[0], `"tag":"PROGRESS","name":"Checking your browser…"`, "the bar is named by the heading")
	require.Contains(t, seen[len(seen)-1], `"bar":"100"`, "the bar is full once solved")
	checkPage(t, ctx, "waiting")

	st = s.Do(t, "GET", "/api/v1/sales/"+id+"/status", s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, st.Status, "%s", st.Body)
	require.Equal(t, "waiting", st.JSON(t)["state"])
}

// TestBrowserCaptcha: a sale that asks for a captcha. With no network
// here, the widget's place is a labelled placeholder and the token goes
// into "Captcha token", typed and sent with the keyboard. A refused token
// gets one more try with a fresh challenge, a second refusal says so in
// words; a good token joins. The verifier is a local httptest server
// speaking the siteverify protocol, a stand-in for Cloudflare Turnstile.
func TestBrowserCaptcha(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	var mu sync.Mutex
	var responses []string
	verifier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		responses = append(responses, r.PostForm.Get("response"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("secret") == "test-secret" && r.PostForm.Get("response") == "good-token" {
			_, _ = w.Write([]byte(`{"success":true}`))
			return
		}
		_, _ = w.Write([]byte(`{"success":false,"error-codes":["invalid-input-response"]}`))
	}))
	t.Cleanup(verifier.Close)
	s := testenv.Start(t, func(c *node.Config) {
		c.Dev = true
		c.SampleSale = false
		c.CaptchaVerifyURL, c.CaptchaSecret, c.CaptchaSiteKey = verifier.URL, "test-secret", "test-site-key"
	})
	id := s.CreateSale(t, map[string]any{"name": "Captcha drop", "join_challenge": "captcha", "admission_rate": 0.001})["id"].(string)
	r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, "ahead"), map[string]any{"captcha": "good-token"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	ctx := newBrowser(t)
	phone(t, ctx)
	signIn(t, ctx, s, id, "browser-captcha")
	waitFor[bool](t, ctx, 20*time.Second, "the captcha", visibleJS("captcha-box")+` && `+visibleJS("captcha-token"))
	require.Equal(t, "Show that you are a person", eval[string](t, ctx, textJS("challenge-title")))
	require.Equal(t, "test-site-key", eval[string](t, ctx, `document.getElementById("captcha-widget").dataset.sitekey`))
	require.True(t, eval[bool](t, ctx, visibleJS("captcha-widget")), "the widget's place is shown")
	require.Contains(t, eval[string](t, ctx, textJS("captcha-widget-label")), "Captcha", "the placeholder is labelled")
	require.Equal(t, "Captcha token", eval[string](t, ctx, `document.querySelector('label[for="captcha-token"]').textContent`))
	require.False(t, eval[bool](t, ctx, visibleJS("pow-box")))
	checkPage(t, ctx, "captcha")

	sendToken := func(token string) {
		t.Helper()
		tabTo(t, ctx, "#captcha-token")
		do(t, ctx, "type the token and press Enter", chromedp.KeyEvent(token), chromedp.KeyEvent(kb.Enter))
	}
	sendToken("wrong-token")
	waitFor[bool](t, ctx, 20*time.Second, "another try", textJS("error")+`.includes("did not pass")`)
	waitFor[bool](t, ctx, 20*time.Second, "the captcha again", visibleJS("captcha-token")+` && !document.getElementById("captcha-token").disabled`)
	sendToken("wrong-again")
	waitFor[bool](t, ctx, 20*time.Second, "the refusal in words", textJS("error")+`.includes("could not confirm that you are a person")`)
	require.True(t, eval[bool](t, ctx, visibleJS("join")), "the shopper may try again")
	require.False(t, eval[bool](t, ctx, visibleJS("view-challenge")))
	checkPage(t, ctx, "captcha refused")

	press(t, ctx, "#join")
	waitFor[bool](t, ctx, 20*time.Second, "the captcha after Join", visibleJS("captcha-token")+` && !document.getElementById("captcha-token").disabled`)
	sendToken("good-token")
	pos := waitFor[int](t, ctx, 20*time.Second, "a position", positionJS)
	require.Contains(t, []int{1, 2}, pos, "one shopper joined ahead (and may be admitted)")
	require.False(t, eval[bool](t, ctx, visibleJS("error")), "error: %s", eval[string](t, ctx, textJS("error")))
	mu.Lock()
	require.Equal(t, []string{"good-token", "wrong-token", "wrong-again", "good-token"}, responses,
		"the verifier saw each token once, in turn")
	mu.Unlock()
}

// TestBrowserBanned: an operator bans a waiting shopper. The page says so
// in final words, its socket is closed and it makes no call after; a
// reload says the same without opening a socket.
func TestBrowserBanned(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Ban drop", "admission_rate": 0.001})["id"].(string)
	r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, "ahead"), nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	ctx := newBrowser(t)
	phone(t, ctx)
	tr := watchTraffic(t, ctx)
	// The demo sign-in names the user as typed: that is the user id to ban.
	const user = "browser-mallory"
	signIn(t, ctx, s, id, user)
	waitFor[int](t, ctx, 20*time.Second, "a position", positionJS)
	testenv.Eventually(t, 10*time.Second, func() bool { _, opened, _, frames := tr.snapshot(); return len(opened) == 1 && frames > 0 },
		"the live socket")

	r = s.Do(t, "POST", "/api/v1/admin/bans", s.AdminToken, map[string]any{"user_id": user, "reason": "browser test"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	waitFor[bool](t, ctx, 5*time.Second, "the banned view", visibleJS("view-banned"))
	require.Contains(t, eval[string](t, ctx, textJS("view-banned")), "You can't join this sale.")
	require.Equal(t, "alert", eval[string](t, ctx, `document.getElementById("view-banned").getAttribute("role")`))
	for _, gone := range []string{"view-waiting", "join", "leave", "position"} {
		require.False(t, eval[bool](t, ctx, visibleJS(gone)), "%s shown to a banned shopper", gone)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { _, _, closed, _ := tr.snapshot(); return closed == 1 }, "the socket closed")
	checkPage(t, ctx, "banned")

	calls, opened, _, _ := tr.snapshot()
	require.Never(t, func() bool {
		now, again, _, _ := tr.snapshot()
		return len(now) != len(calls) || len(again) != len(opened)
	}, 3*time.Second, 100*time.Millisecond, "a banned page made another call or opened another socket")

	do(t, ctx, "reload", chromedp.Reload())
	waitFor[bool](t, ctx, 20*time.Second, "the banned view after a reload", visibleJS("view-banned"))
	after, again, _, _ := tr.snapshot()
	require.Len(t, again, len(opened), "no socket after a reload")
	var paths []string
	for _, c := range after[len(calls):] {
		paths = append(paths, fmt.Sprintf("%s %s %d", c.method, c.path, c.status))
	}
	require.Equal(t, []string{"GET /api/v1/sales/" + id + " 200", "GET /api/v1/sales/" + id + "/status 403"}, paths)
}

// TestBrowserOperatorMessage: the operator's message shows on the waiting
// page, from the sale when the page loads and from the socket within a
// couple of seconds when it changes; "" takes it down.
func TestBrowserOperatorMessage(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "Message drop", "admission_rate": 0.001})["id"].(string)
	r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, "ahead"), nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	say := func(text string) {
		t.Helper()
		r := s.Do(t, "POST", "/api/v1/admin/sales/"+id+"/message", s.AdminToken, map[string]any{"text": text})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	}
	say("Doors open at 18:00.")

	ctx := newBrowser(t)
	phone(t, ctx)
	do(t, ctx, "open the waiting page", chromedp.Navigate(s.URL+"/sales/"+id))
	waitFor[bool](t, ctx, 10*time.Second, "the message from the sale", textJS("message-text")+` === "Doors open at 18:00."`)
	require.True(t, eval[bool](t, ctx, visibleJS("message")))
	require.Equal(t, "Message from the shop", eval[string](t, ctx, textJS("message-title")))
	require.Equal(t, "status", eval[string](t, ctx, `document.getElementById("message").parentElement.getAttribute("role")`),
		"the message is in a live region")

	do(t, ctx, "sign in",
		clear("signin-user"),
		chromedp.SendKeys(chromedp.ID("signin-user"), "browser-reader"),
	)
	click(t, ctx, "#signin")
	waitFor[int](t, ctx, 20*time.Second, "a position", positionJS)

	say("Only 3 left per customer — thank you for waiting!")
	waitFor[bool](t, ctx, 3*time.Second, "the new message", visibleJS("message")+` && `+textJS("message-text")+` === "Only 3 left per customer — thank you for waiting!"`)
	checkPage(t, ctx, "message")
	say("")
	waitFor[bool](t, ctx, 3*time.Second, "the message taken down", `!`+visibleJS("message"))
	require.Equal(t, "", eval[string](t, ctx, textJS("message-text")))
	require.Positive(t, eval[int](t, ctx, positionJS), "the shopper still waits")
}

// TestBrowserRateLimited: on a node with tight limits per address, the
// page's sign-in, status, join and socket meet 429 and 4429. It says
// "Busy — retrying in N s", waits Retry-After (and 3 s or more after a
// 4429) before each next try, and ends up waiting with a live socket:
// a handful of calls in all, never a storm.
func TestBrowserRateLimited(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := testenv.Start(t, func(c *node.Config) {
		c.Dev = true
		c.SampleSale = false
		c.IPRate, c.IPBurst = 0.5, 1 // one call per 2 s from the browser's address
	})
	id := s.CreateSale(t, map[string]any{"name": "Busy drop", "admission_rate": 0.001})["id"].(string)
	r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, "ahead"), nil) // a user token from the test: the limit is the page's
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	ctx := newBrowser(t)
	phone(t, ctx)
	tr := watchTraffic(t, ctx)
	signIn(t, ctx, s, id, "browser-busy")
	waitFor[bool](t, ctx, 10*time.Second, "the busy notice", visibleJS("retry-notice"))
	notice := eval[string](t, ctx, `document.getElementById("retry-notice").textContent.replace(/\s+/g, " ").trim()`)
	require.Regexp(t, `^Busy — retrying in [1-9]\d* s\.`, notice)
	require.Equal(t, "status", eval[string](t, ctx, `document.getElementById("retry-notice").getAttribute("role")`))
	checkPage(t, ctx, "busy")

	waitFor[int](t, ctx, 40*time.Second, "a position", positionJS)
	testenv.Eventually(t, 40*time.Second, func() bool {
		_, _, _, frames := tr.snapshot()
		return frames > 0
	}, "a live socket")
	waitFor[bool](t, ctx, 10*time.Second, "the busy notice gone", `!`+visibleJS("retry-notice"))

	all, opened, _, _ := tr.snapshot()
	var calls []call // the limited ones: the public sale is not
	var log []string
	for _, c := range all {
		log = append(log, fmt.Sprintf("%6.2fs %s %s %d", c.at.Sub(all[0].at).Seconds(), c.method, c.path, c.status))
		if c.path != "/api/v1/sales/"+id {
			calls = append(calls, c)
		}
	}
	var refused int
	for i, c := range calls {
		if c.status != http.StatusTooManyRequests {
			continue
		}
		refused++
		require.Positive(t, c.retryAfter, "a 429 without Retry-After")
		if i+1 < len(calls) {
			require.GreaterOrEqual(t, calls[i+1].at.Sub(c.at), c.retryAfter-100*time.Millisecond,
				"a call came before Retry-After (%s) had passed:\n%s", c.retryAfter, strings.Join(log, "\n"))
		}
	}
	for i := 1; i < len(opened); i++ {
		require.GreaterOrEqual(t, opened[i].Sub(opened[i-1]), 2900*time.Millisecond, "a socket reopened within 3 s of the last")
	}
	t.Logf("calls:\n%s\nsockets opened: %d", strings.Join(log, "\n"), len(opened))
	require.Positive(t, refused, "the limits were met (else this test proves nothing)")
	// status on load, dev token, status, join: each refused once at most
	require.LessOrEqual(t, len(calls), 8, "a storm of calls:\n%s", strings.Join(log, "\n"))
	require.LessOrEqual(t, len(opened), 4, "a storm of sockets")
}

// TestBrowserConsoleDefences drives the console's defences: the join
// challenge settings (a 422 shown by its field), the message box, the
// sources table with its "Ban this prefix" (confirmed in the browser's
// dialog), the bans list, adding a ban by user and lifting bans; each is
// checked through the API.
func TestBrowserConsoleDefences(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	lo, err := clientaddr.Parse("127.0.0.1/32")
	require.NoError(t, err)
	s := testenv.Start(t, func(c *node.Config) {
		c.Dev = true
		c.SampleSale = false
		c.TrustedProxies = lo // the joins below come from three prefixes, as through a proxy
	})
	id := s.CreateSale(t, map[string]any{"name": "Console defences", "admission_rate": 0.001})["id"].(string)
	joinFrom := func(user, addr string) {
		t.Helper()
		r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, user), nil, "X-Forwarded-For", addr)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	}
	for i := range 4 {
		joinFrom(fmt.Sprintf("bot-%d", i), fmt.Sprintf("198.51.100.%d", 10+i))
	}
	joinFrom("honest-1", "203.0.113.5")

	ctx := newBrowser(t)
	var dialogs atomic.Value
	dialogs.Store([]string{})
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Store(append(dialogs.Load().([]string), e.Message))
			// Accept as the operator would press OK (no command may run in here).
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	}))
	do(t, ctx, "sign in",
		chromedp.Navigate(s.URL+"/admin#"+url.PathEscape(id)),
		chromedp.WaitVisible(chromedp.ID("admin-token")),
		chromedp.SendKeys(chromedp.ID("admin-token"), s.AdminToken),
	)
	click(t, ctx, "#admin-signin")
	waitFor[bool](t, ctx, 10*time.Second, "the sale's view", visibleJS("detail")+` && `+textJS("detail-id")+` === `+jsString(id))
	sale := func() map[string]any { return adminGet(t, s, "/sales/"+id) }

	// The join defences.
	require.Equal(t, "none", eval[string](t, ctx, `document.getElementById("join-challenge").value`))
	require.Equal(t, "18", eval[string](t, ctx, `document.getElementById("pow-difficulty").value`))
	do(t, ctx, "ask for proof of work",
		chromedp.SetValue(chromedp.ID("join-challenge"), "pow"),
		clear("pow-difficulty"), chromedp.SendKeys(chromedp.ID("pow-difficulty"), "12"),
		clear("max-users-per-ip"), chromedp.SendKeys(chromedp.ID("max-users-per-ip"), "5"),
	)
	press(t, ctx, "#save-defences")
	waitFor[bool](t, ctx, 10*time.Second, "saved", textJS("defences-status")+`.startsWith("Saved")`)
	got := sale()
	require.Equal(t, "pow", got["join_challenge"])
	require.EqualValues(t, 12, got["pow_difficulty"])
	require.EqualValues(t, 5, got["max_users_per_ip"])

	do(t, ctx, "a difficulty out of range", clear("pow-difficulty"), chromedp.SendKeys(chromedp.ID("pow-difficulty"), "31"))
	click(t, ctx, "#save-defences")
	waitFor[bool](t, ctx, 10*time.Second, "the 422 by its field", visibleJS("pow-difficulty-error"))
	require.Contains(t, eval[string](t, ctx, textJS("pow-difficulty-error")), "pow_difficulty: must be between 1 and 30")
	require.Equal(t, "true", eval[string](t, ctx, `document.getElementById("pow-difficulty").getAttribute("aria-invalid")`))
	require.Equal(t, "pow-difficulty-error", eval[string](t, ctx, `document.getElementById("pow-difficulty").getAttribute("aria-describedby")`))
	require.EqualValues(t, 12, sale()["pow_difficulty"], "a refused PATCH changes nothing")
	checkPage(t, ctx, "a field's error")

	do(t, ctx, "a captcha, which this node has no verifier for",
		clear("pow-difficulty"), chromedp.SendKeys(chromedp.ID("pow-difficulty"), "12"),
		chromedp.SetValue(chromedp.ID("join-challenge"), "captcha"))
	click(t, ctx, "#save-defences")
	waitFor[bool](t, ctx, 10*time.Second, "the 422 by the select", visibleJS("join-challenge-error"))
	require.Contains(t, eval[string](t, ctx, textJS("join-challenge-error")), "--captcha-verify-url")
	require.False(t, eval[bool](t, ctx, visibleJS("pow-difficulty-error")), "the last error is cleared")
	require.Equal(t, "pow", sale()["join_challenge"])
	do(t, ctx, "back to none", chromedp.SetValue(chromedp.ID("join-challenge"), "none"))
	click(t, ctx, "#save-defences")
	waitFor[bool](t, ctx, 10*time.Second, "saved", `!`+visibleJS("join-challenge-error")+` && `+textJS("defences-status")+`.startsWith("Saved")`)
	require.Equal(t, "none", sale()["join_challenge"])

	// The message box.
	do(t, ctx, "write a message", chromedp.SendKeys(chromedp.ID("message-text"), "Back in 5 minutes"))
	press(t, ctx, "#message-post")
	waitFor[bool](t, ctx, 10*time.Second, "posted", textJS("message-status")+`.startsWith("Posted")`)
	msg, _ := sale()["message"].(map[string]any)
	require.Equal(t, "Back in 5 minutes", msg["text"])
	require.Contains(t, eval[string](t, ctx, textJS("message-current")), "Back in 5 minutes")
	click(t, ctx, "#message-clear")
	waitFor[bool](t, ctx, 10*time.Second, "cleared", textJS("message-status")+`.startsWith("Cleared")`)
	require.Nil(t, sale()["message"])
	require.Equal(t, "No message.", eval[string](t, ctx, textJS("message-current")))

	// The sources, and a ban of the top one.
	const bots = "198.51.100.0/24"
	banButton := `#sources-body tr:first-child button`
	waitFor[bool](t, ctx, 10*time.Second, "the sources", `document.querySelectorAll("#sources-body tr").length === 2`)
	require.Equal(t, []string{bots, "4", "4", "Ban this prefix " + bots}, eval[[]string](t, ctx,
		`[...document.querySelectorAll("#sources-body tr:first-child td")].map((td) => td.textContent.trim())`))
	require.Equal(t, "203.0.113.0/24", eval[string](t, ctx, `document.querySelector("#sources-body tr:nth-child(2) td").textContent`))
	press(t, ctx, banButton)
	waitFor[bool](t, ctx, 10*time.Second, "the ban made", textJS("sources-status")+` === "Banned `+bots+` from this sale."`)
	require.Len(t, dialogs.Load().([]string), 1)
	require.Contains(t, dialogs.Load().([]string)[0], "Ban "+bots+" from sale "+id+"?")
	bans := adminGet(t, s, "/bans")["bans"].([]any)
	require.Len(t, bans, 1)
	ban := bans[0].(map[string]any)
	require.Equal(t, bots, ban["ip"])
	require.Equal(t, id, ban["sale_id"])
	testenv.Eventually(t, 5*time.Second, func() bool {
		r := s.Do(t, "GET", "/api/v1/sales/"+id+"/status", s.UserToken(t, "bot-1"), nil, "X-Forwarded-For", "198.51.100.11")
		return r.Code(t) == "banned"
	}, "the ban acts on the prefix")
	waitFor[bool](t, ctx, 10*time.Second, "the ban listed",
		`[...document.querySelectorAll("#bans-body tr")].some((tr) => tr.textContent.includes("address `+bots+`") && tr.textContent.includes(`+jsString(id)+`))`)

	// Adding a ban: a bad address is refused by its field, then a user.
	do(t, ctx, "a bad address", chromedp.SendKeys(chromedp.ID("ban-ip"), "not-an-address"))
	click(t, ctx, "#ban-add")
	waitFor[bool](t, ctx, 10*time.Second, "the 422 by the address", visibleJS("ban-ip-error"))
	require.Contains(t, eval[string](t, ctx, textJS("ban-ip-error")), "ip:")
	do(t, ctx, "a user instead",
		clear("ban-ip"),
		chromedp.SendKeys(chromedp.ID("ban-user"), "auth0|scalper"),
		chromedp.SendKeys(chromedp.ID("ban-ttl"), "3600"),
		chromedp.SendKeys(chromedp.ID("ban-reason"), "resells"),
	)
	click(t, ctx, "#ban-add")
	waitFor[bool](t, ctx, 10*time.Second, "the user banned", textJS("bans-status")+` === "Banned user auth0|scalper."`)
	require.False(t, eval[bool](t, ctx, visibleJS("ban-ip-error")))
	waitFor[bool](t, ctx, 10*time.Second, "two bans listed", `document.querySelectorAll("#bans-body tr").length === 2`)
	var userBan map[string]any
	for _, b := range adminGet(t, s, "/bans")["bans"].([]any) {
		if b.(map[string]any)["user_id"] == "auth0|scalper" {
			userBan = b.(map[string]any)
		}
	}
	require.NotNil(t, userBan)
	checkPage(t, ctx, "bans listed")
	require.Equal(t, "resells", userBan["reason"])
	require.Nil(t, userBan["sale_id"])
	exp, err := time.Parse(time.RFC3339, userBan["expires_at"].(string))
	require.NoError(t, err)
	require.InDelta(t, 3600, time.Until(exp).Seconds(), 60)

	// Lifting both.
	for _, target := range []string{"address " + bots, "user auth0|scalper"} {
		lift := fmt.Sprintf(`#bans-body button[data-key=%s]`, jsString("Lift ban "+target))
		waitFor[bool](t, ctx, 10*time.Second, "the lift button of "+target,
			fmt.Sprintf(`(() => { const b = document.querySelector(%s); return !!b && b.textContent === %s; })()`, jsString(lift), jsString("Lift ban "+target)))
		press(t, ctx, lift)
		waitFor[bool](t, ctx, 10*time.Second, "lifted", textJS("bans-status")+` === `+jsString("Lifted the ban on "+target+"."))
	}
	waitFor[bool](t, ctx, 10*time.Second, "no bans", visibleJS("no-bans")+` && document.querySelectorAll("#bans-body tr").length === 0`)
	require.Empty(t, adminGet(t, s, "/bans")["bans"])
	require.Len(t, dialogs.Load().([]string), 3, "each lift was confirmed")
	require.Contains(t, dialogs.Load().([]string)[2], "Lift the ban on user auth0|scalper?")

	phone(t, ctx)
	checkPage(t, ctx, "the console's sale view")
}
