// This file fuzzes the API's inputs: JSON bodies, query parameters and ids
// in paths, sent as the roles that may use each endpoint. Whatever comes in,
// the server never answers 5xx (a panic would be one: Recover turns it into
// a 500), every error is JSON in the error shape, and a city bureau's or a
// modeler's answer shows no other city's clues and no unmasked person.
//
// The seed corpus runs in every `go test`; `go test -fuzz=FuzzAPI ./api/`
// explores further. Each iteration is one request to the server started
// once per process.
package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"collider/casebook"
)

// fuzzTarget is an endpoint and the role that calls it: {id} takes the
// fuzzed path id, the fuzzed query string is appended, POST sends the body.
type fuzzTarget struct {
	method, path, as string
}

var fuzzTargets = []fuzzTarget{
	{"POST", "/api/v1/leads/{id}/events", asCityOwn},
	{"POST", "/api/v1/leads/{id}/events", asProvince},
	{"POST", "/api/v1/users", asAdmin},
	{"POST", "/api/v1/suppressions", asProvince},
	{"POST", "/api/v1/suppressions", asModeler},
	{"POST", "/api/v1/models/{id}/preview", asModeler},
	{"GET", "/api/v1/clues", asCityOwn},
	{"GET", "/api/v1/clues", asModeler},
	{"GET", "/api/v1/clues/export", asProvince},
	{"GET", "/api/v1/batches/{id}/export", asCityOwn},
	{"GET", "/api/v1/leads", asProvince},
	{"GET", "/api/v1/leads", asCityOwn},
	{"GET", "/api/v1/batches", asCityOther},
	{"GET", "/api/v1/batches/{id}", asCityOwn},
	{"GET", "/api/v1/metrics", asCityOwn},
	{"GET", "/api/v1/reports/monthly", asCityOwn},
	{"GET", "/api/v1/reports/monthly", asProvince},
	{"GET", "/api/v1/clues/{id}", asCityOwn},
	{"GET", "/api/v1/leads/{id}", asProvince},
	{"GET", "/api/v1/leads/{id}/events", asCityOwn},
	{"DELETE", "/api/v1/suppressions/{id}", asProvince},
	{"DELETE", "/api/v1/users/{id}", asAdmin},
	{"GET", "/api/v1/runs", asModeler},
	{"GET", "/api/v1/runs/{id}", asProvince},
	{"GET", "/api/v1/audit", asProvince},
	{"GET", "/api/v1/deliveries", asProvince},
	{"GET", "/api/v1/deliveries/{id}", asAdmin},
	{"GET", "/api/v1/deliveries/{id}/rejects.csv", asProvince},
	{"GET", "/api/v1/models/{id}", asModeler},
	{"GET", "/api/v1/suppressions", asModeler},
	{"GET", "/api/v1/clues/export", asModeler},
}

// target finds a target's index, so that seeds read as what they aim at.
func target(method, path, as string) uint8 {
	for i, t := range fuzzTargets {
		if t.method == method && t.path == path && t.as == as {
			return uint8(i)
		}
	}
	panic(fmt.Sprintf("no fuzz target %s %s as %s", method, path, as))
}

// fuzzLeads brings a lead of ownCity to investigating and another to
// returned (held by the province), so that fuzzed closes and reassigns
// reach the code behind the workflow's checks. It returns their ids.
func fuzzLeads(f *testing.F, e *testEnv) (investigating, returned int64) {
	ctx := context.Background()
	find := func(city, status string) int64 {
		var id int64
		e.scalar(f, &id, "SELECT coalesce(max(lead_id), 0) FROM casebook.leads WHERE city_code = ? AND status = ?", city, status)
		return id
	}
	if investigating = find(ownCity, casebook.StatusInvestigating); investigating == 0 {
		investigating = e.leadsIn(f, ownCity, casebook.StatusNew, 1)[0]
		for _, a := range []string{casebook.ActionAccept, casebook.ActionInvestigate} {
			if _, err := e.cb.Act(ctx, e.users[asCityOwn], investigating, casebook.Action{Action: a}); err != nil {
				f.Fatal(err)
			}
		}
	}
	if returned = find("620000", casebook.StatusReturned); returned == 0 {
		returned = e.leadsIn(f, e.otherCity, casebook.StatusNew, 1)[0]
		if _, err := e.cb.Act(ctx, e.users[asCityOther], returned, casebook.Action{Action: casebook.ActionReturn, Note: "fuzz"}); err != nil {
			f.Fatal(err)
		}
	}
	return investigating, returned
}

