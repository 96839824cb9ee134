package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/flashsale/flashsale/testenv"
)

const (
	dashboardFile  = "grafana/flashsale.json"
	alertsFile     = "prometheus/alerts.yml"
	alertTestsFile = "prometheus/alerts_test.yml"
	runbookFile    = "../docs/OPERATIONS.md"
	// runbookURL is where the alerts' runbook_url links point: the
	// repository of the module path, docs/OPERATIONS.md.
	runbookURL = "https://github.com/flashsale/flashsale/blob/main/docs/OPERATIONS.md#"
)

// pendingMetrics are the webhook delivery metrics the dashboard and alerts
// use before every build exports them (the webhook dispatcher exports them
// once it runs; a node without --webhook-url may not).
var pendingMetrics = []string{
	"flashsale_webhook_pending",
	"flashsale_webhook_oldest_pending_seconds",
	"flashsale_webhook_deliveries_total",
}

// promtool is the path of promtool (deploy/services.sh installs it).
func promtool(t *testing.T) string {
	t.Helper()
	return testenv.RequireTool(t, "promtool")
}

// runTool runs a command and returns its combined output, failing the test
// with that output when it exits non-zero.
func runTool(t *testing.T, stdin io.Reader, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Stdin = dir, stdin
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), out)
	return string(out)
}

// scrape is one /metrics answer of a test node that has run a small sale:
// a shopper joined over a WebSocket, was admitted, bought with a hold and
// cancelled, so every family that appears only once used is there.
type scrape struct {
	text  string
	names map[string]bool // sample names (histograms as _bucket, _sum, _count)
}

// scrapeAfterSale starts a node, walks a shopper through a sale and returns
// a scrape in which every name of want (less pendingMetrics) appears; it
// fails naming the ones that never do.
func scrapeAfterSale(t *testing.T, want []string) *scrape {
	t.Helper()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, map[string]any{"stock": 5, "admission_rate": 50, "max_active": 10,
		"hold_ttl_seconds": 300})["id"].(string)
	user := "ops-" + testenv.RandomID()
	join := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, join.Status, "%s", join.Body)
	qt := join.JSON(t)["queue_token"].(string)

	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.URL, "http", "ws", 1)+"/api/v1/sales/"+saleID+"/ws?qt="+qt, nil)
	require.NoError(t, err)
	defer ws.Close()
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(15*time.Second)))
	var frame map[string]any
	for frame["type"] != "admitted" {
		frame = nil
		require.NoError(t, ws.ReadJSON(&frame))
	}
	buy := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", frame["ticket"].(string), `{"quantity":1}`)
	require.Equal(t, http.StatusCreated, buy.Status, "%s", buy.Body)
	order := buy.JSON(t)
	require.Equal(t, "held", order["status"])
	cancel := s.Do(t, "POST", "/api/v1/orders/"+order["id"].(string)+"/cancel", s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, cancel.Status, "%s", cancel.Body)
	require.Equal(t, http.StatusOK, s.Do(t, "GET", "/readyz", "", nil).Status)

	var sc *scrape
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		r := s.Do(t, "GET", "/metrics", "", nil)
		require.Equal(c, http.StatusOK, r.Status)
		sc = parseScrape(c, r.Body)
		var missing []string
		for _, name := range want {
			if !sc.names[name] && !slices.Contains(pendingMetrics, name) {
				missing = append(missing, name)
			}
		}
		require.Empty(c, missing, "metrics used by deploy/ but not exported by a node that ran a sale")
	}, 15*time.Second, 100*time.Millisecond)
	return sc
}

// parseScrape reads the sample names of a text-format scrape.
func parseScrape(t require.TestingT, body []byte) *scrape {
	sc := &scrape{text: string(body), names: map[string]bool{}}
	lines := bufio.NewScanner(bytes.NewReader(body))
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		line := lines.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		require.Positive(t, end, "odd sample line %q", line)
		sc.names[line[:end]] = true
	}
	require.NoError(t, lines.Err())
	return sc
}

// dashboard is the part of a Grafana dashboard JSON the checks read.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	require.NoError(t, dec.Decode(&d), "%s is not valid JSON", dashboardFile)
	return &d
}

// allPanels flattens rows.
func (d *dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// exprs are the dashboard's PromQL expressions (panels and variables),
// with where each comes from.
func (d *dashboard) exprs() map[string]string {
	out := map[string]string{}
	for _, p := range d.allPanels() {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("panel %d %q target %d", p.ID, p.Title, i)] = tg.Expr
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		if m := labelValues.FindStringSubmatch(s); m != nil {
			out["variable "+v.Name] = m[1]
		}
	}
	return out
}

// alertRules is alerts.yml.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadAlerts(t *testing.T) *alertRules {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	require.NoError(t, err)
	var r alertRules
	require.NoError(t, yaml.Unmarshal(b, &r))
	return &r
}

// usedMetrics are the metric names the dashboard and the alerts select,
// each with where it is used.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	for where, expr := range loadDashboard(t).exprs() {
		names, err := metricNames(promQL(expr))
		require.NoError(t, err, where)
		require.NotEmpty(t, names, "%s selects no metric: %s", where, expr)
		for _, n := range names {
			used[n] = append(used[n], "dashboard "+where)
		}
	}
	for _, g := range loadAlerts(t).Groups {
		for _, r := range g.Rules {
			names, err := metricNames(r.Expr)
			require.NoError(t, err, r.Alert)
			require.NotEmpty(t, names, "alert %s selects no metric", r.Alert)
			for _, n := range names {
				used[n] = append(used[n], "alert "+r.Alert)
			}
		}
	}
	return used
}

