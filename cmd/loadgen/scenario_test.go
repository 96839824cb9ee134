package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

func smallScenario(t *testing.T, s *testenv.Server) (*scenConfig, *bytes.Buffer) {
	var out bytes.Buffer
	c := &scenConfig{url: s.URL, secret: string(s.Secret), adminToken: s.AdminToken, runID: "t" + testenv.RandomID(),
		out: t.TempDir(), shoppers: 60, arrive: 2 * time.Second, wsShare: 0.6, buyShare: 0.85, leaveShare: 0.1,
		leaveWithin: 2 * time.Second, think: 300 * time.Millisecond,
		stock: 30, rate: 25, maxActive: 40, ticketTTL: 10,
		duration: 45 * time.Second, reqTimeout: 10 * time.Second, conns: 32, maxSockets: 12, xff: true, seed: 7,
		progressEvery: time.Second, out2: &out, log: io.Discard,
		args: []string{"--shoppers", "60", "--admin-token", "hush", "--identity-secret=hush2"}}
	if testing.Verbose() {
		c.log = os.Stderr
	}
	return c, &out
}

// svgData parses an SVG as XML and answers its polylines' point counts.
func svgData(t *testing.T, path string) (title string, points []int) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := xml.NewDecoder(bytes.NewReader(b))
	inTitle := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "%s is not well-formed XML", path)
		switch e := tok.(type) {
		case xml.StartElement:
			inTitle = e.Name.Local == "title" && title == ""
			if e.Name.Local == "polyline" {
				for _, a := range e.Attr {
					if a.Name.Local == "points" {
						points = append(points, len(strings.Fields(a.Value)))
					}
				}
			}
		case xml.CharData:
			if inTitle {
				title = string(e)
			}
		case xml.EndElement:
			inTitle = false
		}
	}
	return title, points
}

// A short scenario against a real node: shoppers on sockets and polling,
// buyers, walkers-away and leavers. The report and its charts are written,
// the charts are SVG with data in them, the units the sale's summary sold
// are the orders the run counted, and the live line was printed.
func TestScenarioAgainstANode(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	c, out := smallScenario(t, s)
	r, err := runScenario(context.Background(), c)
	require.NoError(t, err)
	t.Logf("output:\n%s", out)
	if d := os.Getenv("LOADGEN_TEST_REPORT"); d != "" {
		require.NoError(t, os.CopyFS(d, os.DirFS(c.out)))
	}

	// totals: the sale sold out (30 units, ~45 buyers), and the summary agrees
	require.True(t, r.SummaryRead)
	require.True(t, r.Consistent)
	require.True(t, r.Agrees, "%+v", r)
	require.EqualValues(t, c.stock, r.Sold, "every unit sold: %+v", r)
	require.Equal(t, r.Outcomes["bought"], r.Sold)
	require.Equal(t, r.Orders, r.Paid)
	require.Zero(t, r.Outcomes["failed (an error ended the visit)"], "%+v", r)
	require.Zero(t, r.Outcomes["unfinished at the stop"], "%+v", r)
	require.Positive(t, r.Outcomes["left the queue"], "%+v", r)
	require.Positive(t, r.Outcomes["turned away (sold out or closed)"], "%+v", r)
	var sum int64
	for _, n := range r.Outcomes {
		sum += n
	}
	require.EqualValues(t, c.shoppers, sum, "every shopper has one outcome: %+v", r)
	require.Positive(t, r.SocketsOpened)
	// --max-sockets 12 of ~36 WebSocket shoppers: the others poll
	require.LessOrEqual(t, r.SocketsPeak, int64(12))
	require.Positive(t, r.SocketsCapped)
	require.Positive(t, r.PositionFrames)

	// the report
	md, err := os.ReadFile(filepath.Join(c.out, "report.md"))
	require.NoError(t, err)
	for _, want := range []string{"## Machine", "/proc/cpuinfo", "RLIMIT_NOFILE", "## Latency", "| join | ",
		"| checkout | ", "## The sale's summary", "agree with the units the summary gained: **yes**",
		"consistent: **true**", "--shoppers 60", "![Queue length](queue.svg)"} {
		require.Contains(t, string(md), want)
	}
	require.NotContains(t, string(md), "hush", "secrets stay out of the report")
	require.Contains(t, string(md), "| bought | "+strconv.FormatInt(r.Sold, 10)+" |")

	for file, title := range map[string]string{"queue.svg": "Queue length", "admissions.svg": "Admissions and orders per second",
		"join-latency.svg": "Join latency", "checkout-latency.svg": "Checkout latency", "sockets.svg": "Open WebSockets"} {
		got, points := svgData(t, filepath.Join(c.out, file))
		require.Equal(t, title, got)
		total := 0
		for _, n := range points {
			total += n
		}
		require.GreaterOrEqual(t, total, 2, "%s has a line with data", file)
	}

	// the live line: one a second here (stdout is no terminal in a test)
	lines := 0
	for l := range strings.SplitSeq(out.String(), "\n") {
		if strings.Contains(l, "/60 done") {
			lines++
			require.Contains(t, l, "joins ")
			require.Contains(t, l, "checkouts ")
			require.Contains(t, l, "queue ")
			require.NotContains(t, l, "\r")
		}
	}
	require.GreaterOrEqual(t, lines, 2, "progress lines in:\n%s", out)
	require.Contains(t, out.String(), " 60/60 done", "the last line counts everyone")
	require.Contains(t, out.String(), "report: "+filepath.Join(c.out, "report.md"))
}

