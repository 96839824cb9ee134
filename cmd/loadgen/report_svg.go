package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The report's charts are SVG written here, not with a plotting library:
// five line charts over time need axes, ticks, a legend and polylines and
// nothing more, where gonum/plot would bring a dozen modules (fonts,
// LaTeX, PDF and raster backends) into go.mod. The files stay a few KB,
// their text stays text (a title and a description a screen reader reads,
// numbers a search finds), and the output is the same for the same data.

// chartSeries is one line: a value per sample, NaN where there is none.
type chartSeries struct {
	name  string
	color string
	ys    []float64
}

// chart is a line chart over time (xs in seconds since the run's start).
type chart struct {
	title, yLabel string
	// unit formats a value for the ticks and the description, e.g. "ms".
	unit   string
	xs     []float64
	series []chartSeries
}

const (
	svgW, svgH                     = 720, 300
	padL, padR, padT, padB float64 = 64, 16, 40, 44
)

// niceStep is a tick step of 1, 2, 2.5 or 5 times a power of ten giving about
// n ticks over span.
func niceStep(span float64, n int) float64 {
	if span <= 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// summary describes each series in words (its last and peak values), for
// the chart's <desc> and the report's text.
func (c *chart) summary() string {
	var parts []string
	for _, s := range c.series {
		peak, peakAt, last, n := math.Inf(-1), 0.0, math.NaN(), 0
		for i, y := range s.ys {
			if math.IsNaN(y) {
				continue
			}
			n++
			last = y
			if y > peak {
				peak, peakAt = y, c.xs[i]
			}
		}
		if n == 0 {
			parts = append(parts, s.name+": no data")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: peak %s%s at %.0f s, last %s%s",
			s.name, fmtTick(round3(peak)), c.unit, peakAt, fmtTick(round3(last)), c.unit))
	}
	return strings.Join(parts, "; ")
}

func round3(v float64) float64 {
	if v == 0 || math.IsNaN(v) {
		return v
	}
	p := math.Pow(10, 2-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

// svg draws the chart.
func (c *chart) svg() []byte {
	xmax := 1.0
	if len(c.xs) > 0 {
		xmax = math.Max(1, c.xs[len(c.xs)-1])
	}
	ymax := 0.0
	for _, s := range c.series {
		for _, y := range s.ys {
			if !math.IsNaN(y) && y > ymax {
				ymax = y
			}
		}
	}
	ystep := niceStep(ymax, 5)
	if ymax == 0 {
		ystep = 1
	}
	ytop := math.Ceil(ymax/ystep) * ystep
	if ytop == 0 {
		ytop = ystep
	}
	xstep := niceStep(xmax, 8)
	xtop := math.Ceil(xmax/xstep) * xstep
	pw, ph := svgW-padL-padR, svgH-padT-padB
	px := func(x float64) float64 { return padL + x/xtop*pw }
	py := func(y float64) float64 { return padT + ph - y/ytop*ph }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="t d" font-family="sans-serif" font-size="12">`+"\n",
		svgW, svgH, svgW, svgH)
	fmt.Fprintf(&b, "<title id=\"t\">%s</title>\n<desc id=\"d\">%s</desc>\n", esc(c.title), esc(c.summary()))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", svgW, svgH)
	fmt.Fprintf(&b, `<text x="%g" y="22" font-size="15" font-weight="bold" fill="#222">%s</text>`+"\n", padL, esc(c.title))
	// grid and y ticks
	for y := 0.0; y <= ytop+ystep/2; y += ystep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e3e3e3"/>`+"\n", padL, py(y), padL+pw, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", padL-6, py(y)+4, fmtTick(round3(y)))
	}
	for x := 0.0; x <= xtop+xstep/2; x += xstep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`+"\n", px(x), padT+ph, px(x), padT+ph+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>`+"\n", px(x), padT+ph+17, fmtTick(x))
	}
	fmt.Fprintf(&b, `<path d="M%.1f %.1fV%.1fH%.1f" fill="none" stroke="#666"/>`+"\n", padL, padT, padT+ph, padL+pw)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#444">seconds since the start</text>`+"\n", padL+pw/2, svgH-6)
	fmt.Fprintf(&b, `<text transform="translate(14 %.1f) rotate(-90)" text-anchor="middle" fill="#444">%s</text>`+"\n", padT+ph/2, esc(c.yLabel))
	// lines: one polyline per run of samples without a gap
	for _, s := range c.series {
		var pts []string
		flush := func() {
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" stroke-linejoin="round" points="%s"><title>%s</title></polyline>`+"\n",
					s.color, strings.Join(pts, " "), esc(s.name))
			}
			pts = pts[:0]
		}
		for i, y := range s.ys {
			if i >= len(c.xs) || math.IsNaN(y) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(c.xs[i]), py(y)))
		}
		flush()
	}
	// legend, right-aligned above the plot
	x := float64(svgW) - padR
	for i := len(c.series) - 1; i >= 0; i-- {
		s := c.series[i]
		w := 7*float64(len(s.name)) + 24
		x -= w
		fmt.Fprintf(&b, `<line x1="%.1f" y1="18" x2="%.1f" y2="18" stroke="%s" stroke-width="3"/>`, x, x+14, s.color)
		fmt.Fprintf(&b, `<text x="%.1f" y="22" fill="#222">%s</text>`+"\n", x+18, esc(s.name))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
