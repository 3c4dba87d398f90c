// This file starts the one server every API test talks to: a real store in a
// temporary directory, a small generated province run once through the real
// pipeline, a user for every role, and the real server on a loopback port.
// It is started lazily, once per test process (fuzz workers included), and
// torn down by TestMain.
package api_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"collider/api"
	"collider/casebook"
	"collider/jobs"
	"collider/models"
	"collider/store"
	"collider/synth"
)

// The roles of the authorization matrix: a user per role, the city bureau
// twice (its own city's objects, another city's), and two ways of having no
// valid token.
const (
	asProvince  = "province"
	asCityOwn   = "city-own"
	asCityOther = "city-other"
	asModeler   = "modeler"
	asAdmin     = "admin"
	asNoToken   = "no-token"
	asRevoked   = "revoked"
)

var matrixRoles = []string{asProvince, asCityOwn, asCityOther, asModeler, asAdmin, asNoToken, asRevoked}

// ownCity is the city bureau the tests act for; it has leads in the batch.
const ownCity = "620100"

type testEnv struct {
	dir      string
	base     string // http://127.0.0.1:port
	store    *store.Store
	cb       *casebook.Casebook
	pipeline *jobs.Pipeline
	srv      *api.Server
	client   *http.Client
	cancel   context.CancelFunc
	served   chan error
	sandbox  *jobs.Sandbox
	wb       *jobs.Workbench

	batch      int64  // the batch the first run published
	otherCity  string // another city with leads in it
	delivery   int64  // a delivery with rejects
	users      map[string]casebook.User
	tokens     map[string]string
	firstRunID int64
}

var (
	envOnce sync.Once
	env     *testEnv
	envErr  error
)

func TestMain(m *testing.M) {
	if jobs.IsSandboxChild() {
		jobs.SandboxMain() // previews run their drafts in this binary, started again
	}
	// The models' fixture runs (behind every preview) log at info.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	code := m.Run()
	if env != nil {
		env.close()
	}
	os.Exit(code)
}

// getEnv returns the shared server, starting it on first use.
func getEnv(tb testing.TB) *testEnv {
	tb.Helper()
	envOnce.Do(func() { env, envErr = setup() })
	if envErr != nil {
		tb.Fatalf("test server: %v", envErr)
	}
	return env
}