// TestOpsKitMatchesRealMetrics: every metric the dashboard and the alerts
// select is exported by a real node that ran a sale (or is one of the
// webhook metrics), and promtool finds nothing to say about the scrape.
func TestOpsKitMatchesRealMetrics(t *testing.T) {
	t.Parallel()
	tool := promtool(t)
	used := usedMetrics(t)
	// what the issue asks the kit to watch, so the check cannot pass on a
	// dashboard that dropped it
	for _, name := range []string{
		"flashsale_queue_length", "flashsale_admissions_total", "flashsale_checkouts_total",
		"flashsale_http_request_duration_seconds_bucket", "flashsale_websocket_connections",
		"flashsale_joins_total", "flashsale_webhook_pending", "flashsale_webhook_oldest_pending_seconds",
		"flashsale_webhook_deliveries_total",
	} {
		require.Contains(t, used, name, "the dashboard and alerts should use %s", name)
	}
	want := make([]string, 0, len(used))
	for name := range used {
		want = append(want, name)
	}
	sort.Strings(want)

	sc := scrapeAfterSale(t, want)
	for _, name := range want {
		if !sc.names[name] {
			t.Logf("%s is not exported yet (a webhook metric); used by %v", name, used[name])
		}
	}
	// promtool's lint of the exposition: names, units, HELP, counters' _total
	out := runTool(t, strings.NewReader(sc.text), "", tool, "check", "metrics")
	require.Empty(t, strings.TrimSpace(out), "promtool check metrics")
}

// TestDashboard: the dashboard is importable anywhere (a data source
// variable, no fixed data source), its panels fit the grid and have unique
// ids, and promtool parses every expression in it.
func TestDashboard(t *testing.T) {
	t.Parallel()
	tool := promtool(t)
	d := loadDashboard(t)
	require.NotEmpty(t, d.UID)
	require.NotEmpty(t, d.Title)

	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	require.Equal(t, "datasource", vars["datasource"], "a variable named datasource of type datasource")

	ids := map[int]string{}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range d.allPanels() {
		require.NotZero(t, p.ID, "panel %q has no id", p.Title)
		require.NotContains(t, ids, p.ID, "panel id %d of %q is also %q", p.ID, p.Title, ids[p.ID])
		ids[p.ID] = p.Title
		require.NotEmpty(t, p.Title, "panel %d has no title", p.ID)
		require.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "panel %q is wider than the grid", p.Title)
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		require.NotNil(t, p.Datasource, "panel %q names no data source", p.Title)
		require.Equal(t, "${datasource}", p.Datasource.UID, "panel %q must use the datasource variable", p.Title)
		for _, tg := range p.Targets {
			require.NotNil(t, tg.Datasource, "a query of %q names no data source", p.Title)
			require.Equal(t, "${datasource}", tg.Datasource.UID, "a query of %q must use the datasource variable", p.Title)
		}
	}
	// every expression as a recording rule, for promtool's PromQL parser
	for where, expr := range d.exprs() {
		n++
		b, err := json.Marshal(promQL(expr)) // a JSON string is a YAML string
		require.NoError(t, err)
		fmt.Fprintf(&rules, "      - record: dashboard:expr_%d # %s\n        expr: %s\n", n, strings.ReplaceAll(where, "\n", " "), b)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	require.NoError(t, os.WriteFile(file, []byte(rules.String()), 0o600))
	out := runTool(t, nil, "", tool, "check", "rules", file)
	require.Contains(t, out, fmt.Sprintf("SUCCESS: %d rules found", n))
}

// TestAlertRules: promtool accepts alerts.yml and its unit tests pass; each
// alert has a severity, a summary, a description and a runbook link to a
// section of docs/OPERATIONS.md that exists.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	tool := promtool(t)
	rules := loadAlerts(t)
	out := runTool(t, nil, "", tool, "check", "rules", alertsFile)
	require.Contains(t, out, "SUCCESS")
	out = runTool(t, nil, filepath.Dir(alertTestsFile), tool, "test", "rules", filepath.Base(alertTestsFile))
	require.Contains(t, out, "SUCCESS")

	anchors := runbookAnchors(t)
	tests, err := os.ReadFile(alertTestsFile)
	require.NoError(t, err)
	count := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s: only alerts belong in alerts.yml", g.Name)
			count++
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], "alert %s: severity", r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], "alert %s: summary", r.Alert)
			require.NotEmpty(t, r.Annotations["description"], "alert %s: description", r.Alert)
			url := r.Annotations["runbook_url"]
			require.True(t, strings.HasPrefix(url, runbookURL), "alert %s: runbook_url %q should start with %s", r.Alert, url, runbookURL)
			anchor := strings.TrimPrefix(url, runbookURL)
			require.Contains(t, anchors, anchor, "alert %s: %s has no section #%s", r.Alert, runbookFile, anchor)
			require.Contains(t, string(tests), "alertname: "+r.Alert+"\n", "alert %s has no unit test in %s", r.Alert, alertTestsFile)
		}
	}
	require.GreaterOrEqual(t, count, 6)
}

// runbookAnchors are the anchors GitHub makes of the runbook's headings:
// lower case, spaces to "-", other punctuation dropped.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(runbookFile)
	require.NoError(t, err)
	anchors := map[string]bool{}
	inFence := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var slug strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				slug.WriteRune(r)
			case r == ' ':
				slug.WriteByte('-')
			}
		}
		anchors[slug.String()] = true
	}
	return anchors
}
