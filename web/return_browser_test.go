package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/shopticket"
	"github.com/flashsale/flashsale/testenv"
)

// Back to the shop (issue 12; DESIGN.md, "Shop integration" → "Back to
// the shop") and the operator's pass link, in headless Chromium against a
// whole node: the admitted shopper's page offers "Continue to the shop",
// counts down, and goes to the sale's return_url with fs_ticket, where a
// shop on another loopback port checks the ticket with package shopticket.

// shopSite is a shop's landing page on its own loopback port, behind
// shopticket's middleware (JWKS = the node's), answering "Welcome <sub>,
// ticket for <sale>" from the verified claims; with no good ticket the
// middleware answers its 401/403 JSON instead.
type shopSite struct {
	URL string
}

func newShopSite(t *testing.T, s *testenv.Server, saleID string) *shopSite {
	t.Helper()
	v, err := shopticket.New(shopticket.Config{
		JWKSURL: s.URL + "/.well-known/jwks.json",
		Sale:    saleID,
		Logger:  slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err, "the shop's verifier")
	t.Cleanup(v.Close)
	land := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := shopticket.FromContext(r.Context())
		if !ok {
			http.Error(w, "no claims in the context", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><title>The shop</title></head><body>`+
			`<h1 id="welcome">Welcome %s, ticket for %s</h1><p id="from">%s</p></body></html>`,
			html.EscapeString(c.User), html.EscapeString(c.Sale), html.EscapeString(r.URL.Query().Get("from")))
	})
	srv := httptest.NewServer(v.Middleware(land))
	t.Cleanup(srv.Close)
	return &shopSite{URL: srv.URL}
}

// returnSale starts a node with a sale that admits at once, a shop for
// it, and sets the sale's return_url (with a query and a fragment of its
// own, which the page must keep) through the operator API; the public
// sale shows it.
func returnSale(t *testing.T) (s *testenv.Server, id string, shop *shopSite, returnURL string) {
	t.Helper()
	s = devNode(t)
	id = s.CreateSale(t, map[string]any{"name": "Shop drop", "stock": 20, "admission_rate": 50})["id"].(string)
	shop = newShopSite(t, s, id)
	returnURL = shop.URL + "/welcome?from=flashsale#top"
	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"return_url": returnURL})
	require.Equal(t, http.StatusOK, r.Status, "set return_url: %s", r.Body)
	require.Equal(t, returnURL, r.JSON(t)["return_url"])
	// The public sale is cached for up to a second per node.
	testenv.Eventually(t, 5*time.Second, func() bool {
		return s.Do(t, "GET", "/api/v1/sales/"+id, "", nil).JSON(t)["return_url"] == returnURL
	}, "the public sale shows return_url")
	return s, id, shop, returnURL
}

// navigations records why the tab navigated (Page.frameRequestedNavigation
// reasons: "anchorClick" for a followed link, "scriptInitiated" for
// location.assign) by destination origin.
type navigations struct {
	mu      sync.Mutex
	reasons map[string][]string
}

func watchNavigations(t *testing.T, ctx context.Context) *navigations {
	t.Helper()
	n := &navigations{reasons: map[string][]string{}}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		e, ok := ev.(*page.EventFrameRequestedNavigation)
		if !ok {
			return
		}
		u, err := url.Parse(e.URL)
		if err != nil {
			return
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		origin := u.Scheme + "://" + u.Host
		n.reasons[origin] = append(n.reasons[origin], string(e.Reason))
	}))
	return n
}

func (n *navigations) to(origin string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.reasons[origin]...)
}

// admittedWithShop signs user in on a 360 px tab (which joins) and waits
// for the admitted view with the shop's link and its countdown.
func admittedWithShop(t *testing.T, s *testenv.Server, id, user string) (context.Context, *navigations) {
	t.Helper()
	ctx := newBrowser(t)
	phone(t, ctx)
	nav := watchNavigations(t, ctx)
	signIn(t, ctx, s, id, user)
	waitFor[bool](t, ctx, 20*time.Second, "the admitted view with Continue to the shop",
		visibleJS("buy")+` && `+visibleJS("shop-link"))
	return ctx, nav
}

const (
	shopSecondsJS = `parseInt(` + `((document.getElementById("shop-seconds") || {}).textContent || "")` + `, 10) || 0`
	shopSpokenJS  = `((document.getElementById("shop-spoken") || {}).textContent || "")`
)

// waitAcross waits until the JavaScript expression is true in the tab,
// asking again on each try: unlike waitFor (chromedp's Poll), it carries
// on when the page navigates meanwhile.
func waitAcross(t *testing.T, ctx context.Context, within time.Duration, what, expr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		return err == nil && v
	}, within, 100*time.Millisecond, "waiting for %s (%s)", what, expr)
}

// waitLanded waits until the tab shows the shop's page.
func waitLanded(t *testing.T, ctx context.Context, shop *shopSite) {
	t.Helper()
	waitAcross(t, ctx, 15*time.Second, "the shop's page",
		`location.origin === `+jsString(shop.URL)+` && !!document.getElementById("welcome")`)
}

// checkShopLink checks the link's accessible name and where it goes: the
// return_url with its own query and fragment, plus fs_ticket = the ticket.
func checkShopLink(t *testing.T, ctx context.Context, returnURL string) {
	t.Helper()
	require.Contains(t, eval[string](t, ctx, `(() => { const a = document.getElementById("shop-link");
		return a.getAttribute("aria-label") || a.textContent; })()`), "Continue", "the link's accessible name")
	require.Equal(t, "Continue to the shop", eval[string](t, ctx, textJS("shop-link")))
	href, err := url.Parse(eval[string](t, ctx, `document.getElementById("shop-link").href`))
	require.NoError(t, err)
	want, err := url.Parse(returnURL)
	require.NoError(t, err)
	require.Equal(t, want.Scheme+"://"+want.Host+want.Path, href.Scheme+"://"+href.Host+href.Path)
	require.Equal(t, "top", href.Fragment, "the return_url's fragment is kept")
	q := href.Query()
	require.Equal(t, "flashsale", q.Get("from"), "the return_url's query is kept")
	require.Len(t, strings.Split(q.Get("fs_ticket"), "."), 3, "fs_ticket is the ticket (a JWT): %s", href)
}

// TestBrowserReturnToShop: admitted in a sale with a return_url, the page
// shows "Continue to the shop" and a countdown, says so once in a status
// region (not every second), and goes to the shop by itself, which
// verifies the ticket offline and greets the shopper. Back on the waiting
// page, it does not count down again for the same ticket.
func TestBrowserReturnToShop(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s, id, shop, returnURL := returnSale(t)
	const user = "return-auto"
	ctx, nav := admittedWithShop(t, s, id, user)

	checkShopLink(t, ctx, returnURL)
	first := waitFor[int](t, ctx, 5*time.Second, "the countdown", visibleJS("shop-auto")+` && `+shopSecondsJS)
	require.LessOrEqual(t, first, 5)
	require.True(t, eval[bool](t, ctx, visibleJS("buy")), "Buy stays for shops that use our checkout")
	said := eval[string](t, ctx, shopSpokenJS)
	require.Contains(t, said, "Taking you to the shop in 5 seconds", "the countdown is announced")
	require.Contains(t, said, "Stay here", "the announcement says how to stay")
	require.Equal(t, "status", eval[string](t, ctx, `document.getElementById("shop-spoken").getAttribute("role")`))
	require.Nil(t, eval[any](t, ctx, `document.getElementById("shop-seconds").closest("[role=status], [aria-live]")`),
		"the ticking seconds are not in a live region")
	eval[bool](t, ctx, `(() => { window.__spokenChanges = 0;
		new MutationObserver(() => window.__spokenChanges++).observe(document.getElementById("shop-spoken"),
			{ childList: true, characterData: true, subtree: true });
		return true; })()`)
	if first >= 3 {
		waitFor[int](t, ctx, 5*time.Second, "the countdown to go down",
			fmt.Sprintf(`(() => { const n = %s; return n >= 1 && n < %d ? n : 0; })()`, shopSecondsJS, first))
		require.Zero(t, eval[int](t, ctx, `window.__spokenChanges`), "the countdown is announced once, not every second")
	}

	waitLanded(t, ctx, shop)
	require.Equal(t, "Welcome "+user+", ticket for "+id, eval[string](t, ctx, textJS("welcome")), "the shop verified the ticket")
	require.Equal(t, "flashsale", eval[string](t, ctx, textJS("from")))
	require.Equal(t, "#top", eval[string](t, ctx, `location.hash`))
	require.Equal(t, []string{"scriptInitiated"}, nav.to(shop.URL), "the countdown took the shopper there")

	// The ticket the shop got is the one the node issued this shopper.
	u, err := url.Parse(eval[string](t, ctx, `location.href`))
	require.NoError(t, err)
	st := s.Do(t, "GET", "/api/v1/sales/"+id+"/status", s.UserToken(t, user), nil).JSON(t)
	require.Equal(t, "admitted", st["state"])
	require.Equal(t, st["ticket"], u.Query().Get("fs_ticket"))

	do(t, ctx, "go back to the waiting page", chromedp.Evaluate[chromedp.Void](`history.back()`))
	waitAcross(t, ctx, 20*time.Second, "the admitted view again", `location.origin === `+jsString(s.URL)+` && `+
		visibleJS("buy")+` && `+visibleJS("shop-link"))
	require.False(t, eval[bool](t, ctx, visibleJS("shop-auto")), "no second countdown for the same ticket")
	require.Equal(t, "", eval[string](t, ctx, shopSpokenJS))
	checkShopLink(t, ctx, returnURL)
}

// TestBrowserReturnStayHere: during the countdown (checked with axe-core
// at 360 px) the shopper presses "Stay here": the countdown stops, the
// page says they stay (once, in the status region), the focus goes to the
// link, and the page stays put past the countdown's end, Buy still there.
func TestBrowserReturnStayHere(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s, id, shop, returnURL := returnSale(t)
	ctx, nav := admittedWithShop(t, s, id, "return-stay")

	waitFor[bool](t, ctx, 5*time.Second, "the countdown", visibleJS("shop-auto")+` && `+visibleJS("shop-stay"))
	checkPage(t, ctx, "admitted-return-countdown")
	require.Equal(t, s.URL, eval[string](t, ctx, `location.origin`),
		"the page went to the shop while being checked (axe-core took over 5 s)")
	click(t, ctx, "#shop-stay")
	waitFor[bool](t, ctx, 5*time.Second, "the countdown gone", `!`+visibleJS("shop-auto")+` && `+visibleJS("shop-stayed"))
	require.Contains(t, eval[string](t, ctx, textJS("shop-stayed")), "You stay on this page")
	require.Contains(t, eval[string](t, ctx, shopSpokenJS), "You stay on this page", "staying is said")
	require.True(t, eval[bool](t, ctx, `document.activeElement === document.getElementById("shop-link")`),
		"the focus moves to the link, not to the page's top")
	checkShopLink(t, ctx, returnURL)
	checkPage(t, ctx, "admitted-return-stayed")

	require.Never(t, func() bool {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.origin`))
		return err != nil || v != s.URL
	}, 7*time.Second, 200*time.Millisecond, "the page left after Stay here")
	require.Empty(t, nav.to(shop.URL))
	require.True(t, eval[bool](t, ctx, visibleJS("buy")), "Buy is still offered")
	require.True(t, eval[bool](t, ctx, visibleJS("shop-link")), "the link is still offered")
}

