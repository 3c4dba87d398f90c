package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	dto "github.com/prometheus/client_model/go"

	"collider/metrics"
)

// The Grafana dashboard and the alert rules that ship in deploy/ query only
// series the service exports: a renamed series breaks this test, not the
// operator's night.
func TestShipped_DashboardAndAlertsQueryExportedSeries(t *testing.T) {
	exported := exportedSeries(t)

	var dashboard any
	b, err := os.ReadFile("../deploy/grafana/collider.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dashboard); err != nil {
		t.Fatalf("deploy/grafana/collider.json: %v", err)
	}
	var exprs []string
	collectExprs(dashboard, &exprs)
	if len(exprs) < 20 {
		t.Fatalf("the dashboard has %d queries", len(exprs))
	}
	checkQueries(t, "deploy/grafana/collider.json", exprs, exported)

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err = os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("deploy/prometheus/alerts.yml: %v", err)
	}
	exprs = nil
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) < 7 {
		t.Fatalf("alerts.yml has %d rules", len(exprs))
	}
	checkQueries(t, "deploy/prometheus/alerts.yml", exprs, exported)
}

func checkQueries(t *testing.T, file string, exprs []string, exported map[string]bool) {
	t.Helper()
	used := map[string]bool{}
	for _, q := range exprs {
		names := seriesIn(q)
		if len(names) == 0 {
			t.Errorf("%s: %q names no series", file, q)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s: %q queries %s, which collider does not export", file, q, n)
			}
			used[n] = true
		}
	}
	var list []string
	for n := range used {
		list = append(list, n)
	}
	sort.Strings(list)
	t.Logf("%s: %d queries over %d series, all exported: %s", file, len(exprs), len(list), strings.Join(list, " "))
}

// exportedSeries is every series name /metrics serves: what a real scrape
// after a run shows, and what the collectors describe (a run's progress is
// there only while a run is).
func exportedSeries(t *testing.T) map[string]bool {
	e := newEnv(t)
	e.firstRun(t)
	e.scrape(t) // so that the HTTP series count a request
	out := map[string]bool{}
	for name, f := range e.scrape(t).fams {
		out[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name+"_sum"], out[name+"_count"] = true, true
		}
	}
	ch := make(chan *prometheus.Desc, 100)
	go func() {
		metrics.NewPipeline().Describe(ch)
		metrics.NewState(nil, nil).Describe(ch)
		close(ch)
	}()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		m := fq.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		out[m[1]] = true
	}
	for _, n := range []string{"collider_run_progress_percent", "collider_runs_total", "collider_leads", "collider_http_request_seconds_bucket"} {
		if !out[n] {
			t.Fatalf("%s is not among the exported series: %v", n, out)
		}
	}
	return out
}

// collectExprs finds every "expr" of a Grafana dashboard, rows' panels included.
func collectExprs(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "expr" {
				*out = append(*out, s)
				continue
			}
			collectExprs(x, out)
		}
	case []any:
		for _, x := range v {
			collectExprs(x, out)
		}
	}
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promVariables = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promKeywords  = map[string]bool{"and": true, "or": true, "unless": true, "offset": true, "bool": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// seriesIn lists the series a PromQL query selects: what is left of its
// identifiers once strings, Grafana variables, label matchers, ranges,
// grouping clauses, functions, keywords and numbers are taken out.
func seriesIn(q string) []string {
	q = promStrings.ReplaceAllString(q, `""`)
	q = promVariables.ReplaceAllString(q, "")
	q = promMatchers.ReplaceAllString(q, " ")
	q = promGrouping.ReplaceAllString(q, " ")
	var out []string
	for _, m := range promIdent.FindAllStringIndex(q, -1) {
		tok := q[m[0]:m[1]]
		if strings.HasSuffix(tok, "(") || promKeywords[strings.ToLower(tok)] {
			continue // a function or an aggregation, or a keyword
		}
		if m[0] > 0 && (q[m[0]-1] >= '0' && q[m[0]-1] <= '9' || q[m[0]-1] == '.') {
			continue // the unit of a duration (7d) or an exponent
		}
		out = append(out, tok)
	}
	return out
}

// The query reader itself, on the shapes the shipped files use.
func TestShipped_SeriesInAQuery(t *testing.T) {
	for q, want := range map[string]string{
		`time() - collider_last_successful_run_timestamp_seconds > 26 * 3600`:                                            "collider_last_successful_run_timestamp_seconds",
		`increase(collider_deliveries_total{status="failed"}[1d]) > 0`:                                                   "collider_deliveries_total",
		`collider_leads_overdue > 0 and collider_leads_overdue > collider_leads_overdue offset 7d`:                       "collider_leads_overdue collider_leads_overdue collider_leads_overdue",
		`a_total{x="}"} > ignoring(status) b_seconds`:                                                                    "a_total b_seconds",
		`sum by (city, status) (collider_leads{status!="closed"})`:                                                       "collider_leads",
		`histogram_quantile(0.99, sum by (le) (rate(h_bucket{route!~".*(export)$|/metrics"}[$__rate_interval])))`:        "h_bucket",
		`sum without (instance) (rate(x[5m])) / on (job) group_left (city) y * 1e3`:                                      "x y",
		`collider_last_run_timestamp_seconds * 1000`:                                                                     "collider_last_run_timestamp_seconds",
		`sum by (model, version) (c{outcome="confirmed"}) / sum by (model, version) (c{outcome=~"confirmed|dismissed"})`: "c c",
	} {
		if got := strings.Join(seriesIn(q), " "); got != want {
			t.Errorf("seriesIn(%q) = %q, want %q", q, got, want)
		}
	}
}
