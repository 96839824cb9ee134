package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// chromium is the browser the tests drive: Debian's, which
// deploy/services.sh installs at /usr/bin/chromium.
const chromium = "chromium"

// browserTimeout bounds everything one test does in its browser.
const browserTimeout = 60 * time.Second

// devNode starts a whole node in --dev mode (dev user tokens, dev pay) with
// no sample sale.
func devNode(t *testing.T) *testenv.Server {
	t.Helper()
	return testenv.Start(t, func(c *node.Config) {
		c.Dev = true
		c.SampleSale = false
	})
}

// needBrowser returns Chromium's path; tests call it first, before they
// start a node. It skips the test with -short; a missing Chromium skips it
// too, or fails it in CI (testenv.RequireTool).
func needBrowser(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real browser; skipped with -short")
	}
	return testenv.RequireTool(t, chromium, "/usr/bin/chromium")
}

// newBrowser starts a headless Chromium of the test's own, with a fresh
// profile, and answers a tab on it whose actions all end within
// browserTimeout. Everything stops when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := needBrowser(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // runs before TempDir's removal: waits for Chromium to exit
	trail := &trail{start: time.Now()}
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(trail.record))
	t.Cleanup(cancelTab)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("what the browser did:\n%s", trail)
		}
	})
	// The first Do starts the browser; it gets no deadline, which would stop
	// the browser rather than an action (chromedp.NewContext's doc).
	require.NoError(t, chromedp.Do(ctx), "start Chromium")
	ctx, cancel := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(cancel)
	return ctx
}

// trail records what the page did (requests, WebSocket frames, console,
// exceptions), for the log of a failed test.
type trail struct {
	start time.Time
	mu    sync.Mutex
	lines []string
}

func (tr *trail) record(ev any) {
	var line string
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		line = "request " + e.Request.Method + " " + e.Request.URL
	case *network.EventResponseReceived:
		line = fmt.Sprintf("response %d %s", e.Response.Status, e.Response.URL)
	case *network.EventLoadingFailed:
		line = "failed " + e.ErrorText
	case *network.EventWebSocketCreated:
		line = "ws open " + e.URL
	case *network.EventWebSocketFrameReceived:
		line = "ws frame " + string(e.Response.PayloadData)
	case *network.EventWebSocketClosed:
		line = "ws closed"
	case *runtime.EventConsoleAPICalled:
		line = "console." + string(e.Type)
		for _, a := range e.Args {
			line += " " + string(a.Value)
		}
	case *runtime.EventExceptionThrown:
		line = "exception " + e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			line += " " + e.ExceptionDetails.Exception.Description
		}
	default:
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.lines) < 2000 {
		tr.lines = append(tr.lines, fmt.Sprintf("%7.3fs %s", time.Since(tr.start).Seconds(), line))
	}
}

func (tr *trail) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return strings.Join(tr.lines, "\n")
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// visibleJS is a JavaScript expression, true when the element with this id
// exists and is rendered (neither it nor an ancestor is hidden).
func visibleJS(id string) string {
	return fmt.Sprintf(`(() => { const e = document.getElementById(%s); return !!e && e.checkVisibility(); })()`, jsString(id))
}

// textJS is a JavaScript expression: the trimmed text of the element with
// this id ("" when there is none).
func textJS(id string) string {
	return fmt.Sprintf(`((document.getElementById(%s) || {}).textContent || "").trim()`, jsString(id))
}

// waitFor polls the JavaScript expression every 50 ms until it is truthy and
// answers its value; past within, it fails the test with what the page shows.
func waitFor[T any](t *testing.T, ctx context.Context, within time.Duration, what, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(within)))
	if err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("waiting for %s (%s): %v\npage text:\n%s", what, expr, err, page)
	}
	return v
}

// eval runs a JavaScript expression and answers its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, "evaluate %s", expr)
	return v
}

// clear empties an input. (chromedp v0.23.0's SetValue cannot set "": the
// empty argument reaches the page as undefined.)
func clear(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%s).value = ""`, jsString(id)))
}

// click clicks the element a CSS selector finds once it is shown and enabled,
// as a person would: a click on a disabled button (say, while the page
// still waits for an answer) does nothing.
func click(t *testing.T, ctx context.Context, css string) {
	t.Helper()
	waitFor[bool](t, ctx, 20*time.Second, css+" shown and enabled",
		fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.checkVisibility() && !e.disabled; })()`, jsString(css)))
	do(t, ctx, "click "+css, chromedp.Click(chromedp.CSS(css)))
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, steps...), what)
}