// TestBrowserReturnKeyboard: a keyboard user tabs to "Continue to the
// shop" and presses Enter: the link itself goes (an anchor click, not the
// countdown), and the shop verifies the ticket.
func TestBrowserReturnKeyboard(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s, id, shop, _ := returnSale(t)
	const user = "return-keys"
	ctx, nav := admittedWithShop(t, s, id, user)

	press(t, ctx, "#shop-link")
	waitLanded(t, ctx, shop)
	require.Equal(t, "Welcome "+user+", ticket for "+id, eval[string](t, ctx, textJS("welcome")))
	require.Equal(t, []string{"anchorClick"}, nav.to(shop.URL), "the link took the shopper there at once")
}

// oddReturnProxy stands between the browser and a node as a compromised
// or buggy proxy might, and rewrites the public sale's return_url (the
// server itself only stores https, or http on a loopback host) to odd[sale].
func oddReturnProxy(t *testing.T, s *testenv.Server, odd map[string]string) string {
	t.Helper()
	target, err := url.Parse(s.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	director := proxy.Director
	proxy.Director = func(r *http.Request) {
		director(r)
		r.Header.Del("Accept-Encoding") // the body is rewritten as plain JSON
	}
	proxy.ModifyResponse = func(res *http.Response) error {
		sale, ok := strings.CutPrefix(res.Request.URL.Path, "/api/v1/sales/")
		value, rewrite := odd[sale]
		if !ok || !rewrite || res.Request.Method != http.MethodGet || res.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		m["return_url"] = value
		if body, err = json.Marshal(m); err != nil {
			return err
		}
		res.Body = io.NopCloser(bytes.NewReader(body))
		res.ContentLength = int64(len(body))
		res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		res.Header.Del("ETag")
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestBrowserReturnRefusesOddURLs: whatever return_url an answer carries,
// the page goes only to https, or http on a loopback host: a javascript:
// or data: URL, plain http to another host, or a relative path shows no
// link and no countdown, and the page stays (Buy is offered as without a
// return_url).
func TestBrowserReturnRefusesOddURLs(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	odd := map[string]string{}
	var ids []string
	for _, u := range []string{
		"javascript:window.__went=1//https://shop.example/",
		"data:text/html,<h1>not the shop</h1>",
		"http://shop.example/welcome",
		"/welcome",
	} {
		id := s.CreateSale(t, map[string]any{"name": "Odd return", "admission_rate": 50})["id"].(string)
		odd[id] = u
		ids = append(ids, id)
	}
	base := oddReturnProxy(t, s, odd)
	r, err := http.Get(base + "/api/v1/sales/" + ids[0])
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
	r.Body.Close()
	require.Equal(t, odd[ids[0]], got["return_url"], "the proxy rewrites the sale")

	browser := newBrowser(t)
	var tabs []context.Context
	for i, id := range ids {
		ctx, cancel := chromedp.NewContext(browser) // a tab of its own: its own sessionStorage
		t.Cleanup(cancel)
		do(t, ctx, "open the waiting page through the proxy",
			chromedp.Navigate(base+"/sales/"+id),
			chromedp.WaitVisible(chromedp.ID("signin-user")),
			clear("signin-user"),
			chromedp.SendKeys(chromedp.ID("signin-user"), fmt.Sprintf("odd-%d", i)),
		)
		click(t, ctx, "#signin")
		tabs = append(tabs, ctx)
	}
	for i, ctx := range tabs {
		waitFor[bool](t, ctx, 20*time.Second, "the admitted view", visibleJS("buy"))
		require.False(t, eval[bool](t, ctx, visibleJS("shop")), "%s: no link to the shop", odd[ids[i]])
		require.Equal(t, "", eval[string](t, ctx, shopSpokenJS), "%s: no countdown", odd[ids[i]])
	}
	require.Never(t, func() bool {
		for _, ctx := range tabs {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`location.origin !== `+jsString(base)+` || window.__went === 1`))
			if err != nil || v {
				return true
			}
		}
		return false
	}, 7*time.Second, 250*time.Millisecond, "a tab left the waiting page for an odd return_url")
}

// joinBodies keeps the bodies of the tab's POST …/join requests.
type joinBodies struct {
	mu   sync.Mutex
	seen []string
}

func watchJoins(t *testing.T, ctx context.Context) *joinBodies {
	t.Helper()
	j := &joinBodies{}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		e, ok := ev.(*network.EventRequestWillBeSent)
		if !ok || e.Request.Method != http.MethodPost || !strings.HasSuffix(e.Request.URL, "/join") {
			return
		}
		var body []byte
		for _, p := range e.Request.PostDataEntries {
			body = append(body, p.Bytes...)
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		j.seen = append(j.seen, string(body))
	}))
	return j
}

