// This file is the authorization matrix: every route the server registers ×
// every role, with the exact status each must get, and the checks that run
// over every answer of the matrix: the error shape, no other city's data in
// a city bureau's answers, and no unmasked personal data in a modeler's.
package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"collider/casebook"
)

// roleStatus is the status each signed-in role gets; callers without a
// valid token get 401 on every /api/v1 route.
type roleStatus struct{ province, cityOwn, cityOther, modeler, admin int }

func (w roleStatus) of(as string) int {
	switch as {
	case asProvince:
		return w.province
	case asCityOwn:
		return w.cityOwn
	case asCityOther:
		return w.cityOther
	case asModeler:
		return w.modeler
	case asAdmin:
		return w.admin
	}
	return http.StatusUnauthorized
}

const (
	s200 = http.StatusOK
	s201 = http.StatusCreated
	s202 = http.StatusAccepted
	s204 = http.StatusNoContent
	s403 = http.StatusForbidden
	s404 = http.StatusNotFound
)

var (
	everyone   = roleStatus{s200, s200, s200, s200, s200}
	casework   = roleStatus{s200, s200, s200, s403, s403}
	ownObject  = roleStatus{s200, s200, s404, s200, s200} // another city's bureau gets 404, not 403: no hint it exists
	ownLead    = roleStatus{s200, s200, s404, s403, s403}
	ledger     = roleStatus{s200, s403, s403, s403, s200}
	adminOnly  = roleStatus{s403, s403, s403, s403, s200}
	modelRoom  = roleStatus{s200, s403, s403, s200, s200}
	suppressor = roleStatus{s200, s403, s403, s200, s403}
)

// matrixCase is one route's request and the statuses it must get.
type matrixCase struct {
	public bool // no token needed: 200 for every caller
	want   roleStatus
	// request returns the path and body as a role sends it; it may first
	// create what the request consumes (a fresh lead, user or suppression).
	request func(t *testing.T, e *testEnv, as string) (path, body string)
	after   func(t *testing.T, e *testEnv, r response) // e.g. wait for a started run
}

func get(path string) func(*testing.T, *testEnv, string) (string, string) {
	return func(*testing.T, *testEnv, string) (string, string) { return path, "" }
}

// matrixFixture holds the objects the matrix requests name: all in ownCity.
type matrixFixture struct {
	lead int64 // a lead of ownCity, read but never changed
}