// At a sale of the operator's (--sale) with holds, every order is held and
// the run confirms it as the payment backend would: the summary counts the
// units sold, none held, and the run's paid orders are those units.
func TestScenarioGivenSaleWithHolds(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	sl := s.CreateSale(t, map[string]any{"stock": 8, "admission_rate": 20, "max_active": 20,
		"hold_ttl_seconds": 30, "ticket_ttl_seconds": 10})
	c, out := smallScenario(t, s)
	c.sale = sl["id"].(string)
	c.shoppers, c.arrive, c.buyShare, c.leaveShare, c.wsShare, c.maxSockets = 20, time.Second, 1, 0, 0.5, 0
	c.stock, c.rate, c.maxActive, c.ticketTTL = 0, 0, 0, 0 // not read with --sale
	r, err := runScenario(context.Background(), c)
	require.NoError(t, err)
	t.Logf("output:\n%s", out)
	require.True(t, r.Agrees, "%+v", r)
	require.True(t, r.Consistent)
	require.EqualValues(t, 8, r.Sold)
	require.Zero(t, r.Held)
	require.EqualValues(t, 8, r.Paid)
	require.EqualValues(t, 8, r.Orders)
	require.EqualValues(t, 12, r.Outcomes["turned away (sold out or closed)"], "%+v", r)
	md, err := os.ReadFile(filepath.Join(c.out, "report.md"))
	require.NoError(t, err)
	require.Contains(t, string(md), "given: "+c.sale+", hold_ttl_seconds 30")
	require.Contains(t, string(md), "given with --sale")
	// a sale of the operator's stays as it is: sold out here, not closed by the run
	got := s.Do(t, "GET", "/api/v1/admin/sales/"+c.sale, s.AdminToken, nil).JSON(t)
	require.Equal(t, "sold_out", got["state"])
}

// The mode is registered, checks its flags before anything else and says
// what is wrong by flag name.
func TestScenarioMode(t *testing.T) {
	err := run([]string{"scenario", "--url", "http://192.0.2.1:8080", "--shoppers", "0", "--data-dir", t.TempDir()})
	require.Error(t, err)
	require.Contains(t, err.Error(), "--url must be on loopback")
	require.Contains(t, err.Error(), "--shoppers must be 1 to 1,000,000")

	err = run([]string{"scenario", "--data-dir", t.TempDir()})
	require.ErrorContains(t, err, "no --identity-secret given and no dev one in --data-dir")

	require.ErrorContains(t, run([]string{"scenario", "oops"}), `"oops" is not one`)
	require.ErrorContains(t, run(nil), "scenario")
}