// adminGet GETs an operator endpoint and decodes the answer.
func adminGet(t *testing.T, s *testenv.Server, path string) map[string]any {
	t.Helper()
	r := s.Do(t, "GET", "/api/v1/admin"+path, s.AdminToken, nil)
	require.Equal(t, http.StatusOK, r.Status, "GET %s: %s", path, r.Body)
	return r.JSON(t)
}

// saveScreenshot keeps a screenshot in $FLASHSALE_TEST_SCREENSHOTS when it
// is set (for looking at the pages by eye); it always checks it is a PNG.
func saveScreenshot(t *testing.T, png []byte, name string) {
	t.Helper()
	require.True(t, len(png) > 8 && string(png[1:4]) == "PNG", "screenshot is not a PNG")
	if dir := os.Getenv("FLASHSALE_TEST_SCREENSHOTS"); dir != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
	}
}

// TestBrowserShopperBuys walks a shopper through the waiting page: demo
// sign-in, join, admitted, buy (held), pay (paid); MySQL and the operator
// summary agree.
func TestBrowserShopperBuys(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	sale := s.CreateSale(t, map[string]any{"name": "Browser drop", "price_cents": 2500, "stock": 3,
		"admission_rate": 5, "hold_ttl_seconds": 300, "per_user_limit": 1})
	id := sale["id"].(string)
	ctx := newBrowser(t)
	const user = "browser-alice"

	do(t, ctx, "open the waiting page and sign in",
		chromedp.Navigate(s.URL+"/sales/"+id),
		chromedp.WaitVisible(chromedp.ID("signin-user")),
		clear("signin-user"),
		chromedp.SendKeys(chromedp.ID("signin-user"), user),
	)
	click(t, ctx, "#signin")
	// Signing in joins at once; a Join button shows only when it did not.
	next := waitFor[string](t, ctx, 30*time.Second, "the join button or the admitted view",
		`(`+visibleJS("buy")+` && "admitted") || (`+visibleJS("join")+` && "join")`)
	if next == "join" {
		click(t, ctx, "#join")
	}
	waitFor[bool](t, ctx, 30*time.Second, "the admitted view", visibleJS("buy"))
	require.Equal(t, user, eval[string](t, ctx, textJS("user-name")))
	require.Equal(t, "Browser drop", eval[string](t, ctx, textJS("sale-name")))
	require.Equal(t, "3 of 3 left", eval[string](t, ctx, textJS("stock")))
	require.Equal(t, 1, eval[int](t, ctx, `document.getElementById("quantity").options.length`),
		"per_user_limit 1 offers one quantity")
	require.Regexp(t, `^(5:00|[0-4]:[0-5]\d)$`, eval[string](t, ctx, textJS("ticket-countdown")))

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	saveScreenshot(t, png, "admitted.png")
	checkPage(t, ctx, "admitted")

	click(t, ctx, "#buy")
	waitFor[bool](t, ctx, 20*time.Second, "the order held", textJS("order-status")+` === "held"`)
	orderID := eval[string](t, ctx, textJS("order-id"))
	require.True(t, strings.HasPrefix(orderID, "ord_"), "order id %q", orderID)
	require.True(t, eval[bool](t, ctx, visibleJS("pay")), "a held order can be paid")
	require.False(t, eval[bool](t, ctx, visibleJS("buy")), "the Buy button is gone once bought")
	checkPage(t, ctx, "held")

	click(t, ctx, "#pay")
	waitFor[bool](t, ctx, 20*time.Second, "the order paid", textJS("order-status")+` === "paid"`)
	require.False(t, eval[bool](t, ctx, visibleJS("pay")), "a paid order cannot be paid again")
	require.Equal(t, orderID, eval[string](t, ctx, textJS("order-id")))
	waitFor[bool](t, ctx, 10*time.Second, "the units left to go down", textJS("stock")+` === "2 of 3 left"`)

	var dbID, dbUser, dbStatus string
	var dbQuantity int
	require.NoError(t, s.DB.QueryRow(`SELECT id, user_id, status, quantity FROM orders WHERE sale_id = ?`, id).
		Scan(&dbID, &dbUser, &dbStatus, &dbQuantity), "exactly one order in MySQL")
	require.Equal(t, []any{orderID, user, "paid", 1}, []any{dbID, dbUser, dbStatus, dbQuantity})

	sum := adminGet(t, s, "/sales/"+id+"/summary")
	require.EqualValues(t, 1, sum["sold"], "summary: %v", sum)
	require.EqualValues(t, 0, sum["held"], "summary: %v", sum)
	require.EqualValues(t, 2, sum["remaining"], "summary: %v", sum)
	require.Equal(t, true, sum["consistent"], "summary: %v", sum)
}

