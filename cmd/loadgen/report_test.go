package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// Percentiles of 1..1000 ms are within the buckets' 2%; the max is exact;
// values past either end fall in the end buckets.
func TestLatHistQuantiles(t *testing.T) {
	var h latHist
	require.Zero(t, h.quantile(.5), "empty")
	for i := 1000; i >= 1; i-- {
		h.add(time.Duration(i) * time.Millisecond)
	}
	require.EqualValues(t, 1000, h.n)
	require.InEpsilon(t, float64(500*time.Millisecond), float64(h.quantile(.5)), 0.02)
	require.InEpsilon(t, float64(990*time.Millisecond), float64(h.quantile(.99)), 0.02)
	require.Equal(t, time.Second, h.quantile(1))
	require.Equal(t, time.Second, h.max)

	var edge latHist
	edge.add(0)
	edge.add(time.Hour)
	require.Equal(t, histMin, edge.quantile(.5))
	require.Equal(t, time.Hour, edge.quantile(1), "never above the largest seen, never lost")

	var m latHist
	m.merge(&h)
	m.merge(&edge)
	require.EqualValues(t, 1002, m.n)
	require.Equal(t, time.Hour, m.max)
}

// Labels from the server's answers are capped; statuses are counted apart.
func TestStatusTallyIsBounded(t *testing.T) {
	var st statusTally
	for i := range 3 * maxLabels {
		st.add("join", 429, "code"+strings.Repeat("x", i%500)+string(rune('a'+i%26)), nil)
	}
	st.add("status", 0, "", errors.New("connection refused"))
	labels := st.counts(false)
	require.LessOrEqual(t, len(labels), maxLabels+1)
	var total int64
	for _, l := range labels {
		total += l.n
	}
	require.EqualValues(t, 3*maxLabels+1, total, "nothing lost, the excess is other")
	require.Equal(t, "429:600 conn:1", fmtStatuses(st.counts(true)))
	require.Equal(t, "none", fmtStatuses(nil))
}

func parseSVG(t *testing.T, b []byte) (polylines []string, texts []string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err, "%s", b)
		switch e := tok.(type) {
		case xml.StartElement:
			for _, a := range e.Attr {
				if e.Name.Local == "polyline" && a.Name.Local == "points" {
					polylines = append(polylines, a.Value)
				}
			}
		case xml.CharData:
			if s := strings.TrimSpace(string(e)); s != "" {
				texts = append(texts, s)
			}
		}
	}
}

// A chart is well-formed SVG whatever its names hold; a NaN is a gap in
// the line; a series with no data draws nothing and says so.
func TestChartSVG(t *testing.T) {
	nan := math.NaN()
	c := chart{title: `Queue <&> "length"`, yLabel: "shoppers", xs: []float64{0, 1, 2, 3, 4, 5},
		series: []chartSeries{
			{"waiting", "#1f77b4", []float64{0, 10, nan, 30, 25, 5}},
			{"none", "#ff7f0e", []float64{nan, nan, nan, nan, nan, nan}},
		}}
	lines, texts := parseSVG(t, c.svg())
	require.Len(t, lines, 2, "the gap splits the line in two")
	require.Len(t, strings.Fields(lines[0]), 2)
	require.Len(t, strings.Fields(lines[1]), 3)
	require.Contains(t, texts, `Queue <&> "length"`)
	require.Contains(t, texts, "waiting: peak 30 at 3 s, last 5; none: no data")
	require.Contains(t, texts, "30", "the y axis ends on a round tick at or above the peak")
	require.NotContains(t, texts, "40")

	// the peak sits at the top tick's height or below, never outside the plot
	for _, p := range strings.Fields(lines[1]) {
		var x, y float64
		_, err := fmtSscan(p, &x, &y)
		require.NoError(t, err)
		require.GreaterOrEqual(t, y, padT)
		require.LessOrEqual(t, y, svgH-padB)
		require.GreaterOrEqual(t, x, padL)
		require.LessOrEqual(t, x, svgW-padR)
	}

	empty := chart{title: "Nothing", yLabel: "y"}
	lines, _ = parseSVG(t, empty.svg())
	require.Empty(t, lines)
}

func fmtSscan(p string, x, y *float64) (int, error) {
	a, b, ok := strings.Cut(p, ",")
	if !ok {
		return 0, errors.New("no comma in " + p)
	}
	var err error
	if *x, err = parseF(a); err != nil {
		return 0, err
	}
	*y, err = parseF(b)
	return 2, err
}

func parseF(s string) (float64, error) { return strconv.ParseFloat(s, 64) }

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ span, want float64 }{
		{100, 20}, {7, 2}, {0.3, 0.1}, {1234, 250}, {165 * 5 / 8, 25}, {0, 1}, {math.NaN(), 1},
	} {
		require.Equal(t, tc.want, niceStep(tc.span, 5), "span %g", tc.span)
	}
}