func FuzzAPI(f *testing.F) {
	e := getEnv(f)
	investigating, returned := fuzzLeads(f, e)
	inv, ret := fmt.Sprint(investigating), fmt.Sprint(returned)
	var anyLead int64
	e.scalar(f, &anyLead, "SELECT min(lead_id) FROM casebook.leads WHERE city_code = ?", ownCity)
	lead := fmt.Sprint(anyLead)
	batch := fmt.Sprint(e.batch)
	delivery := fmt.Sprint(e.delivery)

	events := func(as string) uint8 { return target("POST", "/api/v1/leads/{id}/events", as) }
	for _, s := range []struct {
		target          uint8
		id, query, body string
	}{
		// Lead events: malformed JSON, wrong types, huge and negative numbers,
		// unicode, SQL-looking strings, and ids that are not ids.
		{events(asCityOwn), lead, "", `{"action":"accept"}`},
		{events(asCityOwn), lead, "", `{"action":`},
		{events(asCityOwn), lead, "", `[]`},
		{events(asCityOwn), lead, "", `null`},
		{events(asCityOwn), lead, "", `"accept"`},
		{events(asCityOwn), lead, "", `{"action":"accept"} trailing`},
		{events(asCityOwn), lead, "", `{"action":1}`},
		{events(asCityOwn), lead, "", `{"action":"ACCEPT"}`},
		{events(asCityOwn), lead, "", `{"action":"accept","note":"\u0000\ud800 签收"}`},
		{events(asCityOwn), inv, "", `{"action":"close","outcome":"confirmed","recovered_amount":1e400,"note":"x"}`},
		{events(asCityOwn), inv, "", `{"action":"close","outcome":"confirmed","recovered_amount":1e16,"note":"追回"}`},
		{events(asCityOwn), inv, "", `{"action":"close","outcome":"confirmed","recovered_amount":99999999999999999999999,"note":"x"}`},
		{events(asCityOwn), inv, "", `{"action":"close","outcome":"confirmed","recovered_amount":0.001,"note":"x"}`},
		{events(asCityOwn), inv, "", `{"action":"close","outcome":"confirmed","recovered_amount":-0,"note":"x"}`},
		{events(asCityOwn), inv, "", `{"action":"close","outcome":"confirmed","recovered_amount":"100","note":"x"}`},
		{events(asCityOwn), inv, "", `{"action":"close","outcome":"dismissed","note":"` + strings.Repeat("很长的备注", 20000) + `"}`},
		{events(asCityOwn), inv, "", `{"action":"close","outcome":"dismissed","note":"` + strings.Repeat("x", 1<<20) + `"}`},
		{events(asCityOwn), "-1", "", `{"action":"accept"}`},
		{events(asCityOwn), "0", "", `{"action":"accept"}`},
		{events(asCityOwn), "9223372036854775807", "", `{"action":"accept"}`},
		{events(asCityOwn), "9223372036854775808", "", `{"action":"accept"}`},
		{events(asCityOwn), "1e3", "", `{"action":"accept"}`},
		{events(asCityOwn), "1 OR 1=1", "", `{"action":"accept"}`},
		{events(asCityOwn), "٣", "", `{"action":"accept"}`},
		{events(asProvince), ret, "", `{"action":"reassign","city_code":"' OR 1=1 --"}`},
		{events(asProvince), ret, "", `{"action":"reassign","city_code":"６２０１００"}`},
		{events(asProvince), ret, "", `{"action":"reassign","city_code":"99990"}`},
		{events(asProvince), ret, "", `{"action":"reassign","city_code":620100}`},
		{events(asProvince), ret, "", `{"action":"reassign","city_code":"620100","note":"改派"}`},
		// Users.
		{target("POST", "/api/v1/users", asAdmin), "", "", `{"name":"兰州 fuzz","role":"city","city_code":"620100"}`},
		{target("POST", "/api/v1/users", asAdmin), "", "", `{"name":"","role":"admin"}`},
		{target("POST", "/api/v1/users", asAdmin), "", "", `{"name":"𝔘𝔫𝔦𝔠𝔬𝔡𝔢 名字","role":"modeler"}`},
		{target("POST", "/api/v1/users", asAdmin), "", "", `{"name":"a","role":"province","city_code":"620100"}`},
		{target("POST", "/api/v1/users", asAdmin), "", "", `{"name":"a","role":"city","city_code":"620000"}`},
		{target("POST", "/api/v1/users", asAdmin), "", "", `{"name":"Robert'); DROP TABLE casebook.users;--","role":"modeler"}`},
		{target("POST", "/api/v1/users", asAdmin), "", "", `{"name":"a","role":"root"}`},
		{target("POST", "/api/v1/users", asAdmin), "", "", `{"name":"a","role":"admin","token":"mine"}`},
		// Suppressions.
		{target("POST", "/api/v1/suppressions", asProvince), "", "", `{"kind":"person","person_id":"62010219800229123X","reason":"死亡日期有误"}`},
		{target("POST", "/api/v1/suppressions", asProvince), "", "", `{"kind":"person","person_id":"123","reason":"x"}`},
		{target("POST", "/api/v1/suppressions", asProvince), "", "", `{"kind":"model_person","model":"deceased_claims","person_id":"620102800229123","reason":"r","expires_at":"2099-01-01T00:00:00+08:00"}`},
		{target("POST", "/api/v1/suppressions", asProvince), "", "", `{"kind":"institution","institution_id":"H1","reason":"r","expires_at":"not a time"}`},
		{target("POST", "/api/v1/suppressions", asProvince), "", "", `{"kind":"institution","institution_id":"H1","reason":"r","expires_at":"0001-01-01T00:00:00Z"}`},
		{target("POST", "/api/v1/suppressions", asProvince), "", "", `{"kind":"institution","institution_id":"H1","reason":"r","expires_at":"9999-12-31T23:59:59Z"}`},
		{target("POST", "/api/v1/suppressions", asModeler), "", "", `{"kind":"institution","institution_id":"` + strings.Repeat("H", 5000) + `","reason":" "}`},
		{target("POST", "/api/v1/suppressions", asModeler), "", "", `{"kind":"everything","reason":"x"}`},
		{target("POST", "/api/v1/suppressions", asModeler), "", "", `{"id":7,"kind":"person","person_id":"62010219800229123X","reason":"x","active":false}`},
		// Previews: drafts that do not parse and parameters that do not fit.
		{target("POST", "/api/v1/models/{id}/preview", asModeler), "deceased_claims", "", `{"sql":"SELECT 1"}`},
		{target("POST", "/api/v1/models/{id}/preview", asModeler), "deceased_claims", "", `{"sql":"-- name: other\nSELECT 1"}`},
		{target("POST", "/api/v1/models/{id}/preview", asModeler), "deceased_claims", "", `{"sample":101}`},
		{target("POST", "/api/v1/models/{id}/preview", asModeler), "deceased_claims", "", `{"sample":-1}`},
		{target("POST", "/api/v1/models/{id}/preview", asModeler), "deceased_claims", "", `{"params":{"grace_days":"abc"}}`},
		{target("POST", "/api/v1/models/{id}/preview", asModeler), "deceased_claims", "", `{"params":{"grace_days":"1e400"}}`},
		{target("POST", "/api/v1/models/{id}/preview", asModeler), "deceased_claims", "", `{"params":{"no_such_param":"1"}}`},
		{target("POST", "/api/v1/models/{id}/preview", asModeler), "no_such_model", "", `{}`},
		{target("POST", "/api/v1/models/{id}/preview", asModeler), "../../etc/passwd", "", `{}`},
		// Clue filters, cursors and limits.
		{target("GET", "/api/v1/clues", asCityOwn), "", "limit=-1", ""},
		{target("GET", "/api/v1/clues", asCityOwn), "", "limit=99999999999999999999", ""},
		{target("GET", "/api/v1/clues", asCityOwn), "", "cursor=abc", ""},
		{target("GET", "/api/v1/clues", asCityOwn), "", "cursor=9223372036854775807&limit=1000000", ""},
		{target("GET", "/api/v1/clues", asCityOwn), "", "city=620100&severity=high&status=new&model=deceased_claims", ""},
		{target("GET", "/api/v1/clues", asCityOwn), "", "city=62O100", ""},
		{target("GET", "/api/v1/clues", asModeler), "", "severity=urgent", ""},
		{target("GET", "/api/v1/clues", asModeler), "", "status=' OR '1'='1", ""},
		{target("GET", "/api/v1/clues", asModeler), "", "model=%00&batch=-5", ""},
		{target("GET", "/api/v1/clues", asModeler), "", "limit=0&cursor=0&batch=" + batch, ""},
		// Bytes that are not UTF-8 (DuckDB cannot bind them).
		{target("GET", "/api/v1/clues", asModeler), "", "model=%D0&status=%FF", ""},
		{target("GET", "/api/v1/clues/export", asModeler), "", "format=csv&status=%C3%28", ""},
		{target("GET", "/api/v1/leads", asProvince), "", "city=%D0", ""},
		{target("GET", "/api/v1/leads", asCityOwn), "", "status=%FF%FE", ""},
		{target("GET", "/api/v1/clues/export", asProvince), "", "format=xlsx&severity=high", ""},
		{target("GET", "/api/v1/clues/export", asProvince), "", "format=exe", ""},
		{target("GET", "/api/v1/clues/export", asProvince), "", "format=parquet&city=999999", ""},
		{target("GET", "/api/v1/clues/export", asModeler), "", "format=csv&model=phantom_purchases", ""},
		{target("GET", "/api/v1/batches/{id}/export", asCityOwn), batch, "format=parquet", ""},
		{target("GET", "/api/v1/batches/{id}/export", asCityOwn), "999999", "format=csv", ""},
		{target("GET", "/api/v1/batches/{id}/export", asCityOwn), batch, "format=csv&city=" + e.otherCity, ""},
		{target("GET", "/api/v1/leads", asProvince), "", "overdue=true&city=620100&status=new", ""},
		{target("GET", "/api/v1/leads", asProvince), "", "overdue=yes", ""},
		{target("GET", "/api/v1/leads", asCityOwn), "", "city=" + e.otherCity + "&limit=2&cursor=1", ""},
		{target("GET", "/api/v1/batches", asCityOther), "", "cursor=-1", ""},
		{target("GET", "/api/v1/batches/{id}", asCityOwn), batch, "", ""},
		{target("GET", "/api/v1/metrics", asCityOwn), "", "by=city", ""},
		{target("GET", "/api/v1/metrics", asCityOwn), "", "by=person", ""},
		// Months.
		{target("GET", "/api/v1/reports/monthly", asCityOwn), "", "month=2026-13", ""},
		{target("GET", "/api/v1/reports/monthly", asCityOwn), "", "month=0000-01&format=json", ""},
		{target("GET", "/api/v1/reports/monthly", asCityOwn), "", "month=9999-12&format=json", ""},
		{target("GET", "/api/v1/reports/monthly", asProvince), "", "month=2026-1", ""},
		{target("GET", "/api/v1/reports/monthly", asProvince), "", "month=２０２６-０１", ""},
		{target("GET", "/api/v1/reports/monthly", asProvince), "", "month=2025-06&format=xml", ""},
		// Ids in paths.
		{target("GET", "/api/v1/clues/{id}", asCityOwn), "-1", "", ""},
		{target("GET", "/api/v1/clues/{id}", asCityOwn), "0x10", "", ""},
		{target("GET", "/api/v1/clues/{id}", asCityOwn), "..", "", ""},
		{target("GET", "/api/v1/clues/{id}", asCityOwn), "1/../2", "", ""},
		{target("GET", "/api/v1/leads/{id}", asProvince), "18446744073709551616", "", ""},
		{target("GET", "/api/v1/leads/{id}/events", asCityOwn), lead, "", ""},
		{target("DELETE", "/api/v1/suppressions/{id}", asProvince), "1", "", ""},
		{target("DELETE", "/api/v1/suppressions/{id}", asProvince), "999999", "", ""},
		{target("DELETE", "/api/v1/users/{id}", asAdmin), "999999", "", ""},
		{target("GET", "/api/v1/runs", asModeler), "", "limit=5&cursor=99", ""},
		{target("GET", "/api/v1/runs/{id}", asProvince), "424242", "", ""},
		{target("GET", "/api/v1/audit", asProvince), "", "limit=1001&cursor=2", ""},
		{target("GET", "/api/v1/deliveries", asProvince), "", "limit=3", ""},
		{target("GET", "/api/v1/deliveries/{id}", asAdmin), "424242", "", ""},
		{target("GET", "/api/v1/deliveries/{id}/rejects.csv", asProvince), delivery, "", ""},
		{target("GET", "/api/v1/models/{id}", asModeler), "deceased_claims'--", "", ""},
		{target("GET", "/api/v1/suppressions", asModeler), "", "", ""},
	} {
		f.Add(s.target, s.id, s.query, s.body)
	}

	protected := map[int64]bool{}
	for _, u := range e.users {
		protected[u.ID] = true
	}
	f.Fuzz(func(t *testing.T, which uint8, id, query, body string) {
		ft := fuzzTargets[int(which)%len(fuzzTargets)]
		if ft.path == "/api/v1/users/{id}" {
			// Revoking the test's own users would only make the rest 401s.
			if n, err := strconv.ParseInt(strings.TrimLeft(id, "+0"), 10, 64); err == nil && protected[n] {
				return
			}
		}
		path := strings.ReplaceAll(ft.path, "{id}", url.PathEscape(id))
		// Keep every parameter the fuzzer makes, sent as a client would.
		values, _ := url.ParseQuery(query)
		if q := values.Encode(); q != "" {
			path += "?" + q
		}
		if ft.method != http.MethodPost {
			body = ""
		}
		r, err := e.try(ft.as, ft.method, path, body)
		if err != nil {
			t.Fatalf("%s %s as %s: %v", ft.method, path, ft.as, err)
		}
		if r.status >= 500 {
			t.Fatalf("%s %s as %s with %q: %s", ft.method, path, ft.as, body, r)
		}
		if r.status >= 400 {
			if msg := checkErrorShape(r); msg != "" {
				t.Fatalf("%s %s as %s with %q: %s", ft.method, path, ft.as, body, msg)
			}
			return
		}
		if ft.method == http.MethodGet && ft.as == asCityOwn {
			if bad := checkCityJSON(r.body, ownCity); len(bad) > 0 {
				t.Fatalf("%s as %s: clues or leads of other cities %v", path, ft.as, bad)
			}
		}
		if ft.as == asModeler {
			if bad := checkMaskedJSON(r.body); len(bad) > 0 {
				t.Fatalf("%s as %s: unmasked %v", path, ft.as, bad)
			}
		}
	})
}
