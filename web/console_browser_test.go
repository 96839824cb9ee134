package web_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// The operator console's live view and report (issue 11) and its passes
// (issue 10), in headless Chromium against a whole node whose admitter
// samples the sale's timeline every second.

// chartNumbersJS is the text beside one chart (its numbers in words).
func chartNumbersJS(prefix, key string) string { return textJS(prefix + "-" + key + "-numbers") }

// highestJS is the highest value a chart's text gives for its first series
// ("In line 3 now, highest 7" is 7), -1 when it has none.
func highestJS(prefix, key string) string {
	return `(() => { const m = /highest ([\d.,]+)/.exec(` + chartNumbersJS(prefix, key) + `); return m ? Number(m[1].replace(/,/g, "")) : -1; })()`
}

// screenshotOf keeps a viewport screenshot of the element (scrolled to the
// top of the view) under name, for the README.
func screenshotOf(t *testing.T, ctx context.Context, id, name string) {
	t.Helper()
	eval[bool](t, ctx, `(document.getElementById(`+jsString(id)+`).scrollIntoView(), true)`)
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	saveScreenshot(t, png, name)
}

// TestBrowserConsoleLive: the operator signs in, creates a sale (a 422
// shows by its field first), watches the live charts change while shoppers
// join over the API, moves the rate with the slider and with the number
// (each change marked on the charts), pauses and resumes, makes a pass
// (which then joins), closes the sale and reads its report, whose CSV
// download holds the sale's order. Keyboard where an operator acts; every
// state fits 360 px and has no serious axe-core violation.
func TestBrowserConsoleLive(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	s := devNode(t)
	ctx := newBrowser(t)
	var dialogs atomic.Int32
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
			go func() { // the operator presses OK (no command may run in here)
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	}))
	do(t, ctx, "a desktop-sized window", chromedp.EmulateViewport(1200, 900))
	downloads := t.TempDir()
	_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "clipboard-write"}, Setting: browser.PermissionSettingGranted, Origin: s.URL})
	require.NoError(t, err)

	do(t, ctx, "open the console", chromedp.Navigate(s.URL+"/admin"), chromedp.WaitVisible(chromedp.ID("admin-token")))
	tabTo(t, ctx, "#admin-token")
	do(t, ctx, "type the token and press Enter", chromedp.KeyEvent(s.AdminToken), chromedp.KeyEvent(kb.Enter))
	waitFor[bool](t, ctx, 10*time.Second, "the console", visibleJS("console-view")+` && `+visibleJS("create-sale"))

	// Create: a rate the server refuses shows its 422 by the rate field.
	do(t, ctx, "fill the create form",
		chromedp.SendKeys(chromedp.ID("f-name"), "Live drop"),
		chromedp.SendKeys(chromedp.ID("f-price"), "1999"),
		chromedp.SendKeys(chromedp.ID("f-stock"), "40"),
		chromedp.SendKeys(chromedp.ID("f-rate"), "0"),
	)
	press(t, ctx, "#create")
	waitFor[bool](t, ctx, 10*time.Second, "the 422 by the rate field", visibleJS("f-rate-error"))
	require.Contains(t, eval[string](t, ctx, textJS("f-rate-error")), "admission_rate: must be between")
	require.Equal(t, "true", eval[string](t, ctx, `document.getElementById("f-rate").getAttribute("aria-invalid")`))
	require.Equal(t, "f-rate-error", eval[string](t, ctx, `document.getElementById("f-rate").getAttribute("aria-describedby")`))
	require.Equal(t, "f-rate", eval[string](t, ctx, `document.activeElement.id`), "the field has the focus")
	require.False(t, eval[bool](t, ctx, visibleJS("create-error")), "the message is by its field, not under the form")
	require.False(t, eval[bool](t, ctx, visibleJS("f-stock-error")))
	require.Empty(t, adminGet(t, s, "/sales")["sales"], "a refused create makes nothing")
	checkPage(t, ctx, "a create 422 by its field")

	do(t, ctx, "a rate it takes", clear("f-rate"), chromedp.SendKeys(chromedp.ID("f-rate"), "2"))
	press(t, ctx, "#create")
	id := waitFor[string](t, ctx, 10*time.Second, "the created sale",
		`(`+textJS("create-status")+`.match(/^Created sale (\S+)\.$/) || [])[1] || ""`)
	require.False(t, eval[bool](t, ctx, visibleJS("f-rate-error")), "the error is gone")
	require.Nil(t, eval[any](t, ctx, `document.getElementById("f-rate").getAttribute("aria-invalid")`))
	require.EqualValues(t, 2, adminGet(t, s, "/sales/"+id)["admission_rate"])
	waitFor[bool](t, ctx, 10*time.Second, "the sale's view", visibleJS("detail")+` && `+textJS("detail-id")+` === `+jsString(id))

	// The live charts fill from the server's samples.
	waitFor[bool](t, ctx, 15*time.Second, "samples in the charts", chartNumbersJS("live", "queue")+`.startsWith("In line 0 now")`)
	for _, key := range []string{"queue", "admissions", "active", "units"} {
		svg := `document.getElementById("live-` + key + `")`
		require.Equal(t, "img", eval[string](t, ctx, svg+`.getAttribute("role")`))
		require.Contains(t, eval[string](t, ctx, svg+`.getAttribute("aria-label")`), "last 15 minutes: ")
	}
	require.Contains(t, eval[string](t, ctx, chartNumbersJS("live", "units")), "Remaining 40 now")
	require.Contains(t, eval[string](t, ctx, chartNumbersJS("live", "admissions")), "Rate set 2 now")
	require.EqualValues(t, 0, eval[float64](t, ctx, highestJS("live", "queue")), "nobody has joined yet")

	// Shoppers join; the queue chart rises and the admissions chart moves.
	for i := range 12 {
		r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, fmt.Sprintf("shopper-%02d", i)), nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	}
	waitFor[bool](t, ctx, 15*time.Second, "the queue chart to rise", highestJS("live", "queue")+` >= 5`)
	waitFor[bool](t, ctx, 15*time.Second, "admissions drawn", highestJS("live", "admissions")+` > 0`)
	require.Contains(t, eval[string](t, ctx, `document.getElementById("live-queue").getAttribute("aria-label")`), "highest")
	require.True(t, eval[bool](t, ctx, `document.querySelector("#live-queue path.series").getAttribute("d").includes("L")`), "a line is drawn")
	screenshotOf(t, ctx, "charts-title", "console-live.png")
	checkPage(t, ctx, "live charts")

	// The rate with the slider, by keyboard: each arrow is 0.1 below 20 a second.
	tabTo(t, ctx, "#rate-slider")
	do(t, ctx, "three steps right", chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight))
	waitFor[bool](t, ctx, 5*time.Second, "the number follows the slider", `document.getElementById("rate").value === "2.3"`)
	press(t, ctx, "#apply")
	waitFor[bool](t, ctx, 10*time.Second, "applied", textJS("control-status")+`.startsWith("Applied")`)
	require.EqualValues(t, 2.3, adminGet(t, s, "/sales/"+id)["admission_rate"])
	waitFor[bool](t, ctx, 15*time.Second, "the rate change marked",
		`[...document.querySelectorAll("#live-changes li")].some((li) => li.textContent.includes("admission rate 2 → 2.3 per second"))`)
	require.True(t, eval[bool](t, ctx, `[...document.querySelectorAll("#live-queue .mark-label")].some((e) => e.textContent === "rate 2.3")`),
		"the mark is on the chart")

	// ... and with the number, which moves the slider.
	tabTo(t, ctx, "#rate")
	do(t, ctx, "type 6 and press Enter",
		chromedp.KeyEvent(kb.End), chromedp.KeyEvent(kb.Backspace), chromedp.KeyEvent(kb.Backspace), chromedp.KeyEvent(kb.Backspace),
		chromedp.KeyEvent("6"))
	require.Equal(t, "6", eval[string](t, ctx, `document.getElementById("rate-slider").value`))
	do(t, ctx, "submit", chromedp.KeyEvent(kb.Enter))
	testenv.Eventually(t, 10*time.Second, func() bool { return adminGet(t, s, "/sales/"+id)["admission_rate"] == 6.0 }, "rate 6 applied")
	waitFor[bool](t, ctx, 15*time.Second, "the second rate change marked",
		`[...document.querySelectorAll("#live-changes li")].some((li) => li.textContent.includes("admission rate 2.3 → 6 per second"))`)

	// Pause and resume; both marked.
	press(t, ctx, "#pause")
	waitFor[bool](t, ctx, 10*time.Second, "paused", textJS("control-status")+`.startsWith("Paused")`)
	require.Equal(t, "paused", adminGet(t, s, "/sales/"+id)["state"])
	waitFor[bool](t, ctx, 15*time.Second, "the pause marked",
		`[...document.querySelectorAll("#live-changes li")].some((li) => li.textContent.includes("Open → Paused"))`)
	checkPage(t, ctx, "paused")
	press(t, ctx, "#resume")
	waitFor[bool](t, ctx, 10*time.Second, "resumed", textJS("control-status")+`.startsWith("Opened")`)
	require.Equal(t, "open", adminGet(t, s, "/sales/"+id)["state"])
	waitFor[bool](t, ctx, 15*time.Second, "the resume marked",
		`[...document.querySelectorAll("#live-changes li")].some((li) => li.textContent.includes("Paused → Open"))`)

	// A pass: a 422 by its field, then one made, copied, and used to join.
	press(t, ctx, "#pass-make")
	waitFor[bool](t, ctx, 10*time.Second, "the 422 by the user field", visibleJS("pass-user-error"))
	require.Contains(t, eval[string](t, ctx, textJS("pass-user-error")), "user_id: required")
	do(t, ctx, "a user", chromedp.SendKeys(chromedp.ID("pass-user"), "vip-7"))
	press(t, ctx, "#pass-make")
	waitFor[bool](t, ctx, 10*time.Second, "the pass", textJS("pass-status")+` === "Made a pass for vip-7."`)
	require.False(t, eval[bool](t, ctx, visibleJS("pass-user-error")))
	pass := eval[string](t, ctx, `document.getElementById("pass-token-0").value`)
	require.Equal(t, 2, strings.Count(pass, "."), "a JWT: %q", pass)
	require.Contains(t, eval[string](t, ctx, `document.querySelector("#passes li").textContent`), "Pass for vip-7, valid until")
	require.Equal(t, s.URL+"/sales/"+id+"#pass="+pass, eval[string](t, ctx, `document.querySelector("#passes li a").href`),
		"the waiting-page link carries the pass")
	press(t, ctx, "#passes li button")
	waitFor[bool](t, ctx, 10*time.Second, "copied", textJS("pass-status")+` === "Copied the pass for vip-7."`)
	checkPage(t, ctx, "a pass made")
	r := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, "vip-7"), map[string]any{"pass": pass})
	require.Equal(t, http.StatusOK, r.Status, "the pass joins: %s", r.Body)

	// One purchase for the report.
	var ticket string
	testenv.Eventually(t, 20*time.Second, func() bool {
		st := s.Do(t, "GET", "/api/v1/sales/"+id+"/status", s.UserToken(t, "shopper-00"), nil).JSON(t)
		ticket, _ = st["ticket"].(string)
		return ticket != ""
	}, "the first shopper admitted")
	r = s.Do(t, "POST", "/api/v1/sales/"+id+"/checkout", ticket, map[string]any{"quantity": 1})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	orderID := r.JSON(t)["id"].(string)

	phone(t, ctx)
	checkPage(t, ctx, "the live view at 360 px")
	do(t, ctx, "a desktop-sized window again", chromedp.EmulateViewport(1200, 900))

	// Close (confirmed), then the report.
	press(t, ctx, "#close")
	waitFor[bool](t, ctx, 10*time.Second, "closed", textJS("control-status")+`.startsWith("Closed")`)
	require.EqualValues(t, 1, dialogs.Load(), "the close was confirmed")
	require.Equal(t, "closed", adminGet(t, s, "/sales/"+id)["state"])
	press(t, ctx, "#report-link")
	waitFor[bool](t, ctx, 10*time.Second, "the report", visibleJS("report-view")+` && !`+visibleJS("console-view")+
		` && document.querySelectorAll("#report-totals div").length > 0`)
	require.Equal(t, "Report: Live drop", eval[string](t, ctx, textJS("report-title")))
	require.Equal(t, "Closed", eval[string](t, ctx, textJS("report-state")))
	require.False(t, eval[bool](t, ctx, visibleJS("report-live")), "a closed sale's report is final")
	totals := eval[map[string]string](t, ctx, `Object.fromEntries([...document.querySelectorAll("#report-totals div")].map((d) => [d.querySelector("dt").textContent, d.querySelector("dd").textContent]))`)
	require.Equal(t, "1 of 40", totals["Sold"])
	require.Contains(t, totals["Revenue"], "19.99")
	require.Equal(t, "Consistent", totals["Redis and MySQL"])
	require.NotEqual(t, "0", totals["Longest queue"])
	for _, key := range []string{"queue", "admissions", "active", "units"} {
		require.Contains(t, eval[string](t, ctx, `document.getElementById("report-`+key+`").getAttribute("aria-label")`), "the whole sale: ")
	}
	require.True(t, eval[bool](t, ctx, highestJS("report", "queue")+` >= 5`))
	// the close's own sample comes within a second; the report reads again every 5 s
	waitFor[bool](t, ctx, 15*time.Second, "the close marked", textJS("report-changes")+`.includes("Open → Closed")`)
	changes := eval[string](t, ctx, textJS("report-changes"))
	for _, c := range []string{"admission rate 2 → 2.3", "admission rate 2.3 → 6", "Open → Paused", "Paused → Open", "Open → Closed"} {
		require.Contains(t, changes, c)
	}
	screenshotOf(t, ctx, "report-title", "console-report.png")
	checkPage(t, ctx, "the report")

	press(t, ctx, "#report-csv")
	waitFor[bool](t, ctx, 15*time.Second, "downloaded", textJS("report-csv-status")+` === "Downloaded orders-`+id+`.csv (1 order)."`)
	var csv []byte
	testenv.Eventually(t, 10*time.Second, func() bool {
		csv, err = os.ReadFile(filepath.Join(downloads, "orders-"+id+".csv"))
		return err == nil && len(csv) > 0
	}, "the CSV file in the download folder")
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	require.Len(t, lines, 2, "%s", csv)
	require.True(t, strings.HasPrefix(lines[0], "id,sale_id,user_id,"))
	require.True(t, strings.HasPrefix(lines[1], orderID+","+id+",shopper-00,1,1999,EUR,paid,"), lines[1])
	phone(t, ctx)
	checkPage(t, ctx, "the report at 360 px")

	// Back to the console.
	press(t, ctx, "#report-back")
	waitFor[bool](t, ctx, 10*time.Second, "the console again", visibleJS("console-view")+` && `+textJS("detail-id")+` === `+jsString(id))
}