// A long run's chart is averaged down to maxChartPoints; gaps stay gaps.
func TestDownsample(t *testing.T) {
	n := 1300
	c := chart{xs: make([]float64, n), series: []chartSeries{{name: "a", ys: make([]float64, n)}}}
	for i := range n {
		c.xs[i] = float64(i + 1)
		c.series[0].ys[i] = float64(i % 3)
		if i >= 1200 {
			c.series[0].ys[i] = math.NaN()
		}
	}
	d := downsample(c, 600)
	require.LessOrEqual(t, len(d.xs), 600)
	require.Len(t, d.series[0].ys, len(d.xs))
	require.Equal(t, 3.0, d.xs[0])
	require.InDelta(t, 1.0, d.series[0].ys[0], 1e-9, "the mean of 0, 1, 2")
	require.True(t, math.IsNaN(d.series[0].ys[len(d.xs)-1]))
	require.Equal(t, float64(n), d.xs[len(d.xs)-1])
	short := chart{xs: []float64{1, 2}, series: []chartSeries{{ys: []float64{1, 2}}}}
	require.Equal(t, short, downsample(short, 600))
}

// Secrets given on the command line stay out of the report.
func TestRedactArgs(t *testing.T) {
	require.Equal(t,
		[]string{"--shoppers", "5", "--admin-token", "REDACTED", "-identity-secret=REDACTED", "--url=http://127.0.0.1:1", "admin-token"},
		redactArgs([]string{"--shoppers", "5", "--admin-token", "s3cret", "-identity-secret=abc", "--url=http://127.0.0.1:1", "admin-token"}))
}

func TestLoopbackURL(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:1", "https://[::1]:443/", "http://127.3.2.1"} {
		require.NoError(t, loopbackURL(u), u)
	}
	for _, u := range []string{"http://10.0.0.1:8080", "http://example.com", "ftp://127.0.0.1", "127.0.0.1:8080", "http://", "http://0.0.0.0:80"} {
		err := loopbackURL(u)
		require.Error(t, err, u)
		require.Contains(t, err.Error(), "--url")
	}
}

// Every bad flag is named at once.
func TestScenarioCheckNamesEveryBadFlag(t *testing.T) {
	c := &scenConfig{url: "http://192.0.2.1", shoppers: 0, wsShare: 1.5, buyShare: -0.1, leaveShare: math.NaN(),
		arrive: -time.Second, duration: 0, reqTimeout: 0, progressEvery: 0, conns: 0, maxSockets: -1,
		stock: 0, rate: 0, maxActive: 0, ticketTTL: 5, hold: -1}
	err := c.check()
	require.Error(t, err)
	for _, f := range []string{"--url", "--shoppers", "--ws-share", "--buy-share", "--leave-share", "--arrive",
		"--duration", "--timeout", "--progress-every", "--conns", "--max-sockets", "--stock", "--rate",
		"--max-active", "--ticket-ttl", "--hold", "--out"} {
		require.Contains(t, err.Error(), f)
	}
	// with --sale the sale's own flags are not checked
	c = &scenConfig{url: "http://127.0.0.1:1", sale: "given", shoppers: 1, duration: time.Second,
		reqTimeout: time.Second, progressEvery: time.Second, conns: 1, out: "x"}
	require.NoError(t, c.check())
}

// The sockets open at once are capped by --max-sockets or by the file
// limit, and the run says which.
func TestSocketCap(t *testing.T) {
	var log bytes.Buffer
	s := &scenario{c: &scenConfig{shoppers: 100, wsShare: 0.8, conns: 16, maxSockets: 5, log: &log}}
	s.capSockets()
	require.Equal(t, 5, s.sockCap)
	require.Equal(t, 5, cap(s.sockets))
	require.Contains(t, log.String(), "at most 5 WebSockets open at once, by --max-sockets")

	log.Reset()
	s = &scenario{c: &scenConfig{shoppers: 1_000_000, wsShare: 1, conns: 100, log: &log}}
	s.capSockets()
	require.Positive(t, s.fileSoft)
	require.Equal(t, int(s.fileSoft)-100-64, s.sockCap)
	require.Contains(t, log.String(), "by the file limit (RLIMIT_NOFILE")

	log.Reset()
	s = &scenario{c: &scenConfig{shoppers: 10, wsShare: 1, conns: 16, log: &log}}
	s.capSockets()
	require.Empty(t, log.String(), "no note when nothing is capped")
}

// On a terminal the live line is redrawn in place (\r, erase to the end,
// cut to the width) and ends with a newline when the run stops.
func TestProgressRedrawsOnATerminal(t *testing.T) {
	var out testenv.SyncBuffer
	s := &scenario{c: &scenConfig{url: "http://127.0.0.1:1", shoppers: 10, tty: true, width: 60,
		progressEvery: 5 * time.Second, out2: &out}, adm: nil, start: time.Now()}
	s.adm = newClient(1)
	s.sale = "x"
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); s.sampler(stop) }()
	require.Eventually(t, func() bool { return strings.Count(out.String(), "\r") >= 2 }, 10*time.Second, 20*time.Millisecond)
	close(stop)
	<-done
	got := out.String()
	require.True(t, strings.HasSuffix(got, "\x1b[K\n"), "%q", got)
	require.Equal(t, 1, strings.Count(got, "\n"), "one line, redrawn: %q", got)
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\r")[1:] {
		l = strings.TrimSuffix(l, "\x1b[K")
		require.Less(t, len([]rune(l)), 60, "%q", l)
		require.Contains(t, l, "/10 done")
	}
}

// A file is no terminal: the live line goes one per interval, not redrawn.
func TestTermWidthOfAFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	defer f.Close()
	_, ok := termWidth(f)
	require.False(t, ok)
}