// TestBrowserLivePosition shows the page following the queue over its
// WebSocket, with no reload: the position goes down, an operator's pause
// shows the paused banner, a close the closed view.
func TestBrowserLivePosition(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	sale := s.CreateSale(t, map[string]any{"stock": 10, "admission_rate": 0.2})
	id := sale["id"].(string)
	for _, u := range []string{"ahead-1", "ahead-2", "ahead-3"} {
		r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, u), nil)
		require.Equal(t, http.StatusOK, r.Status, "join %s: %s", u, r.Body)
	}
	ctx := newBrowser(t)

	do(t, ctx, "open the waiting page and sign in",
		chromedp.Navigate(s.URL+"/sales/"+id),
		chromedp.WaitVisible(chromedp.ID("signin-user")),
		chromedp.SetValue(chromedp.ID("signin-user"), "browser-bob"),
	)
	click(t, ctx, "#signin")
	next := waitFor[string](t, ctx, 20*time.Second, "the join button or the waiting view",
		`(`+visibleJS("position")+` && "waiting") || (`+visibleJS("join")+` && "join")`)
	if next == "join" {
		click(t, ctx, "#join")
	}
	// A mark on the window: it would be gone after a reload.
	eval[bool](t, ctx, `window.__noReload = true`)

	positionJS := `(() => { const n = parseInt(` + textJS("position") + `.replace(/\D/g, ""), 10); return n >= 1 ? n : 0; })()`
	first := waitFor[int](t, ctx, 20*time.Second, "a position", positionJS)
	require.LessOrEqual(t, first, 4, "three shoppers are ahead at most")
	t.Logf("first position %d", first)
	later := waitFor[int](t, ctx, 20*time.Second, "a smaller position",
		fmt.Sprintf(`(() => { const n = %s; return n >= 1 && n < %d ? n : 0; })()`, positionJS, first))
	t.Logf("later position %d", later)
	require.Less(t, later, first)
	require.False(t, eval[bool](t, ctx, visibleJS("paused-banner")))

	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": "paused"})
	require.Equal(t, http.StatusOK, r.Status, "pause: %s", r.Body)
	waitFor[bool](t, ctx, 10*time.Second, "the paused banner", visibleJS("paused-banner"))
	require.Equal(t, "paused", eval[string](t, ctx, textJS("eta")))
	require.Equal(t, "Paused", eval[string](t, ctx, textJS("state")))
	require.True(t, eval[bool](t, ctx, visibleJS("position")), "a paused waiter keeps their place")
	checkPage(t, ctx, "paused")

	r = s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": "closed"})
	require.Equal(t, http.StatusOK, r.Status, "close: %s", r.Body)
	waitFor[bool](t, ctx, 10*time.Second, "the closed view", visibleJS("view-closed"))
	require.False(t, eval[bool](t, ctx, visibleJS("view-waiting")))
	require.Equal(t, "Closed", eval[string](t, ctx, textJS("state")))
	require.False(t, eval[bool](t, ctx, visibleJS("leave")), "nothing to leave once closed")
	checkPage(t, ctx, "closed")
	require.True(t, eval[bool](t, ctx, `window.__noReload === true`), "the page was reloaded")
}

