// This file starts what the metrics tests scrape: a real store in a
// temporary directory, an inbox of small hand-written Parquet deliveries (one
// that fails, one with rejected rows), the real pipeline with the metrics as
// its observer, and the real server on a loopback port, as `collider serve`
// wires them. Each test gets its own.
package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"collider/api"
	"collider/casebook"
	"collider/jobs"
	"collider/metrics"
	"collider/models"
	"collider/store"
)

// The persons of the fixture: two dead whose cards are still used, one dead
// whom a suppression covers, one alive.
const (
	deadA      = "11010519491231002X" // died 2021-03-02; two visits at the Lanzhou hospital in 2025
	deadB      = "440308199901101512" // died 2022-01-01; a purchase at the Baiyin pharmacy in 2025
	deadHeld   = "430302199312194239" // died 2023-06-30; suppressed (the death date is disputed)
	alive      = "110101199003078670"
	badID      = "440308199901101513" // wrong check character
	hospital   = "H62010200001"       // 城关区, Lanzhou (620100)
	pharmacy   = "P62040200002"       // 白银区, Baiyin (620400)
	lanzhou    = "620100"
	baiyin     = "620400"
	provinceCd = "620000"
)

type env struct {
	dir, inbox string
	store      *store.Store
	cb         *casebook.Casebook
	pipeline   *jobs.Pipeline
	gate       *gate
	base       string
	client     *http.Client
	tokens     map[string]string // province, city (Lanzhou), baiyin
	log        *lockedBuffer     // the structured log, JSON
	clockSkew  atomic.Int64      // added to the casebook's clock
}

// newEnv writes the first deliveries, wires the service and starts it.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{dir: t.TempDir(), tokens: map[string]string{}, log: &lockedBuffer{}}
	e.inbox = filepath.Join(e.dir, "inbox")
	var err error
	if e.store, err = store.Open(ctx, store.Options{Dir: filepath.Join(e.dir, "data"), MemoryLimit: "1GB", Threads: 2, Files: []string{e.dir}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	ms, err := models.Load(models.Embedded())
	if err != nil {
		t.Fatal(err)
	}
	cat := models.NewCatalog()
	cat.Set(ms...)
	log := slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e.cb = casebook.New(e.store.DB)
	e.cb.TmpDir = e.dir
	e.cb.Now = func() time.Time { return time.Now().Add(time.Duration(e.clockSkew.Load())) }

	series := metrics.NewPipeline()
	e.gate = &gate{Pipeline: series, reached: make(chan struct{}), release: make(chan struct{}), finished: make(chan string, 4)}
	e.pipeline = &jobs.Pipeline{Store: e.store, Casebook: e.cb, Catalog: cat, Inbox: e.inbox, Log: log, Observer: e.gate}

	srvCtx, cancel := context.WithCancel(ctx)
	srv := api.New(api.Config{Store: e.store, Casebook: e.cb, Runs: api.PipelineRuns(srvCtx, e.pipeline), Log: log,
		Models: api.Models{Catalog: cat, Previewer: &jobs.Previewer{Store: e.store, Catalog: cat}}})
	srv.Registry().MustRegister(series, metrics.NewState(e.cb, log))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		<-served
		stop, done := context.WithTimeout(context.Background(), 30*time.Second)
		defer done()
		e.pipeline.Stop(stop)
	})
	e.client = &http.Client{Timeout: time.Minute}

	for _, u := range []struct {
		key  string
		role casebook.Role
		city string
	}{{"province", casebook.RoleProvince, ""}, {"city", casebook.RoleCity, lanzhou}, {"baiyin", casebook.RoleCity, baiyin}} {
		_, token, err := e.cb.AddUser(ctx, u.key, u.role, u.city)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[u.key] = token
	}
	if _, err := e.cb.Suppress(ctx, casebook.User{Name: "province", Role: casebook.RoleProvince},
		casebook.Suppression{Kind: "person", PersonID: deadHeld, Reason: "death date disputed by the bureau"}); err != nil {
		t.Fatal(err)
	}

	e.delivery(t, "institutions", "0001", `SELECT '`+hospital+`' AS institution_id, '城关医院' AS name, 'hospital' AS kind, '620102' AS region_code
		UNION ALL SELECT '`+pharmacy+`', '白银大药房', 'pharmacy', '620402'`)
	e.delivery(t, "civil_status", "0001", `SELECT '`+deadA+`' AS person_id, 'deceased' AS status, '2021-03-02' AS death_date
		UNION ALL SELECT '`+deadB+`', 'deceased', '2022-01-01'
		UNION ALL SELECT '`+deadHeld+`', 'deceased', '2023-06-30'
		UNION ALL SELECT '`+alive+`', 'alive', NULL`)
	// Ten rows: four flagged (one of them suppressed), three rejected — two
	// for a bad ID number, two for a bad visit type, one row for both.
	row := func(id, person, inst, kind, start string) string {
		return fmt.Sprintf(`SELECT '%s' AS settlement_id, '%s' AS person_id, '某某' AS person_name, '%s' AS institution_id, '%s' AS visit_type,
			'%s' AS visit_start, NULL::VARCHAR AS visit_end, '%s' AS settled_at, 120.5::DOUBLE AS total_amount, 80.25::DOUBLE AS fund_amount, '620102' AS insured_region`,
			id, person, inst, kind, start, start)
	}
	e.delivery(t, "settlements", "0001", strings.Join([]string{
		row("S1", deadA, hospital, "outpatient", "2025-03-01 10:00:00"),
		row("S2", deadA, hospital, "outpatient", "2025-03-05 10:00:00"),
		row("S3", deadB, pharmacy, "pharmacy", "2025-02-01 10:00:00"),
		row("S4", deadHeld, hospital, "outpatient", "2025-01-10 10:00:00"),
		row("S5", alive, pharmacy, "pharmacy", "2025-01-11 10:00:00"),
		row("S6", alive, hospital, "outpatient", "2025-01-12 10:00:00"),
		row("S7", badID, hospital, "outpatient", "2025-01-13 10:00:00"),
		row("S8", alive, hospital, "emergency", "2025-01-14 10:00:00"),
		row("S9", badID, hospital, "emergency", "2025-01-15 10:00:00"),
		row("S10", alive, pharmacy, "pharmacy", "2025-01-16 10:00:00"),
	}, " UNION ALL "))
	// A locations delivery without its required kind column fails whole.
	e.delivery(t, "locations", "0001", `SELECT 'E1' AS event_id, '`+alive+`' AS person_id,
		TIMESTAMP '2025-01-01 20:00:00' AS start_time, '620102' AS region_code`)
	return e
}