func matrixCases(t *testing.T, e *testEnv) map[string]matrixCase {
	fx := matrixFixture{lead: e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]}
	ctx := context.Background()
	batch := fmt.Sprint(e.batch)
	lead := fmt.Sprint(fx.lead)
	return map[string]matrixCase{
		"GET /healthz":                   {public: true, request: get("/healthz")},
		"GET /metrics":                   {public: true, request: get("/metrics")},
		"GET /api/v1/openapi.json":       {public: true, request: get("/api/v1/openapi.json")},
		"GET /api/v1/me":                 {want: everyone, request: get("/api/v1/me")},
		"GET /api/v1/batches":            {want: everyone, request: get("/api/v1/batches")},
		"GET /api/v1/batches/:id":        {want: everyone, request: get("/api/v1/batches/" + batch)},
		"GET /api/v1/batches/:id/export": {want: everyone, request: get("/api/v1/batches/" + batch + "/export?format=csv")},
		"GET /api/v1/clues":              {want: everyone, request: get("/api/v1/clues")},
		"GET /api/v1/clues/export":       {want: everyone, request: get("/api/v1/clues/export?format=csv")},
		"GET /api/v1/clues/:id":          {want: ownObject, request: get("/api/v1/clues/" + lead)},
		"GET /api/v1/leads":              {want: casework, request: get("/api/v1/leads")},
		"GET /api/v1/leads/:id":          {want: ownLead, request: get("/api/v1/leads/" + lead)},
		"GET /api/v1/leads/:id/events":   {want: ownLead, request: get("/api/v1/leads/" + lead + "/events")},
		"POST /api/v1/leads/:id/events": {want: roleStatus{s201, s201, s404, s403, s403},
			request: func(t *testing.T, e *testEnv, as string) (string, string) {
				switch as {
				case asCityOwn: // the bureau accepts a new lead of its own
					id := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]
					return fmt.Sprintf("/api/v1/leads/%d/events", id), `{"action":"accept"}`
				case asProvince: // the province reassigns a returned one
					id := e.leadsIn(t, ownCity, casebook.StatusNew, 1)[0]
					if _, err := e.cb.Act(ctx, e.users[asCityOwn], id, casebook.Action{Action: casebook.ActionReturn, Note: "非本市机构"}); err != nil {
						t.Fatal(err)
					}
					return fmt.Sprintf("/api/v1/leads/%d/events", id), `{"action":"reassign","city_code":"` + ownCity + `"}`
				}
				return "/api/v1/leads/" + lead + "/events", `{"action":"accept"}`
			}},
		"GET /api/v1/metrics":                    {want: everyone, request: get("/api/v1/metrics?by=city")},
		"GET /api/v1/reports/monthly":            {want: casework, request: get("/api/v1/reports/monthly?format=json")},
		"GET /api/v1/deliveries":                 {want: ledger, request: get("/api/v1/deliveries")},
		"GET /api/v1/deliveries/:id":             {want: ledger, request: get(fmt.Sprintf("/api/v1/deliveries/%d", e.delivery))},
		"GET /api/v1/deliveries/:id/rejects.csv": {want: ledger, request: get(fmt.Sprintf("/api/v1/deliveries/%d/rejects.csv", e.delivery))},
		"GET /api/v1/users":                      {want: adminOnly, request: get("/api/v1/users")},
		"POST /api/v1/users": {want: roleStatus{s403, s403, s403, s403, s201},
			request: func(_ *testing.T, _ *testEnv, as string) (string, string) {
				return "/api/v1/users", `{"name":"matrix ` + as + `","role":"modeler"}`
			}},
		"DELETE /api/v1/users/:id": {want: roleStatus{s403, s403, s403, s403, s204},
			request: func(t *testing.T, e *testEnv, as string) (string, string) {
				u, _, err := e.cb.AddUser(ctx, "matrix victim "+as, casebook.RoleModeler, "")
				if err != nil {
					t.Fatal(err)
				}
				return fmt.Sprintf("/api/v1/users/%d", u.ID), ""
			}},
		"GET /api/v1/audit":        {want: ledger, request: get("/api/v1/audit")},
		"GET /api/v1/check":        {want: adminOnly, request: get("/api/v1/check")},
		"GET /api/v1/backups":      {want: adminOnly, request: get("/api/v1/backups")},
		"POST /api/v1/backups":     {want: adminOnly, request: get("/api/v1/backups")},
		"GET /api/v1/models":       {want: modelRoom, request: get("/api/v1/models")},
		"GET /api/v1/models/:name": {want: modelRoom, request: get("/api/v1/models/deceased_claims")},
		// A draft with a longer grace period drops some live flags: the
		// preview then shows persons (masked for the modeler).
		"POST /api/v1/models/:name/preview": {want: roleStatus{s200, s403, s403, s200, s403},
			request: func(*testing.T, *testEnv, string) (string, string) {
				return "/api/v1/models/deceased_claims/preview", `{"params":{"grace_days":"30"}}`
			}},
		"GET /api/v1/suppressions": {want: suppressor, request: get("/api/v1/suppressions")},
		"POST /api/v1/suppressions": {want: roleStatus{s201, s403, s403, s201, s403},
			request: func(_ *testing.T, _ *testEnv, as string) (string, string) {
				return "/api/v1/suppressions", `{"kind":"institution","institution_id":"P62999900001","reason":"matrix ` + as + `"}`
			}},
		"DELETE /api/v1/suppressions/:id": {want: roleStatus{s200, s403, s403, s200, s403},
			request: func(t *testing.T, e *testEnv, as string) (string, string) {
				s, err := e.cb.Suppress(ctx, e.users[asProvince], casebook.Suppression{Kind: "institution", InstitutionID: "P62999900002", Reason: "matrix " + as})
				if err != nil {
					t.Fatal(err)
				}
				return fmt.Sprintf("/api/v1/suppressions/%d", s.ID), ""
			}},
		"GET /api/v1/runs":     {want: modelRoom, request: get("/api/v1/runs")},
		"GET /api/v1/runs/:id": {want: modelRoom, request: get(fmt.Sprintf("/api/v1/runs/%d", e.firstRunID))},
		"POST /api/v1/runs": {want: roleStatus{s202, s403, s403, s403, s202}, request: get("/api/v1/runs"),
			after: func(t *testing.T, e *testEnv, r response) {
				if r.status == s202 {
					e.waitForRuns(t)
				}
			}},
		// The lifecycle: a submission runs the sandbox; the decisions are
		// the province's, on drafts made for the request; an approval or a
		// roll back is undone after, so that the live version stays the
		// shipped one for the other tests.
		"POST /api/v1/models/:name/drafts": {want: roleStatus{s201, s403, s403, s201, s403},
			request: func(_ *testing.T, _ *testEnv, as string) (string, string) {
				grace := map[string]string{asProvince: "41", asModeler: "42"}[as]
				return "/api/v1/models/deceased_claims/drafts", `{"params":{"grace_days":"` + grace + `"},"note":"matrix"}`
			}},
		"GET /api/v1/models/:name/history": {want: modelRoom, request: get("/api/v1/models/deceased_claims/history")},
		"POST /api/v1/models/:name/rollback": {want: roleStatus{s200, s403, s403, s403, s403},
			request: func(t *testing.T, e *testEnv, as string) (string, string) {
				shipped := e.liveVersion(t, "deceased_claims")
				if as == asProvince {
					e.approve(t, e.addDraft(t, "43"))
				}
				return "/api/v1/models/deceased_claims/rollback", `{"version":"` + shipped + `","note":"matrix"}`
			}},
		"GET /api/v1/drafts": {want: modelRoom, request: get("/api/v1/drafts?status=pending")},
		"GET /api/v1/drafts/:id": {want: modelRoom, request: func(t *testing.T, e *testEnv, _ string) (string, string) {
			return fmt.Sprintf("/api/v1/drafts/%d", e.addDraft(t, "44")), ""
		}},
		"POST /api/v1/drafts/:id/approve": {want: roleStatus{s200, s403, s403, s403, s403},
			request: func(t *testing.T, e *testEnv, as string) (string, string) {
				return fmt.Sprintf("/api/v1/drafts/%d/approve", e.addDraft(t, "45")), `{"note":"matrix"}`
			},
			after: func(t *testing.T, e *testEnv, r response) {
				if r.status == s200 {
					e.rollbackToShipped(t, "deceased_claims")
				}
			}},
		"POST /api/v1/drafts/:id/reject": {want: roleStatus{s200, s403, s403, s403, s403},
			request: func(t *testing.T, e *testEnv, as string) (string, string) {
				return fmt.Sprintf("/api/v1/drafts/%d/reject", e.addDraft(t, "46")), `{"reason":"matrix"}`
			}},
	}
}

