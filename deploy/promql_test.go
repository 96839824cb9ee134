package deploy_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// grafanaVar matches a Grafana template variable: $name, ${name} or
// ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*`)

// promQL turns a dashboard expression into plain PromQL: Grafana's interval
// variables become a duration and the others (used only inside regex label
// matchers here) match anything.
func promQL(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		name := strings.Trim(v, "${}")
		if i := strings.IndexByte(name, ':'); i >= 0 {
			name = name[:i]
		}
		if strings.HasPrefix(name, "__") { // $__rate_interval, $__interval, $__range
			return "1m"
		}
		return ".*"
	})
}

// promQLWords are the identifiers of PromQL that are not metric names when
// they stand without a "(" after them (functions always have one).
var promQLWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "offset": true, "and": true, "or": true, "unless": true, "atan2": true,
	"inf": true, "nan": true, "start": true, "end": true,
	// aggregations may take their modifier before the parenthesis: sum by (x) (...)
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// labelLists are the words followed by a parenthesised list of label names.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true}

// metricNames returns the metric names a PromQL expression selects, in
// order of first use. It is a lexer, not a parser: it skips strings, label
// matchers ({...}), ranges ([...]) and label lists (by (...)), and takes
// every other identifier not followed by "(" and not a keyword. Syntax is
// promtool's to check; a selector by __name__ is refused, as it would hide
// a name from this check.
func metricNames(expr string) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	// skipString returns the index just past the string literal at i.
	skipString := func(i int) (int, error) {
		q := expr[i]
		for j := i + 1; j < len(expr); j++ {
			switch {
			case expr[j] == '\\' && q != '`':
				j++
			case expr[j] == q:
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("unterminated string at %d in %q", i, expr)
	}
	// skipTo returns the index just past the close that ends the group
	// opened at i, stepping over strings inside it.
	skipTo := func(i int, close byte) (int, error) {
		for j := i + 1; j < len(expr); j++ {
			switch c := expr[j]; {
			case c == '"' || c == '\'' || c == '`':
				k, err := skipString(j)
				if err != nil {
					return 0, err
				}
				j = k - 1
			case c == close:
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("unclosed %q at %d in %q", expr[i], i, expr)
	}
	nextNonSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n' || expr[i] == '\r') {
			i++
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			j, err := skipTo(i, '}')
			if err != nil {
				return nil, err
			}
			if strings.Contains(expr[i:j], "__name__") {
				return nil, fmt.Errorf("selector by __name__ in %q: name the metric instead", expr)
			}
			i = j
		case c == '[':
			j, err := skipTo(i, ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c >= '0' && c <= '9' || c == '.':
			// a number or a duration (5m, 1e3, 0x1f)
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			next := nextNonSpace(j)
			switch {
			case labelLists[word] && next < len(expr) && expr[next] == '(':
				k, err := skipTo(next, ')')
				if err != nil {
					return nil, err
				}
				j = k
			case next < len(expr) && expr[next] == '(':
				// a function or an aggregation
			case promQLWords[word]:
			default:
				if !seen[word] {
					seen[word] = true
					names = append(names, word)
				}
			}
			i = j
		default:
			i++
		}
	}
	return names, nil
}

// TestMetricNames: the lexer finds exactly the metrics, whatever surrounds
// them, so the checks built on it can fail.
func TestMetricNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`flashsale_queue_length`, []string{"flashsale_queue_length"}},
		{`sum by (le, route) (rate(h_bucket{route=~"POST /a/{sale}/b", code!="5.."}[5m]))`, []string{"h_bucket"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{a="x}y"}[$__rate_interval])))`, []string{"h_bucket"}},
		{`sum(rate(a_total[1m])) / sum(rate(b_total[1m])) > 0.5`, []string{"a_total", "b_total"}},
		{`a / on(instance) group_left(version) b`, []string{"a", "b"}},
		{`sum without (instance) (m) and ignoring (x) n unless count(q) > 0`, []string{"m", "n", "q"}},
		{`max(oldest_seconds) > 12 * 3600`, []string{"oldest_seconds"}},
		{`topk(5, sum by (route) (rate(c[1m] offset 5m)))`, []string{"c"}},
		{"x{a=`}`} + y{b='}'} + x", []string{"x", "y"}},
		{`sum by (sale) (q{job=~"$job", sale=~"${sale}"})`, []string{"q"}},
		{`1 + 2e3 - 0x1f`, nil},
	} {
		got, err := metricNames(promQL(tc.expr))
		require.NoError(t, err, tc.expr)
		require.Equal(t, tc.want, got, tc.expr)
	}
	for _, bad := range []string{`{__name__=~"flashsale_.*"}`, `x{a="b}`, `sum(x[5m`} {
		_, err := metricNames(bad)
		require.Error(t, err, bad)
	}
	require.Equal(t, `rate(x{job=~".*"}[1m])`, promQL(`rate(x{job=~"$job"}[$__rate_interval])`))
	require.Equal(t, `x{a=~".*"}`, promQL(`x{a=~"${a:regex}"}`))
}
