// This file keeps the OpenAPI document honest: it describes exactly the
// routes the server registers, the roles each really allows (as the
// authorization matrix found them), and the statuses it answers.
package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

type openAPIOperation struct {
	Roles      []string                   `json:"x-roles"`
	Security   *[]map[string][]string     `json:"security"`
	Responses  map[string]json.RawMessage `json:"responses"`
	Parameters []struct {
		Name string `json:"name"`
		In   string `json:"in"`
	} `json:"parameters"`
}

type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

var echoParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)`)

// openAPIPath writes an Echo path as OpenAPI does: /leads/:id → /leads/{id}.
func openAPIPath(p string) string { return echoParam.ReplaceAllString(p, "{$1}") }

// loadOpenAPI reads the document the server serves, which must be the file.
func loadOpenAPI(t *testing.T, e *testEnv) (openAPIDoc, map[string]openAPIOperation) {
	t.Helper()
	r := e.do(t, asNoToken, http.MethodGet, "/api/v1/openapi.json", "")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/v1/openapi.json without a token: %s", r)
	}
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.body, file) {
		t.Fatal("the served document is not api/openapi.json")
	}
	var doc openAPIDoc
	if err := json.Unmarshal(file, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	ops := map[string]openAPIOperation{} // "METHOD /path/{param}"
	for path, item := range doc.Paths {
		for method, raw := range item {
			if !slices.Contains(httpMethods, method) {
				continue // parameters, summary, servers
			}
			var op openAPIOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			ops[strings.ToUpper(method)+" "+path] = op
		}
	}
	return doc, ops
}

// The document is OpenAPI 3 JSON; every route the server registers is in
// it, every operation in it is a route, each with its path parameters, and
// every schema it refers to exists.
func TestOpenAPI_MatchesRoutes(t *testing.T) {
	e := getEnv(t)
	doc, ops := loadOpenAPI(t, e)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	registered := map[string]bool{}
	for _, r := range apiRoutes(e) {
		key := r.Method + " " + openAPIPath(r.Path)
		registered[key] = true
		op, ok := ops[key]
		if !ok {
			t.Errorf("route %s %s is not in openapi.json", r.Method, r.Path)
			continue
		}
		for _, m := range echoParam.FindAllStringSubmatch(r.Path, -1) {
			found := false
			for _, p := range op.Parameters {
				found = found || p.Name == m[1] && p.In == "path"
			}
			if !found {
				t.Errorf("%s: path parameter %s is not documented", key, m[1])
			}
		}
		if len(op.Responses) == 0 {
			t.Errorf("%s: no responses documented", key)
		}
	}
	for key := range ops {
		if !registered[key] {
			t.Errorf("openapi.json documents %s, which the server does not have", key)
		}
	}
	refs := regexp.MustCompile(`"\$ref":\s*"#/components/schemas/([^"]+)"`)
	file, _ := os.ReadFile("openapi.json")
	for _, m := range refs.FindAllStringSubmatch(string(file), -1) {
		if _, ok := doc.Components.Schemas[m[1]]; !ok {
			t.Errorf("$ref to missing schema %s", m[1])
		}
	}
}

// Each operation's x-roles are the roles the server really lets through (a
// role gets 403 exactly when it is not listed), public operations need no
// token, and every status the matrix saw is documented.
func TestOpenAPI_RolesAndStatusesMatchTheMatrix(t *testing.T) {
	e := getEnv(t)
	_, ops := loadOpenAPI(t, e)
	m := runMatrix(t)
	for _, r := range m.routes {
		key := routeKey(r)
		answers, ok := m.answers[key]
		if !ok {
			continue // TestAuthz_EveryRouteEveryRoleGetsItsStatus names it
		}
		op, ok := ops[r.Method+" "+openAPIPath(r.Path)]
		if !ok {
			continue // TestOpenAPI_MatchesRoutes names it
		}
		if m.cases[key].public {
			if op.Security == nil || len(*op.Security) != 0 || len(op.Roles) != 0 {
				t.Errorf("%s needs no token but the document says security %v, x-roles %v", key, op.Security, op.Roles)
			}
			continue
		}
		var allowed []string
		for _, role := range []struct{ name, as string }{{"province", asProvince}, {"city", asCityOwn}, {"modeler", asModeler}, {"admin", asAdmin}} {
			if answers[role.as].status != http.StatusForbidden {
				allowed = append(allowed, role.name)
			}
		}
		if (answers[asCityOwn].status == http.StatusForbidden) != (answers[asCityOther].status == http.StatusForbidden) {
			t.Errorf("%s: role city is allowed for one city and not another (%d, %d)", key, answers[asCityOwn].status, answers[asCityOther].status)
		}
		documented := slices.Clone(op.Roles)
		sort.Strings(allowed)
		sort.Strings(documented)
		if !slices.Equal(allowed, documented) {
			t.Errorf("%s: x-roles %v, the server allows %v", key, documented, allowed)
		}
		if op.Security == nil || len(*op.Security) == 0 {
			t.Errorf("%s needs a token but the document has no security", key)
		}
		for _, as := range matrixRoles {
			if st := strconv.Itoa(answers[as].status); op.Responses[st] == nil {
				t.Errorf("%s answers %s to %s, which is not documented", key, st, as)
			}
		}
	}
}