// delivery writes one Parquet file per query into INBOX/feed/name/ and marks it complete.
func (e *env) delivery(t *testing.T, feed, name string, queries ...string) {
	t.Helper()
	dir := filepath.Join(e.inbox, feed, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, q := range queries {
		path := filepath.Join(dir, fmt.Sprintf("part-%05d.parquet", i))
		if _, err := e.store.DB.Exec(fmt.Sprintf("COPY (%s) TO '%s' (FORMAT parquet)", q, path)); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, jobs.SuccessMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// firstRun runs the pipeline from the command line's trigger, as `collider run` would.
func (e *env) firstRun(t *testing.T) jobs.Outcome {
	t.Helper()
	out, err := e.pipeline.Run(context.Background(), "cli", "test")
	if out.Status != jobs.RunPartial || out.BatchID == 0 || len(out.Failed()) != 1 {
		t.Fatalf("first run: status %s, batch %d, %d failed: %v", out.Status, out.BatchID, len(out.Failed()), err)
	}
	if status := <-e.gate.finished; status != jobs.RunPartial {
		t.Fatalf("the observer heard the run finish %s", status)
	}
	return out
}

// do sends a request as a user ("" body: none) and returns status and body.
func (e *env) do(t *testing.T, as, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if as != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[as])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (e *env) getJSON(t *testing.T, as, path string, v any) {
	t.Helper()
	status, body := e.do(t, as, http.MethodGet, path, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// scrape GETs /metrics, with no token, as Prometheus does.
func (e *env) scrape(t *testing.T) scraped {
	t.Helper()
	status, body := e.do(t, "", http.MethodGet, "/metrics", "")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("GET /metrics: %v\n%s", err, body)
	}
	return scraped{fams: fams, text: string(body)}
}

// scraped is one scrape of /metrics.
type scraped struct {
	fams map[string]*dto.MetricFamily
	text string
}

// series finds the sample of a family with exactly these labels (name,
// value pairs): a gauge's or counter's value, a histogram's count.
func (s scraped) series(name string, labels ...string) (float64, bool) {
	f, ok := s.fams[name]
	if !ok {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// want is one expected sample; absent: the series must not be there.
type want struct {
	name   string
	labels []string
	value  float64
	absent bool
}

func (s scraped) check(t *testing.T, wants []want) {
	t.Helper()
	for _, w := range wants {
		got, ok := s.series(w.name, w.labels...)
		switch {
		case w.absent && ok:
			t.Errorf("%s%v = %v, want no such series", w.name, w.labels, got)
		case w.absent:
		case !ok:
			t.Errorf("%s%v: no such series", w.name, w.labels)
		case diff(got, w.value) > 1e-9:
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		default:
			t.Logf("%s%v = %v", w.name, w.labels, got)
		}
	}
}

func diff(a, b float64) float64 {
	if a > b {
		return a - b
	}
	return b - a
}

// gate is the pipeline's observer in these tests: the metrics, and a way to
// hold a run still in the middle of a delivery's load (armed on a detail,
// it blocks there once, after the first rows are counted) and to learn that
// a run finished.
type gate struct {
	*metrics.Pipeline
	mu       sync.Mutex
	detail   string
	reached  chan struct{}
	release  chan struct{}
	finished chan string
}

func (g *gate) arm(detail string) {
	g.mu.Lock()
	g.detail = detail
	g.mu.Unlock()
}

func (g *gate) Progress(p jobs.Progress) {
	g.Pipeline.Progress(p)
	g.mu.Lock()
	hold := g.detail != "" && p.Step == "load" && p.Detail == g.detail && p.Done > 0
	if hold {
		g.detail = ""
	}
	g.mu.Unlock()
	if hold {
		close(g.reached)
		<-g.release
	}
}

func (g *gate) RunFinished(trigger, status string) {
	g.Pipeline.RunFinished(trigger, status)
	g.finished <- status
}

// lockedBuffer collects the log from every goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}