func (j *joinBodies) bodies() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.seen...)
}

// makePass asks the operator API for a pass for user in the sale.
func makePass(t *testing.T, s *testenv.Server, id, user string) string {
	t.Helper()
	r := s.Do(t, "POST", "/api/v1/admin/sales/"+id+"/passes", s.AdminToken, map[string]any{"user_id": user, "ttl_seconds": 600})
	require.Equal(t, http.StatusCreated, r.Status, "make a pass: %s", r.Body)
	return r.JSON(t)["pass"].(string)
}

// TestBrowserPassLink: /sales/{id}#pass=<pass> from the console. The page
// takes the pass out of the address bar at once, offers the pass's user
// for the demo sign-in, and joins with {"pass": …}: the shopper is
// admitted ahead of a line that does not move, and the pass is spent. A
// pass for someone else is refused in words, dropped, and Join then joins
// the line as usual.
func TestBrowserPassLink(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	id := s.CreateSale(t, map[string]any{"name": "VIP drop", "stock": 20, "admission_rate": 0.001})["id"].(string)
	joinAhead(t, s, id, "line-1", "line-2", "line-3")
	pass := makePass(t, s, id, "vip-7")
	browser := newBrowser(t)
	phone(t, browser)
	joins := watchJoins(t, browser)

	do(t, browser, "open the pass link", chromedp.Navigate(s.URL+"/sales/"+id+"#pass="+url.QueryEscape(pass)))
	waitFor[bool](t, browser, 10*time.Second, "the sign-in view", visibleJS("signin-user"))
	require.Equal(t, "", eval[string](t, browser, `location.hash`), "the pass is out of the address bar")
	require.Equal(t, s.URL+"/sales/"+id, eval[string](t, browser, `location.href`))
	require.Equal(t, "vip-7", eval[string](t, browser, `document.getElementById("signin-user").value`), "the pass's user is offered")
	waitFor[bool](t, browser, 5*time.Second, "the pass note", visibleJS("pass-note"))
	require.Contains(t, eval[string](t, browser, textJS("pass-note")), "You have a pass")
	checkPage(t, browser, "pass-signin")

	press(t, browser, "#signin") // signs in as vip-7 and joins with the pass
	waitFor[bool](t, browser, 20*time.Second, "admitted ahead of the line", visibleJS("buy"))
	// The first of the line may have had the rate's first admission; the
	// rate then lets nobody in for 1000 s, so the others still wait.
	for _, u := range []string{"line-2", "line-3"} {
		st := s.Do(t, "GET", "/api/v1/sales/"+id+"/status", s.UserToken(t, u), nil).JSON(t)
		require.Equal(t, "waiting", st["state"], "%s still waits: the pass went ahead", u)
	}
	require.Nil(t, eval[any](t, browser, `sessionStorage.getItem(`+jsString("fs_pass_"+id)+`)`), "a used pass is forgotten")
	require.False(t, eval[bool](t, browser, visibleJS("pass-note")))
	require.Contains(t, joins.bodies(), `{"pass":`+jsString(pass)+`}`, "the join sent the pass")

	// Someone else's pass: refused, dropped; Join joins the line. (A
	// browser of its own: vip-7's cookies would sign this one in too.)
	other := newBrowser(t)
	phone(t, other)
	do(t, other, "open another user's pass link",
		chromedp.Navigate(s.URL+"/sales/"+id+"#pass="+url.QueryEscape(makePass(t, s, id, "vip-8"))),
		chromedp.WaitVisible(chromedp.ID("signin-user")),
		clear("signin-user"),
		chromedp.SendKeys(chromedp.ID("signin-user"), "not-vip"),
	)
	click(t, other, "#signin")
	waitFor[bool](t, other, 20*time.Second, "the pass refused", visibleJS("error")+` && `+visibleJS("join"))
	require.Contains(t, eval[string](t, other, textJS("error")), "This pass is for another user")
	require.Equal(t, "", eval[string](t, other, `location.hash`))
	require.Nil(t, eval[any](t, other, `sessionStorage.getItem(`+jsString("fs_pass_"+id)+`)`), "a refused pass is dropped")
	checkPage(t, other, "pass-refused")
	click(t, other, "#join")
	waitView(t, other, 20*time.Second, "waiting")
}
