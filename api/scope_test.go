// This file checks the city scope and the masking beyond status codes: what
// a city bureau's lists, objects, counts and downloads contain, and that a
// modeler never sees an ID number or a name unmasked.
package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"collider/casebook"
)

// A city bureau's lists hold its own city's clues and leads, all of them,
// and nothing else, whatever city the query asks for.
func TestCityScope_ListsHoldOwnCityOnly(t *testing.T) {
	e := getEnv(t)
	for _, city := range []struct{ as, code string }{{asCityOwn, ownCity}, {asCityOther, e.otherCity}} {
		t.Run(city.as, func(t *testing.T) {
			var want int
			e.scalar(t, &want, "SELECT count(*) FROM casebook.leads WHERE city_code = ?", city.code)
			clues := e.allClues(t, city.as, "")
			if len(clues) != want {
				t.Errorf("clue list: %d clues, the city holds %d", len(clues), want)
			}
			for _, c := range clues {
				if c.City != city.code {
					t.Errorf("clue %d of city %s in the list", c.ID, c.City)
				}
			}
			for _, q := range []string{"", "city=" + city.code, "city=" + otherThan(city.code, e)} {
				var leads struct {
					Items []casebook.Lead `json:"items"`
				}
				e.getJSON(t, city.as, "/api/v1/leads?limit=1000&"+q, &leads)
				if len(leads.Items) != want {
					t.Errorf("leads?%s: %d leads, the city holds %d", q, len(leads.Items), want)
				}
				for _, l := range leads.Items {
					if l.City != city.code {
						t.Errorf("leads?%s: lead %d of city %s", q, l.ID, l.City)
					}
				}
			}
		})
	}
}

func otherThan(city string, e *testEnv) string {
	if city == ownCity {
		return e.otherCity
	}
	return ownCity
}

// Another city's clue, lead, events and actions are 404 for a city bureau,
// as if they did not exist; asking to filter by another city is 403.
func TestCityScope_OtherCitysObjectsAreNotFound(t *testing.T) {
	e := getEnv(t)
	var theirs int64
	e.scalar(t, &theirs, "SELECT min(lead_id) FROM casebook.leads WHERE city_code = ?", e.otherCity)
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"clue", "GET", fmt.Sprintf("/api/v1/clues/%d", theirs), "", http.StatusNotFound},
		{"lead", "GET", fmt.Sprintf("/api/v1/leads/%d", theirs), "", http.StatusNotFound},
		{"events", "GET", fmt.Sprintf("/api/v1/leads/%d/events", theirs), "", http.StatusNotFound},
		{"accept", "POST", fmt.Sprintf("/api/v1/leads/%d/events", theirs), `{"action":"accept"}`, http.StatusNotFound},
		{"return", "POST", fmt.Sprintf("/api/v1/leads/%d/events", theirs), `{"action":"return","note":"x"}`, http.StatusNotFound},
		{"clue list of their city", "GET", "/api/v1/clues?city=" + e.otherCity, "", http.StatusForbidden},
		{"export of their city", "GET", "/api/v1/clues/export?format=csv&city=" + e.otherCity, "", http.StatusForbidden},
		{"batch export of their city", "GET", fmt.Sprintf("/api/v1/batches/%d/export?format=xlsx&city=%s", e.batch, e.otherCity), "", http.StatusForbidden},
		{"a clue that does not exist", "GET", "/api/v1/clues/999999", "", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, asCityOwn, tc.method, tc.path, tc.body)
			if r.status != tc.want {
				t.Fatalf("got %s, want %d", r, tc.want)
			}
			if msg := checkErrorShape(r); msg != "" {
				t.Fatal(msg)
			}
			if strings.Contains(string(r.body), e.otherCity) {
				t.Errorf("the error names the other city: %s", r.body)
			}
		})
	}
	var status string
	e.scalar(t, &status, "SELECT status FROM casebook.leads WHERE lead_id = ?", theirs)
	if status != casebook.StatusNew {
		t.Errorf("their lead is %s after our refused actions", status)
	}
}