func setup() (_ *testEnv, err error) {
	ctx := context.Background()
	e := &testEnv{users: map[string]casebook.User{}, tokens: map[string]string{}}
	if e.dir, err = os.MkdirTemp("", "collider-api-test-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	inbox := e.dir + "/inbox"
	// Planted frauds scale with persons (3 per 1,000): 100,000 persons give
	// ownCity about 28 new leads, enough for every test that takes one
	// of its own (leadsIn).
	if _, err := synth.Generate(ctx, synth.Options{Out: inbox, Seed: 7, Persons: 100000, Settlements: 12000, Bad: true}); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	if e.store, err = store.Open(ctx, store.Options{Dir: e.dir + "/data", MemoryLimit: "2GB", Threads: 2,
		Files: []string{inbox, e.dir + "/data/sandbox"}}); err != nil {
		return nil, err
	}
	ms, err := models.Load(models.Embedded())
	if err != nil {
		return nil, err
	}
	cat := models.NewCatalog()
	cat.Set(ms...)
	e.cb = casebook.New(e.store.DB)
	e.cb.TmpDir = e.dir
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	e.sandbox = &jobs.Sandbox{Snapshot: &jobs.Snapshot{Store: e.store, Dir: e.dir + "/data/sandbox", KeyFile: e.dir + "/pseudonym.key", Log: log},
		Scratch: e.dir + "/data/tmp", Log: log}
	e.pipeline = &jobs.Pipeline{Store: e.store, Casebook: e.cb, Catalog: cat, Inbox: inbox, Log: log, Snapshot: e.sandbox.Snapshot}
	out, err := e.pipeline.Run(ctx, "cli", "api-test")
	if out.BatchID == 0 || out.Batch.Clues == 0 {
		return nil, fmt.Errorf("pipeline: batch %d with %d clues, status %s: %v", out.BatchID, out.Batch.Clues, out.Status, err)
	}
	e.batch, e.firstRunID = out.BatchID, out.RunID

	// Another city with leads: the one with the most, other than ours.
	var ownLeads int
	if err := e.store.DB.QueryRowContext(ctx, "SELECT count(*) FROM casebook.leads WHERE city_code = ?", ownCity).Scan(&ownLeads); err != nil {
		return nil, err
	}
	if ownLeads < 8 {
		return nil, fmt.Errorf("city %s has %d leads; the tests need a city with at least 8", ownCity, ownLeads)
	}
	if err := e.store.DB.QueryRowContext(ctx, `SELECT city_code FROM casebook.leads
		WHERE city_code <> ? AND city_code NOT LIKE '__0000' GROUP BY city_code ORDER BY count(*) DESC, city_code LIMIT 1`, ownCity).Scan(&e.otherCity); err != nil {
		return nil, fmt.Errorf("another city with leads: %w", err)
	}
	if err := e.store.DB.QueryRowContext(ctx, `SELECT delivery_id FROM feeds.deliveries WHERE rejected > 0 ORDER BY delivery_id LIMIT 1`).Scan(&e.delivery); err != nil {
		return nil, fmt.Errorf("a delivery with rejects: %w", err)
	}

	add := func(key, name string, role casebook.Role, city string) error {
		u, token, err := e.cb.AddUser(ctx, name, role, city)
		if err != nil {
			return err
		}
		e.users[key], e.tokens[key] = u, token
		return nil
	}
	for _, u := range []struct {
		key, name string
		role      casebook.Role
		city      string
	}{
		{asProvince, "省专班", casebook.RoleProvince, ""},
		{asCityOwn, "兰州市医保局", casebook.RoleCity, ownCity},
		{asCityOther, "另一市医保局", casebook.RoleCity, e.otherCity},
		{asModeler, "建模人员", casebook.RoleModeler, ""},
		{asAdmin, "运维", casebook.RoleAdmin, ""},
		{asRevoked, "已注销", casebook.RoleProvince, ""},
	} {
		if err := add(u.key, u.name, u.role, u.city); err != nil {
			return nil, err
		}
	}
	if err := e.cb.Revoke(ctx, e.users[asRevoked].ID); err != nil {
		return nil, err
	}
	e.tokens[asNoToken] = ""

	e.wb = &jobs.Workbench{Previewer: &jobs.Previewer{Store: e.store, Casebook: e.cb, Catalog: cat, Sandbox: e.sandbox}, Log: log}
	if err := e.wb.Start(ctx, ms); err != nil {
		return nil, err
	}
	srvCtx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	e.srv = api.New(api.Config{Store: e.store, Casebook: e.cb, Runs: api.PipelineRuns(srvCtx, e.pipeline),
		Models: api.Models{Catalog: cat, Previewer: e.wb.Previewer, Workbench: e.wb}, Log: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.base = "http://" + ln.Addr().String()
	e.served = make(chan error, 1)
	go func() { e.served <- e.srv.Serve(srvCtx, ln, 5*time.Second) }()
	e.client = &http.Client{Timeout: 2 * time.Minute}
	return e, nil
}

func (e *testEnv) close() {
	if e.cancel != nil {
		e.cancel()
		select {
		case <-e.served:
		case <-time.After(10 * time.Second):
		}
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e.pipeline.Stop(stop)
		cancel()
	}
	if e.store != nil {
		e.store.Close()
	}
	os.RemoveAll(e.dir)
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	b := r.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

// do sends a request as a matrix role ("" body: none).
func (e *testEnv) do(tb testing.TB, as, method, path, body string) response {
	tb.Helper()
	r, err := e.try(as, method, path, body)
	if err != nil {
		tb.Fatalf("%s %s as %s: %v", method, path, as, err)
	}
	return r
}

func (e *testEnv) try(as, method, path, body string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok, ok := e.tokens[as]; !ok {
		return response{}, fmt.Errorf("no role %q", as)
	} else if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// getJSON GETs path as a role, wants 200 and decodes the body into v.
func (e *testEnv) getJSON(tb testing.TB, as, path string, v any) {
	tb.Helper()
	r := e.do(tb, as, http.MethodGet, path, "")
	if r.status != http.StatusOK {
		tb.Fatalf("GET %s as %s: %s", path, as, r)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		tb.Fatalf("GET %s as %s: %v", path, as, err)
	}
}

// apiError is the one error shape.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// checkErrorShape reports what is wrong with an error response, or "".
func checkErrorShape(r response) string {
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Sprintf("Content-Type %q, want JSON", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	var e apiError
	if err := dec.Decode(&e); err != nil {
		return fmt.Sprintf("body %q is not the error shape: %v", r.body, err)
	}
	want := map[int]string{400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 500: "internal"}
	if code, ok := want[r.status]; ok && e.Error.Code != code {
		return fmt.Sprintf("status %d with code %q, want %q", r.status, e.Error.Code, code)
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		return fmt.Sprintf("empty code or message in %s", r.body)
	}
	return ""
}

// scalar runs a one-value query (no row leaves dst as it was).
func (e *testEnv) scalar(tb testing.TB, dst any, q string, args ...any) {
	tb.Helper()
	if err := e.store.DB.QueryRowContext(context.Background(), q, args...).Scan(dst); err != nil && !errors.Is(err, sql.ErrNoRows) {
		tb.Fatalf("%s: %v", q, err)
	}
}

// leadsIn returns n lead ids of a city in a status, from the first batch,
// each handed out once per process so that tests never share a lead.
func (e *testEnv) leadsIn(tb testing.TB, city, status string, n int) []int64 {
	tb.Helper()
	leadMu.Lock()
	defer leadMu.Unlock()
	rows, err := e.store.DB.QueryContext(context.Background(), `SELECT lead_id FROM casebook.leads
		WHERE city_code = ? AND status = ? ORDER BY lead_id DESC`, city, status)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() && len(out) < n {
		var id int64
		if err := rows.Scan(&id); err != nil {
			tb.Fatal(err)
		}
		if !takenLeads[id] {
			takenLeads[id] = true
			out = append(out, id)
		}
	}
	if len(out) < n {
		tb.Fatalf("only %d unused %s leads in %s, want %d (more tests take leads than the fixture has: raise Persons in setup)", len(out), status, city, n)
	}
	return out
}

var (
	leadMu     sync.Mutex
	takenLeads = map[int64]bool{}
)

// liveVersion is the version a model runs with now.
func (e *testEnv) liveVersion(tb testing.TB, model string) string {
	tb.Helper()
	m, err := e.wb.Previewer.Catalog.Model(model)
	if err != nil {
		tb.Fatal(err)
	}
	v, _ := m.Values(nil)
	return models.Version(m, v)
}

// addDraft records a pending draft of deceased_claims with another grace
// period, against the live version, without a preview: the lifecycle's
// decisions need one, not its sandbox run. A grace period already pending
// gets the draft that holds it.
func (e *testEnv) addDraft(tb testing.TB, grace string) int64 {
	tb.Helper()
	ctx := context.Background()
	live, err := e.wb.Previewer.Catalog.Model("deceased_claims")
	if err != nil {
		tb.Fatal(err)
	}
	params := map[string]string{"grace_days": grace}
	vals, err := live.Values(params)
	if err != nil {
		tb.Fatal(err)
	}
	version := models.Version(live, vals)
	if d, ok, err := e.cb.DraftOf(ctx, "deceased_claims", version); err != nil {
		tb.Fatal(err)
	} else if ok && d.Status == casebook.DraftPending {
		return d.ID
	}
	d := casebook.ModelDraft{Model: "deceased_claims", Version: version, BaseVersion: e.liveVersion(tb, "deceased_claims"),
		Text: live.Text, File: live.File, Params: params, Source: "test", Note: "test draft", Status: casebook.DraftPending, TestsPassed: true}
	if live.Tests != nil {
		d.TestsFile, d.Tests = live.Tests.File, live.Tests.Text
	}
	d, err = e.cb.AddDraft(ctx, e.users[asModeler], d, false)
	if err != nil {
		tb.Fatal(err)
	}
	return d.ID
}

func (e *testEnv) approve(tb testing.TB, id int64) {
	tb.Helper()
	if _, err := e.wb.Approve(context.Background(), e.users[asProvince], id, "test"); err != nil {
		tb.Fatal(err)
	}
}

// rollbackToShipped makes the shipped version of a model live again.
func (e *testEnv) rollbackToShipped(tb testing.TB, model string) {
	tb.Helper()
	ms, err := models.Load(models.Embedded())
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range ms {
		if m.Name != model {
			continue
		}
		v, _ := m.Values(nil)
		if models.Version(m, v) == e.liveVersion(tb, model) {
			return
		}
		if _, err := e.wb.Rollback(context.Background(), e.users[asProvince], model, models.Version(m, v), "test"); err != nil {
			tb.Fatal(err)
		}
	}
}