// TestBrowserOperatorConsole drives the console: a wrong token is refused;
// then sign in, create a sale, select it, read its summary, change its rate
// and pause it, each checked through the API.
func TestBrowserOperatorConsole(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	other := s.CreateSale(t, map[string]any{"name": "Other sale", "stock": 10})["id"].(string)
	otherRow := fmt.Sprintf(`#sales-body button[data-sale=%s]`, jsString(other))
	ctx := newBrowser(t)

	do(t, ctx, "sign in with a wrong token",
		chromedp.Navigate(s.URL+"/admin"),
		chromedp.WaitVisible(chromedp.ID("admin-token")),
		chromedp.SendKeys(chromedp.ID("admin-token"), "not-the-admin-token"),
	)
	click(t, ctx, "#admin-signin")
	waitFor[bool](t, ctx, 10*time.Second, "the sign-in error", visibleJS("error"))
	require.Contains(t, eval[string](t, ctx, textJS("error")), "Wrong token")
	require.False(t, eval[bool](t, ctx, visibleJS("console-view")))
	require.True(t, eval[bool](t, ctx, visibleJS("admin-token")))
	checkPage(t, ctx, "wrong token")

	do(t, ctx, "sign in",
		clear("admin-token"),
		chromedp.SendKeys(chromedp.ID("admin-token"), s.AdminToken),
	)
	click(t, ctx, "#admin-signin")
	waitFor[bool](t, ctx, 10*time.Second, "the console", visibleJS("sales"))
	require.False(t, eval[bool](t, ctx, visibleJS("error")), "the wrong token's error is gone")
	waitFor[bool](t, ctx, 10*time.Second, "the existing sale listed", visibleJS("sales")+` && !!document.querySelector(`+jsString(otherRow)+`)`)
	require.False(t, eval[bool](t, ctx, visibleJS("no-sales")))
	require.False(t, eval[bool](t, ctx, visibleJS("detail")), "no sale is selected yet")

	do(t, ctx, "create a sale",
		chromedp.SendKeys(chromedp.ID("f-name"), "Console drop"),
		chromedp.SendKeys(chromedp.ID("f-price"), "4999"),
		clear("f-currency"),
		chromedp.SendKeys(chromedp.ID("f-currency"), "usd"),
		chromedp.SendKeys(chromedp.ID("f-stock"), "25"),
	)
	click(t, ctx, "#create")
	id := waitFor[string](t, ctx, 10*time.Second, "the created sale",
		`(`+textJS("create-status")+`.match(/^Created sale (\S+)\.$/) || [])[1] || ""`)
	require.False(t, eval[bool](t, ctx, visibleJS("create-error")), "create error: %s", eval[string](t, ctx, textJS("create-error")))

	got := adminGet(t, s, "/sales/"+id)
	require.Equal(t, "Console drop", got["name"])
	require.EqualValues(t, 4999, got["price_cents"])
	require.Equal(t, "USD", got["currency"])
	require.EqualValues(t, 25, got["stock_total"])
	require.Equal(t, "open", got["state"])

	row := fmt.Sprintf(`#sales-body button[data-sale=%s]`, jsString(id))
	waitFor[bool](t, ctx, 10*time.Second, "the new sale listed and selected",
		fmt.Sprintf(`(() => { const b = document.querySelector(%s); return !!b && b.checkVisibility() && b.getAttribute("aria-pressed") === "true"; })()`, jsString(row))+
			` && `+textJS("detail-id")+` === `+jsString(id))
	require.Equal(t, "Console drop", eval[string](t, ctx, `document.querySelector(`+jsString(row)+`).closest("tr").children[1].textContent`))

	// Select the other sale, then ours again: the detail follows the list.
	click(t, ctx, otherRow)
	waitFor[bool](t, ctx, 10*time.Second, "the other sale's summary",
		textJS("detail-id")+` === `+jsString(other)+` && `+textJS("summary-stock_total")+` === "10"`)
	require.Equal(t, "false", eval[string](t, ctx, `document.querySelector(`+jsString(row)+`).getAttribute("aria-pressed")`))
	click(t, ctx, row)
	waitFor[bool](t, ctx, 10*time.Second, "the summary",
		visibleJS("summary")+` && `+textJS("summary-stock_total")+` === "25" && `+textJS("summary-remaining")+` === "25"`)
	require.Equal(t, id, eval[string](t, ctx, textJS("detail-id")))
	require.Equal(t, "true", eval[string](t, ctx, `document.querySelector(`+jsString(row)+`).getAttribute("aria-pressed")`))
	require.Equal(t, "Consistent", eval[string](t, ctx, textJS("consistent")))
	checkPage(t, ctx, "a sale's summary")
	require.Equal(t, "Open", eval[string](t, ctx, textJS("summary-state")))
	require.Equal(t, "10", eval[string](t, ctx, `document.getElementById("rate").value`), "the default rate")

	do(t, ctx, "set the rate", chromedp.SetValue(chromedp.ID("rate"), "7.5"))
	click(t, ctx, "#apply")
	waitFor[bool](t, ctx, 10*time.Second, "the rate applied", textJS("control-status")+`.startsWith("Applied")`)
	require.False(t, eval[bool](t, ctx, visibleJS("control-error")))
	require.EqualValues(t, 7.5, adminGet(t, s, "/sales/"+id)["admission_rate"])
	require.Equal(t, "7.5", eval[string](t, ctx, `document.getElementById("rate").value`))

	click(t, ctx, "#pause")
	waitFor[bool](t, ctx, 10*time.Second, "the sale paused", textJS("control-status")+`.startsWith("Paused")`)
	require.Equal(t, "paused", adminGet(t, s, "/sales/"+id)["state"])
	waitFor[bool](t, ctx, 10*time.Second, "the pause and resume buttons",
		`document.getElementById("pause").disabled && !document.getElementById("resume").disabled`)
	waitFor[bool](t, ctx, 10*time.Second, "the summary's state", textJS("summary-state")+` === "Paused"`)
	require.Equal(t, "Paused", eval[string](t, ctx, `document.querySelector(`+jsString(row)+`).closest("tr").querySelector(".badge").textContent`),
		"the list shows the new state")
	require.EqualValues(t, 7.5, adminGet(t, s, "/sales/"+id)["admission_rate"], "pausing keeps the rate")
}