// waitForRuns waits until no run is running, so that the next request
// finds the pipeline free.
func (e *testEnv) waitForRuns(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for e.pipeline.Running() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a run started over the API did not finish in 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// routeKey names a route as "METHOD /path/:param".
func routeKey(r *echo.Route) string { return r.Method + " " + r.Path }

// apiRoutes are the server's API routes (and /healthz, /metrics), without
// Echo's catch-all entries; the pages have a matrix of their own
// (pages_test.go).
func apiRoutes(e *testEnv) []*echo.Route {
	var out []*echo.Route
	for _, r := range e.srv.Echo.Routes() {
		if r.Method != echo.RouteNotFound && (strings.HasPrefix(r.Path, "/api/") || r.Path == "/healthz" || r.Path == "/metrics") {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// matrixResult is every answer of the matrix: route → role → response.
type matrixResult struct {
	routes  []*echo.Route
	cases   map[string]matrixCase
	answers map[string]map[string]response
}

var (
	matrixOnce sync.Once
	matrix     *matrixResult
)

// runMatrix sends every route's request as every role, once per process.
// Routes without a case are left out of the answers (the matrix test
// fails on them).
func runMatrix(t *testing.T) *matrixResult {
	t.Helper()
	e := getEnv(t)
	matrixOnce.Do(func() {
		m := &matrixResult{routes: apiRoutes(e), cases: matrixCases(t, e), answers: map[string]map[string]response{}}
		for _, r := range m.routes {
			c, ok := m.cases[routeKey(r)]
			if !ok {
				continue
			}
			m.answers[routeKey(r)] = map[string]response{}
			for _, as := range matrixRoles {
				path, body := c.request(t, e, as)
				resp := e.do(t, as, r.Method, path, body)
				if c.after != nil {
					c.after(t, e, resp)
				}
				m.answers[routeKey(r)][as] = resp
			}
		}
		matrix = m
	})
	if matrix == nil {
		t.Fatal("the authorization matrix did not run")
	}
	return matrix
}

// Every route × every role gets exactly the status the matrix says; a new
// route without a matrix entry fails here.
func TestAuthz_EveryRouteEveryRoleGetsItsStatus(t *testing.T) {
	m := runMatrix(t)
	var summary strings.Builder
	fmt.Fprintf(&summary, "\n%-44s", "route")
	for _, as := range matrixRoles {
		fmt.Fprintf(&summary, " %10s", as)
	}
	for _, r := range m.routes {
		key := routeKey(r)
		c, ok := m.cases[key]
		if !ok {
			t.Errorf("route %s has no authorization matrix entry", key)
			continue
		}
		fmt.Fprintf(&summary, "\n%-44s", key)
		for _, as := range matrixRoles {
			got := m.answers[key][as]
			want := c.want.of(as)
			if c.public {
				want = s200
			}
			mark := ""
			if got.status != want {
				mark = "!"
				t.Errorf("%s as %s: got %s, want %d", key, as, got, want)
			}
			fmt.Fprintf(&summary, " %10s", fmt.Sprint(got.status, mark))
			if got.status >= 400 {
				if msg := checkErrorShape(got); msg != "" {
					t.Errorf("%s as %s: %s", key, as, msg)
				}
			}
		}
	}
	for key := range m.cases {
		if _, ok := m.answers[key]; !ok {
			t.Errorf("matrix entry %s names no route", key)
		}
	}
	t.Log(summary.String())
}

// An unknown path under /api/v1 needs a token like any other (no probing
// without one), and every refusal is a JSON error.
func TestAuthz_UnknownRoutesAndBadTokensAreJSONErrors(t *testing.T) {
	e := getEnv(t)
	for _, tc := range []struct {
		name, auth, method, path string
		want                     int
	}{
		{"unknown path without a token", "", "GET", "/api/v1/nope", http.StatusUnauthorized},
		{"unknown path with a token", "Bearer " + e.tokens[asProvince], "GET", "/api/v1/nope", http.StatusNotFound},
		// Echo's catch-all for the group answers before its 405.
		{"unknown method on a known path", "Bearer " + e.tokens[asProvince], "PUT", "/api/v1/batches", http.StatusNotFound},
		{"basic instead of bearer", "Basic dXNlcjpwYXNz", "GET", "/api/v1/me", http.StatusUnauthorized},
		{"an empty bearer token", "Bearer ", "GET", "/api/v1/me", http.StatusUnauthorized},
		{"a token that was never issued", "Bearer col_0123456789abcdef", "GET", "/api/v1/me", http.StatusUnauthorized},
		{"the token's hash instead of the token", "Bearer " + casebook.HashToken(e.tokens[asProvince]), "GET", "/api/v1/me", http.StatusUnauthorized},
		{"a revoked token", "Bearer " + e.tokens[asRevoked], "GET", "/api/v1/me", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, e.base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			r := response{status: resp.StatusCode, header: resp.Header, body: body}
			if r.status != tc.want {
				t.Fatalf("got %s, want %d", r, tc.want)
			}
			if msg := checkErrorShape(r); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

// personalData is what must never reach a reader who may not see it: the
// ID numbers and names of clue persons, by the city their leads are in.
type personalData struct {
	ids, names map[string]bool
}

// personsOutside lists the persons of clues not held by city (city "":
// every clue person), leaving out anyone city also holds a lead of, and
// any name shared with such a person.
func (e *testEnv) personsOutside(t *testing.T, city string) personalData {
	t.Helper()
	rows, err := e.store.DB.Query(`SELECT c.person_id, coalesce(c.person_name, ''), l.city_code = ? FROM casebook.clues c
		JOIN casebook.leads l ON l.lead_id = c.clue_id`, city)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := personalData{ids: map[string]bool{}, names: map[string]bool{}}
	mineIDs, mineNames := map[string]bool{}, map[string]bool{}
	for rows.Next() {
		var id, name string
		var mine bool
		if err := rows.Scan(&id, &name, &mine); err != nil {
			t.Fatal(err)
		}
		if mine {
			mineIDs[id], mineNames[name] = true, true
			continue
		}
		out.ids[id] = true
		if len([]rune(name)) > 1 {
			out.names[name] = true
		}
	}
	for id := range mineIDs {
		delete(out.ids, id)
	}
	for n := range mineNames {
		delete(out.names, n)
	}
	return out
}

// found lists the personal data that appears in text.
func (p personalData) found(text string) []string {
	var out []string
	for id := range p.ids {
		if strings.Contains(text, id) {
			out = append(out, id)
		}
	}
	for n := range p.names {
		if strings.Contains(text, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

var (
	maskedID = regexp.MustCompile(`^\d{6}\*{8}\d{3}[\dX]$`)
	// A person as the drafts' sandbox shows one to a modeler: a keyed token.
	sandboxToken = regexp.MustCompile(`^[A-Za-z0-9_-]{12}$`)
	// An 18-character ID number standing alone (not inside a longer number,
	// a decimal or a hash).
	unmaskedID = regexp.MustCompile(`(?:^|[^0-9A-Za-z.])\d{17}[\dX](?:[^0-9A-Za-z]|$)`)
)

// walkJSON calls f for every key and string value in a JSON document.
func walkJSON(v any, f func(obj map[string]any, key string, val string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok {
				f(x, k, s)
			}
			walkJSON(val, f)
		}
	case []any:
		for _, val := range x {
			walkJSON(val, f)
		}
	}
}

// checkMaskedJSON reports unmasked person fields in a modeler's JSON answer:
// a person is a masked ID number, or a token in what the sandbox shows.
func checkMaskedJSON(body []byte) []string {
	var doc any
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	var bad []string
	walkJSON(doc, func(_ map[string]any, k, v string) {
		switch k {
		case "person_id", "PersonID":
			if v != "" && !maskedID.MatchString(v) && !sandboxToken.MatchString(v) {
				bad = append(bad, k+"="+v)
			}
		case "person_name", "PersonName":
			if v != "" && !strings.Contains(v, "*") {
				bad = append(bad, k+"="+v)
			}
		}
	})
	return bad
}

// checkCityJSON reports clues and leads of another city in a city's JSON answer.
func checkCityJSON(body []byte, city string) []string {
	var doc any
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	var bad []string
	walkJSON(doc, func(obj map[string]any, k, v string) {
		_, clue := obj["clue_id"]
		_, lead := obj["lead_id"]
		_, event := obj["event_id"] // a lead's history may name where it was before
		if k == "city_code" && (clue || lead) && !event && v != city {
			bad = append(bad, fmt.Sprintf("%s %v%v", v, obj["clue_id"], obj["lead_id"]))
		}
	})
	return bad
}

// No answer of the matrix shows a city bureau another city's persons, clues
// or leads, and no answer shows a modeler an unmasked ID number or name.
func TestAuthz_MatrixAnswersLeakNothing(t *testing.T) {
	m := runMatrix(t)
	e := getEnv(t)
	viewers := []struct {
		as, city string
	}{
		{asCityOwn, ownCity},
		{asCityOther, e.otherCity},
		{asModeler, ""},
	}
	for _, v := range viewers {
		t.Run(v.as, func(t *testing.T) {
			hidden := e.personsOutside(t, v.city)
			for key, answers := range m.answers {
				r := answers[v.as]
				if leaked := hidden.found(string(r.body)); len(leaked) > 0 {
					t.Errorf("%s: %d persons it may not see, e.g. %s", key, len(leaked), leaked[0])
				}
				if v.as == asModeler {
					if bad := checkMaskedJSON(r.body); len(bad) > 0 {
						t.Errorf("%s: unmasked %v", key, bad)
					}
					if key != "GET /api/v1/openapi.json" && unmaskedID.Match(r.body) {
						t.Errorf("%s: an 18-character ID number in %s", key, unmaskedID.Find(r.body))
					}
				} else if bad := checkCityJSON(r.body, v.city); len(bad) > 0 {
					t.Errorf("%s: clues or leads of other cities: %v", key, bad)
				}
			}
		})
	}
}

// A token revoked over the API stops working at the next request, even
// right after it was used (token lookups are remembered for a while).
func TestAuthz_RevokedTokenStopsAtOnce(t *testing.T) {
	e := getEnv(t)
	r := e.do(t, asAdmin, http.MethodPost, "/api/v1/users", `{"name":"临时城市用户","role":"city","city_code":"`+ownCity+`"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("add user: %s", r)
	}
	var added struct {
		User  casebook.User `json:"user"`
		Token string        `json:"token"`
	}
	if err := json.Unmarshal(r.body, &added); err != nil || added.Token == "" {
		t.Fatalf("add user: %v %s", err, r.body)
	}
	e.tokens["temporary"] = added.Token
	defer delete(e.tokens, "temporary")
	for i := 0; i < 2; i++ {
		if r := e.do(t, "temporary", http.MethodGet, "/api/v1/leads", ""); r.status != http.StatusOK {
			t.Fatalf("the new token: %s", r)
		}
	}
	if r := e.do(t, asAdmin, http.MethodDelete, fmt.Sprintf("/api/v1/users/%d", added.User.ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("revoke: %s", r)
	}
	if r := e.do(t, "temporary", http.MethodGet, "/api/v1/leads", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("the revoked token: %s, want 401", r)
	}
	if r := e.do(t, asAdmin, http.MethodDelete, fmt.Sprintf("/api/v1/users/%d", added.User.ID), ""); r.status != http.StatusNotFound {
		t.Fatalf("revoking twice: %s, want 404", r)
	}
}