// cityTotals are a batch's totals over one city's clues (every city's for
// ""), from the store.
func (e *testEnv) cityTotals(t *testing.T, batch int64, city string) casebook.Batch {
	t.Helper()
	var b casebook.Batch
	err := e.store.DB.QueryRow(`SELECT count(*), count(DISTINCT c.person_id), count(DISTINCT c.institution_id),
		coalesce(sum(c.settlement_count), 0), coalesce(CAST(sum(c.total_amount) AS DOUBLE), 0), coalesce(CAST(sum(c.fund_amount) AS DOUBLE), 0)
		FROM casebook.clues c JOIN casebook.leads l ON l.lead_id = c.clue_id WHERE c.batch_id = ? AND (l.city_code = ? OR ? = '')`, batch, city, city).
		Scan(&b.Clues, &b.Persons, &b.Institutions, &b.Settlements, &b.TotalAmount, &b.FundAmount)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameTotals(a, b casebook.Batch) bool {
	return a.Clues == b.Clues && a.Persons == b.Persons && a.Institutions == b.Institutions && a.Settlements == b.Settlements &&
		math.Abs(a.TotalAmount-b.TotalAmount) < 0.005 && math.Abs(a.FundAmount-b.FundAmount) < 0.005
}

// Every count a city bureau sees is over its own city's clues only: batch
// totals, batch lists, metrics by city and by model, the monthly report.
func TestCityScope_CountsAreOwnCityOnly(t *testing.T) {
	e := getEnv(t)
	var province casebook.Batch
	e.getJSON(t, asProvince, fmt.Sprintf("/api/v1/batches/%d", e.batch), &province)
	if w := e.cityTotals(t, e.batch, ""); province.Clues == 0 || !sameTotals(province, w) {
		t.Fatalf("the province's batch totals %+v, want every city's %+v", province, w)
	}
	var cityLeads int64
	for _, city := range []struct{ as, code string }{{asCityOwn, ownCity}, {asCityOther, e.otherCity}} {
		t.Run(city.as, func(t *testing.T) {
			want := e.cityTotals(t, e.batch, city.code)
			var one casebook.Batch
			e.getJSON(t, city.as, fmt.Sprintf("/api/v1/batches/%d", e.batch), &one)
			if !sameTotals(one, want) {
				t.Errorf("batch totals %+v, want the city's %+v", one, want)
			}
			if one.Clues >= province.Clues {
				t.Errorf("the city's batch counts %d clues, the province's %d", one.Clues, province.Clues)
			}
			var ms []map[string]any
			json.Unmarshal(one.Models, &ms)
			for _, m := range ms {
				for k := range m {
					if k != "model" && k != "version" && k != "title" {
						t.Errorf("the city's batch shows the province-wide model figure %s", k)
					}
				}
			}
			var list struct {
				Items []casebook.Batch `json:"items"`
			}
			e.getJSON(t, city.as, "/api/v1/batches", &list)
			for _, b := range list.Items {
				if w := e.cityTotals(t, b.ID, city.code); !sameTotals(b, w) {
					t.Errorf("batch list: batch %d totals %+v, want %+v", b.ID, b, w)
				}
			}

			e.scalar(t, &cityLeads, "SELECT count(*) FROM casebook.leads WHERE city_code = ?", city.code)
			var byCity struct {
				Items []casebook.Metric `json:"items"`
			}
			e.getJSON(t, city.as, "/api/v1/metrics?by=city", &byCity)
			if len(byCity.Items) != 1 || byCity.Items[0].City != city.code || byCity.Items[0].Issued != cityLeads {
				t.Errorf("metrics by city: %+v, want one line for %s with %d issued", byCity.Items, city.code, cityLeads)
			}
			var byModel struct {
				Items []casebook.Metric `json:"items"`
			}
			e.getJSON(t, city.as, "/api/v1/metrics?by=model", &byModel)
			var issued int64
			for _, m := range byModel.Items {
				issued += m.Issued
			}
			if issued != cityLeads {
				t.Errorf("metrics by model: %d issued, the city holds %d", issued, cityLeads)
			}

			var report struct {
				Items []casebook.ReportRow `json:"items"`
			}
			e.getJSON(t, city.as, "/api/v1/reports/monthly?format=json", &report)
			if len(report.Items) == 0 {
				t.Error("the monthly report is empty for a city with leads routed this month")
			}
			for _, r := range report.Items {
				if r.City != city.code {
					t.Errorf("the monthly report has a line for %s", r.City)
				}
			}
			r := e.do(t, city.as, http.MethodGet, "/api/v1/reports/monthly", "")
			if r.status != http.StatusOK {
				t.Fatalf("monthly report: %s", r)
			}
			f, err := excelize.OpenReader(bytes.NewReader(r.body))
			if err != nil {
				t.Fatalf("monthly report: %v", err)
			}
			sheetRows := peopleSheet(t, f, f.GetSheetList()[0], []string{"市州代码", "市州", "下发线索", "签收", "办结", "逾期未办结", "查实", "追回金额（元）"})
			if len(sheetRows) != len(report.Items)+1 {
				t.Fatalf("monthly report XLSX: %d rows, the JSON has %d lines", len(sheetRows), len(report.Items))
			}
			if recovered := numFmt(t, f, f.GetSheetList()[0], "H2"); len(report.Items) > 0 && recovered != "#,##0.00" {
				t.Errorf("monthly report XLSX: the recovered amount's format is %q", recovered)
			}
			f.Close()
			for _, row := range sheetRows[1:] {
				if row[0] != city.code {
					t.Errorf("the monthly report XLSX has a line for %s", row[0])
				}
			}
			var wantIssued int64
			e.scalar(t, &wantIssued, `SELECT count(*) FROM casebook.lead_events WHERE city_code = ? AND action IN ('route', 'reassign')
				AND strftime(event_at, '%Y-%m') = ?`, city.code, time.Now().Format("2006-01"))
			if len(report.Items) == 1 && report.Items[0].Issued != wantIssued {
				t.Errorf("the monthly report issued %d, the events say %d", report.Items[0].Issued, wantIssued)
			}
		})
	}
	var all struct {
		Items []casebook.Metric `json:"items"`
	}
	e.getJSON(t, asProvince, "/api/v1/metrics?by=city", &all)
	if len(all.Items) < 2 {
		t.Errorf("the province's metrics by city have %d lines", len(all.Items))
	}
}

// Every download a city bureau makes, in every format, holds only its own
// city's clues, all of them; the CSV has the byte-order mark and the spec's
// header.
func TestCityScope_ExportsHoldOwnCityOnly(t *testing.T) {
	e := getEnv(t)
	for _, city := range []struct{ as, code string }{{asCityOwn, ownCity}, {asCityOther, e.otherCity}} {
		var want int
		e.scalar(t, &want, "SELECT count(*) FROM casebook.leads l JOIN casebook.clues c ON c.clue_id = l.lead_id WHERE l.city_code = ? AND c.batch_id = ?", city.code, e.batch)
		hidden := e.personsOutside(t, city.code)
		for _, path := range []string{"/api/v1/clues/export?batch=" + fmt.Sprint(e.batch), fmt.Sprintf("/api/v1/batches/%d/export?city=%s", e.batch, city.code)} {
			for _, format := range casebook.Formats {
				t.Run(fmt.Sprintf("%s %s %s", city.as, path, format), func(t *testing.T) {
					r := e.do(t, city.as, http.MethodGet, path+"&format="+format, "")
					if r.status != http.StatusOK {
						t.Fatalf("%s", r)
					}
					got := readExport(t, format, r.body)
					if !slices.Equal(got.header, casebook.ExportColumns) {
						t.Fatalf("header %v", got.header)
					}
					if len(got.rows) != want {
						t.Errorf("%d rows, the city holds %d", len(got.rows), want)
					}
					col := got.column(t, "city_code")
					for i, row := range got.rows {
						if row[col] != city.code {
							t.Errorf("row %d: city_code %s", i+1, row[col])
						}
						if leaked := hidden.found(strings.Join(row, "\x00")); len(leaked) > 0 {
							t.Errorf("row %d: persons of other cities %v", i+1, leaked)
						}
					}
				})
			}
		}
	}
}

// checkMaskedRow checks one clue as a modeler sees it, against the real
// person behind it.
func checkMaskedRow(t *testing.T, where string, id, name, narrative, evidence string, real map[string]string) {
	t.Helper()
	if !maskedID.MatchString(id) {
		t.Errorf("%s: person_id %q is not masked", where, id)
	}
	if !strings.Contains(name, "*") {
		t.Errorf("%s: person_name %q is not masked", where, name)
	}
	for realID, realName := range real {
		for _, field := range []string{narrative, evidence, name, id} {
			if strings.Contains(field, realID) || len([]rune(realName)) > 1 && strings.Contains(field, realName) {
				t.Errorf("%s: %s or %s unmasked in %q", where, realID, realName, field)
			}
		}
		// The hidden digits must not stand beside the masked ID either
		// (unknown_identity's evidence carries the ID's birth date).
		birth := realID[6:14]
		for _, form := range []string{birth, birth[:4] + "-" + birth[4:6] + "-" + birth[6:]} {
			if strings.Contains(narrative, form) || strings.Contains(evidence, form) {
				t.Errorf("%s: the birth date %s of %s in the narrative or evidence", where, form, realID)
			}
		}
	}
	if unmaskedID.MatchString(narrative) || unmaskedID.MatchString(evidence) {
		t.Errorf("%s: an ID number in the narrative or evidence", where)
	}
}

// A modeler sees every ID number and name masked: clue lists and details
// (narratives and evidence included), every export format, suppressions and
// previews.
func TestMasking_ModelerSeesMaskedDataEverywhere(t *testing.T) {
	e := getEnv(t)
	real := map[int64]map[string]string{} // clue → person id → name
	rows, err := e.store.DB.Query("SELECT clue_id, person_id, coalesce(person_name, '') FROM casebook.clues")
	if err != nil {
		t.Fatal(err)
	}
	var anyPerson string
	for rows.Next() {
		var id int64
		var pid, name string
		rows.Scan(&id, &pid, &name)
		real[id] = map[string]string{pid: name}
		anyPerson = pid
	}
	rows.Close()

	t.Run("clue list", func(t *testing.T) {
		clues := e.allClues(t, asModeler, "")
		if len(clues) != len(real) {
			t.Errorf("%d clues, want %d", len(clues), len(real))
		}
		for _, c := range clues {
			checkMaskedRow(t, fmt.Sprint("clue ", c.ID), c.PersonID, c.PersonName, c.Narrative, string(c.Evidence), real[c.ID])
		}
	})
	t.Run("clue detail", func(t *testing.T) {
		for id := range real {
			var c casebook.Clue
			e.getJSON(t, asModeler, fmt.Sprintf("/api/v1/clues/%d", id), &c)
			checkMaskedRow(t, fmt.Sprint("clue ", id), c.PersonID, c.PersonName, c.Narrative, string(c.Evidence), real[id])
		}
	})
	for _, format := range casebook.Formats {
		t.Run("export "+format, func(t *testing.T) {
			r := e.do(t, asModeler, http.MethodGet, "/api/v1/clues/export?format="+format, "")
			if r.status != http.StatusOK {
				t.Fatalf("%s", r)
			}
			got := readExport(t, format, r.body)
			if len(got.rows) != len(real) {
				t.Errorf("%d rows, want %d", len(got.rows), len(real))
			}
			idc, pc, nc, narc, evc := got.column(t, "clue_id"), got.column(t, "person_id"), got.column(t, "person_name"), got.column(t, "narrative"), got.column(t, "evidence")
			for _, row := range got.rows {
				var id int64
				fmt.Sscan(row[idc], &id)
				checkMaskedRow(t, "clue "+row[idc], row[pc], row[nc], row[narc], row[evc], real[id])
			}
		})
	}
	t.Run("suppressions", func(t *testing.T) {
		r := e.do(t, asProvince, http.MethodPost, "/api/v1/suppressions", `{"kind":"model_person","model":"deceased_claims","person_id":"`+anyPerson+`","reason":"死亡日期有误，待公安核实"}`)
		if r.status != http.StatusCreated {
			t.Fatalf("suppress: %s", r)
		}
		if !strings.Contains(string(r.body), anyPerson) {
			t.Errorf("the province sees the suppressed person masked: %s", r.body)
		}
		var created casebook.Suppression
		json.Unmarshal(r.body, &created)
		defer e.do(t, asProvince, http.MethodDelete, fmt.Sprintf("/api/v1/suppressions/%d", created.ID), "")
		var list struct {
			Items []casebook.Suppression `json:"items"`
		}
		e.getJSON(t, asModeler, "/api/v1/suppressions", &list)
		n := 0
		for _, s := range list.Items {
			if s.PersonID != "" {
				n++
				if !maskedID.MatchString(s.PersonID) {
					t.Errorf("suppression %d: person_id %q", s.ID, s.PersonID)
				}
			}
		}
		if n == 0 {
			t.Error("no person suppression in the list")
		}
	})
	t.Run("preview", func(t *testing.T) {
		m := runMatrix(t) // its previews drop live flags, so they show persons
		r := m.answers["POST /api/v1/models/:name/preview"][asModeler]
		p := m.answers["POST /api/v1/models/:name/preview"][asProvince]
		if r.status != http.StatusOK || p.status != http.StatusOK {
			t.Fatalf("preview: modeler %s, province %s", r, p)
		}
		if !unmaskedID.Match(p.body) {
			t.Fatal("the province's preview shows no person: the masking check would prove nothing")
		}
		if bad := checkMaskedJSON(r.body); len(bad) > 0 {
			t.Errorf("preview: unmasked %v", bad)
		}
		if unmaskedID.Match(r.body) {
			t.Errorf("preview: an ID number %s", unmaskedID.Find(r.body))
		}
	})
}
