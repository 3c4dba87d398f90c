package models_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"collider/models"
)

// tiny is a small valid model; tests break it one line at a time. Its lines:
// 1 name … 5 `- name: kind` … 14 narrative default, 15 SELECT, 16 FROM, 17 WHERE.
const tiny = `-- name: tiny
-- title: 测试模型
-- description: flags the settlements of one visit type
-- params:
--   - name: kind
--     type: string
--     default: pharmacy
--     description: the visit type to flag
-- reasons:
--   hit: 命中
-- severity:
--   high: count(*) >= 3
-- narrative:
--   default: 参保人{person_id}在{institution_name}（{institution_id}）{action}结算{times}，基金支付{fund_amount}元。
SELECT settlement_id, 'hit' AS reason, json_object('visit_type', visit_type) AS evidence
FROM settlements
WHERE visit_type = $kind
`

const tinyTests = `row_defaults:
  settlements: {settled_at: "2021-12-31 00:00:00", total_amount: 10, fund_amount: 8, person_id: "620102195001100115", institution_id: P62010200456}
defaults:
  institutions:
    - {institution_id: P62010200456, name: 某某大药房, kind: pharmacy, region_code: "620102"}
cases:
  - name: pharmacy purchase is flagged
    settlements:
      - {settlement_id: S1, visit_type: pharmacy, visit_start: "2021-05-10 10:00:00"}
      - {settlement_id: S2, visit_type: outpatient, visit_start: "2021-05-10 10:00:00"}
    flag: {S1: hit}
    clear: [S2]
`

// edit replaces line n (1-based) of text.
func edit(text string, n int, line string) string {
	lines := strings.Split(text, "\n")
	lines[n-1] = line
	return strings.Join(lines, "\n")
}

func mapFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, text := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(text)}
	}
	return fsys
}

func TestLoad_TinyModelParses(t *testing.T) {
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": tiny, "tiny.test.yaml": tinyTests}))
	if err != nil {
		t.Fatal(err)
	}
	m := ms[0]
	if m.Name != "tiny" || m.Title != "测试模型" || len(m.Params) != 1 || m.Params[0].Default != "pharmacy" ||
		m.Severity.High != "count(*) >= 3" || len(m.Tests.Cases) != 1 || m.File != "tiny.sql" {
		t.Fatalf("parsed %+v", m)
	}
}

// A file that does not parse is refused with its file and line; the other
// files still load.
func TestLoad_BadHeaderIsRefusedWithFileAndLine(t *testing.T) {
	cases := []struct {
		name, text string
		want       string // file:line and a phrase of the message
	}{
		{"header that is not YAML", edit(tiny, 6, "--     type: string: x"), "tiny.sql:6: header: mapping values are not allowed"},
		{"name that is not the file's", edit(tiny, 1, "-- name: other"), "tiny.sql:1: model name \"other\" must be the file's name"},
		{"parameter of an unknown type", edit(tiny, 6, "--     type: text"), "tiny.sql:5: param kind: type \"text\""},
		{"parameter without a default", edit(tiny, 7, "--     default:"), "tiny.sql:5: param kind: default is required"},
		{"integer parameter with a text default", edit(edit(tiny, 6, "--     type: integer"), 7, "--     default: many"), "tiny.sql:5: param kind: default: \"many\" is not an integer"},
		{"unknown field in a parameter", edit(tiny, 8, "--     descripton: typo"), "tiny.sql:8: header: params: unknown field \"descripton\""},
		{"unknown header field", edit(tiny, 11, "-- severty:"), "tiny.sql:11:"},
		{"narrative with an unknown placeholder", edit(tiny, 14, "--   default: 参保人{person}"), "tiny.sql:14: header: narrative default: unknown placeholder {person}"},
		{"no reasons", edit(edit(tiny, 9, "--"), 10, "--"), "tiny.sql:1: header: reasons is required"},
		{"no query", strings.Join(strings.Split(tiny, "\n")[:14], "\n"), "no query after the header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms, err := models.Load(mapFS(map[string]string{"tiny.sql": c.text, "good.sql": strings.Replace(tiny, "name: tiny", "name: good", 1)}))
			var le *models.LoadError
			if !errors.As(err, &le) || len(le.Refused) != 1 {
				t.Fatalf("err = %v, want one refused file", err)
			}
			if got := le.Refused[0].Error(); !strings.Contains(got, c.want) {
				t.Fatalf("error %q\nwant it to contain %q", got, c.want)
			}
			if len(ms) != 1 || ms[0].Name != "good" {
				t.Fatalf("the good file should still load, got %d models", len(ms))
			}
		})
	}
}

func TestLoad_BadFixtureFileIsRefusedWithItsLine(t *testing.T) {
	bad := strings.Replace(tinyTests, "flag: {S1: hit}", "flag: {S1: miss}", 1)
	_, err := models.Load(mapFS(map[string]string{"tiny.sql": tiny, "tiny.test.yaml": bad}))
	if err == nil || !strings.Contains(err.Error(), "tiny.test.yaml:7: case \"pharmacy purchase is flagged\": flag S1: \"miss\" is not one of the model's reasons") {
		t.Fatalf("err = %v", err)
	}
	bad = strings.Replace(tinyTests, "settled_at:", "settled:", 1)
	_, err = models.Load(mapFS(map[string]string{"tiny.sql": tiny, "tiny.test.yaml": bad}))
	if err == nil || !strings.Contains(err.Error(), "tiny.test.yaml:2: row_defaults: settlements row at line 2: no column \"settled\"") {
		t.Fatalf("err = %v", err)
	}
}

// The query's problems are found by DuckDB when the model is validated, and
// reported at the line of the file.
func TestValidate_BadQueryIsRefusedWithFileAndLine(t *testing.T) {
	cases := []struct {
		name, text string
		want       string
	}{
		{"syntax error", edit(tiny, 17, "WHERE AND visit_type = $kind"), `tiny.sql:17: Parser Error: syntax error at or near "AND"`},
		{"unknown column", edit(tiny, 17, "WHERE visit_kind = $kind"), `tiny.sql:17: Binder Error: Referenced column "visit_kind" not found`},
		{"undeclared parameter", edit(tiny, 17, "WHERE visit_type = $kinds"), "tiny.sql:17: $kinds is not a declared parameter"},
		{"missing output column", edit(tiny, 15, "SELECT settlement_id, json_object('visit_type', visit_type) AS evidence"), "tiny.sql:15: the query returns (settlement_id, evidence); a model returns exactly (settlement_id, reason, evidence)"},
		{"renamed output column", edit(tiny, 15, "SELECT settlement_id AS id, 'hit' AS reason, json_object('visit_type', visit_type) AS evidence"), "the query returns (id, reason, evidence)"},
		{"evidence that is not JSON", edit(tiny, 15, "SELECT settlement_id, 'hit' AS reason, 42 AS evidence"), "tiny.sql:15: column evidence is INTEGER"},
		{"unused parameter", edit(tiny, 17, "WHERE visit_type = 'pharmacy'"), "tiny.sql:5: parameter kind is declared but used nowhere"},
		{"severity rule that does not bind", edit(tiny, 12, "--   high: count(*) >= nonsense"), "tiny.sql:11: sum clues (check the header's severity and narrative): Binder Error: Referenced column \"nonsense\" not found"},
	}
	tester := newTester(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms, err := models.Load(mapFS(map[string]string{"tiny.sql": c.text}))
			if err != nil {
				t.Fatal(err)
			}
			vs, err := tester.Validate(context.Background(), ms...)
			if err != nil {
				t.Fatal(err)
			}
			if vs[0].Err == nil || !strings.Contains(vs[0].Err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", vs[0].Err, c.want)
			}
		})
	}
}

func TestValidate_TrailingSemicolonAndCommentsAreFine(t *testing.T) {
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": tiny + ";\n-- the end\n\n", "tiny.test.yaml": tinyTests}))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := newTester(t).Validate(context.Background(), ms...)
	if err != nil || vs[0].Err != nil {
		t.Fatalf("%v %v", err, vs[0].Err)
	}
}

func TestValidate_FailingFixtureIsRefusedAtTheCase(t *testing.T) {
	// The model now flags outpatient visits by default: its fixture fails.
	text := edit(tiny, 7, "--     default: outpatient")
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": text, "tiny.test.yaml": tinyTests}))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := newTester(t).Validate(context.Background(), ms...)
	if err != nil {
		t.Fatal(err)
	}
	want := `tiny.test.yaml:7: case "pharmacy purchase is flagged": S1 not flagged, want hit; S2 flagged hit, want it clear`
	if vs[0].Err == nil || vs[0].Err.Error() != want {
		t.Fatalf("err = %v\nwant %s", vs[0].Err, want)
	}
}

func TestValidate_NarrativeFieldTheEvidenceLacksFailsTheCase(t *testing.T) {
	text := edit(tiny, 14, "--   default: 参保人{person_id}距{institution_name}{e.distance_km}公里，{e.visit_type}")
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": text, "tiny.test.yaml": tinyTests}))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := newTester(t).Validate(context.Background(), ms...)
	if err != nil {
		t.Fatal(err)
	}
	if vs[0].Err == nil || !strings.Contains(vs[0].Err.Error(), "tiny.test.yaml:7: case \"pharmacy purchase is flagged\": S1: the narrative uses {e.distance_km}, which its evidence lacks") {
		t.Fatalf("err = %v", vs[0].Err)
	}
}

func TestValidate_FixtureRowTheLoaderRejectsFailsTheCase(t *testing.T) {
	bad := strings.Replace(tinyTests, `{settlement_id: S2, visit_type: outpatient,`, `{settlement_id: S2, person_id: "620102195001100116", visit_type: outpatient,`, 1)
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": tiny, "tiny.test.yaml": bad}))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := newTester(t).Validate(context.Background(), ms...)
	if err != nil {
		t.Fatal(err)
	}
	if vs[0].Err == nil || !strings.Contains(vs[0].Err.Error(), "tiny.test.yaml:10: settlements row at line 10 rejected by the loader: person_id invalid_person_id") {
		t.Fatalf("err = %v", vs[0].Err)
	}
}

// A model that declares scope: person is run again beside other persons in
// every fixture case; one whose verdicts then move reads other persons' rows
// and is refused at its scope line. The same query without the declaration
// passes: it runs in full.
func TestValidate_PersonScopeThatReadsOtherPersonsIsRefused(t *testing.T) {
	// Flags a purchase when anybody in the feed has died: a fact about
	// everyone, which no case of one person shows.
	text := strings.Replace(tiny, "-- reasons:", "-- scope: person\n-- reasons:", 1)
	text = strings.Replace(text, "WHERE visit_type = $kind", `WHERE visit_type = $kind
  AND NOT EXISTS (SELECT 1 FROM civil_status c WHERE c.status = 'deceased')`, 1)
	cases := tinyTests + `  - name: the living are not clues
    civil_status:
      - {person_id: "620102195001100115", status: alive}
    settlements:
      - {settlement_id: S3, visit_type: pharmacy, visit_start: "2021-05-10 10:00:00"}
    flag: {S3: hit}
`
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": text, "tiny.test.yaml": cases}))
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].Scope != models.ScopePerson {
		t.Fatalf("scope %q", ms[0].Scope)
	}
	vs, err := newTester(t).Validate(context.Background(), ms...)
	if err != nil {
		t.Fatal(err)
	}
	want := `tiny.sql:9: scope person: case "the living are not clues" (tiny.test.yaml:13): the verdicts change with other persons' rows (S3: hit alone, not flagged beside other persons; S3: hit, but the same rows under another person's ID (S3-twin): not flagged)`
	if vs[0].Err == nil || !strings.HasPrefix(vs[0].Err.Error(), want) {
		t.Fatalf("err = %v\nwant %s…", vs[0].Err, want)
	}
	if len(vs[0].Cases) != 2 || vs[0].Cases[0].Err != nil {
		t.Fatalf("the first case has no police feed, so nothing is added to one: %+v", vs[0].Cases)
	}

	undeclared := strings.Replace(text, "-- scope: person\n", "", 1)
	ms, err = models.Load(mapFS(map[string]string{"tiny.sql": undeclared, "tiny.test.yaml": cases}))
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].Scope != models.ScopeFull {
		t.Fatalf("scope %q", ms[0].Scope)
	}
	if vs, err = newTester(t).Validate(context.Background(), ms...); err != nil || vs[0].Err != nil {
		t.Fatalf("%v %v", err, vs[0].Err)
	}
}

// A declared person scope passes when the query joins every person feed on
// the settlement's person, and an unknown scope is refused at its line.
func TestValidate_PersonScopeDeclaredRightPasses(t *testing.T) {
	text := strings.Replace(tiny, "-- reasons:", "-- scope: person\n-- reasons:", 1)
	text = strings.Replace(text, "WHERE visit_type = $kind", `WHERE visit_type = $kind
  AND NOT EXISTS (SELECT 1 FROM civil_status c WHERE c.status = 'deceased' AND c.person_id = settlements.person_id)`, 1)
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": text, "tiny.test.yaml": tinyTests}))
	if err != nil {
		t.Fatal(err)
	}
	if vs, err := newTester(t).Validate(context.Background(), ms...); err != nil || vs[0].Err != nil {
		t.Fatalf("%v %v", err, vs[0].Err)
	}
	_, err = models.Load(mapFS(map[string]string{"tiny.sql": strings.Replace(tiny, "-- reasons:", "-- scope: institution\n-- reasons:", 1)}))
	if err == nil || !strings.Contains(err.Error(), `tiny.sql:9: header: scope "institution": person`) {
		t.Fatalf("err = %v", err)
	}
}

// A refused file never replaces the live version: runs go on with it.
func TestCatalog_RefusedFileKeepsTheLiveVersionRunning(t *testing.T) {
	ctx := context.Background()
	tester := newTester(t)
	cat := models.NewCatalog()
	cat.Log = quiet
	if err := cat.Reload(ctx, mapFS(map[string]string{"tiny.sql": tiny, "tiny.test.yaml": tinyTests}), tester); err != nil {
		t.Fatal(err)
	}
	live, _ := cat.Model("tiny")

	for name, text := range map[string]string{
		"does not parse":    edit(tiny, 16, "FORM settlements"),
		"lacks the columns": edit(tiny, 15, "SELECT settlement_id FROM (SELECT settlement_id, visit_type, 1 AS x"),
		"fails its tests":   edit(tiny, 7, "--     default: outpatient"),
		"bad header":        edit(tiny, 2, "-- title: [unclosed"),
	} {
		err := cat.Reload(ctx, mapFS(map[string]string{"tiny.sql": text, "tiny.test.yaml": tinyTests}), tester)
		var le *models.LoadError
		if !errors.As(err, &le) || len(le.Refused) != 1 || le.Refused[0].File == "" {
			t.Fatalf("%s: err = %v, want the file refused", name, err)
		}
		if !regexp.MustCompile(`^tiny\.(sql|test\.yaml):\d+: `).MatchString(le.Refused[0].Error()) {
			t.Errorf("%s: %q does not start with file:line", name, le.Refused[0].Error())
		}
		if got, _ := cat.Model("tiny"); got != live {
			t.Fatalf("%s: the live version was replaced", name)
		}
	}

	// A good new version does replace it.
	better := edit(tiny, 12, "--   high: count(*) >= 2")
	if err := cat.Reload(ctx, mapFS(map[string]string{"tiny.sql": better, "tiny.test.yaml": tinyTests}), tester); err != nil {
		t.Fatal(err)
	}
	if got, _ := cat.Model("tiny"); got.Severity.High != "count(*) >= 2" {
		t.Fatalf("live severity %q", got.Severity.High)
	}
	if _, err := cat.Model("nope"); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("unknown model: %v", err)
	}
}

func TestVersion_ChangesWithSQLAndParameters(t *testing.T) {
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": tiny, "other.sql": strings.Replace(edit(tiny, 17, "WHERE visit_type = $kind AND fund_amount > 0"), "name: tiny", "name: other", 1)}))
	if err != nil {
		t.Fatal(err)
	}
	other, m := ms[0], ms[1]
	defaults, _ := m.Values(nil)
	same, _ := m.Values(map[string]string{"kind": "pharmacy"})
	changed, _ := m.Values(map[string]string{"kind": "inpatient"})
	v := models.Version(m, defaults)
	if len(v) != 64 {
		t.Fatalf("version %q is not a SHA-256", v)
	}
	if models.Version(m, same) != v {
		t.Error("setting a parameter to its default changed the version")
	}
	if models.Version(m, changed) == v {
		t.Error("another parameter value kept the version")
	}
	if models.Version(other, defaults) == v {
		t.Error("other SQL kept the version")
	}
	if got := defaults.JSON(); got != `{"kind":"pharmacy"}` {
		t.Errorf("canonical params %s", got)
	}
}

func TestValues_OverridesAreTypedAndChecked(t *testing.T) {
	m := model(t, "impossible_location")
	v, err := m.Values(map[string]string{"margin_hours": "4.5"})
	if err != nil || v["margin_hours"] != 4.5 || v["min_distance_km"] != float64(100) {
		t.Fatalf("values %v, %v", v, err)
	}
	for _, bad := range []map[string]string{
		{"margin_hours": "6; DROP TABLE settlements"},
		{"margin": "6"},
		{"margin_hours": "NaN"},
	} {
		if _, err := m.Values(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if v := model(t, "phantom_purchases").Params; v[len(v)-1].Name != "repeat_purchases" || v[len(v)-1].Default != int64(2) {
		t.Errorf("repeat_purchases %+v", v[len(v)-1])
	}
}

func TestParseSets(t *testing.T) {
	got, err := models.ParseSets([]string{"grace_days=3", "note=a=b"})
	if err != nil || got["grace_days"] != "3" || got["note"] != "a=b" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := models.ParseSets([]string{"grace_days"}); err == nil {
		t.Fatal("a --set without = accepted")
	}
}

// The shipped models say what they do, keep to portable SQL and carry
// fixture cases for every reason they return.
func TestEmbeddedModels_AreDocumentedPortableAndTested(t *testing.T) {
	want := map[string][]string{
		"deceased_claims":     {"after_death", "hukou_cancelled"},
		"impossible_location": {"in_custody", "abroad", "away_during_stay", "unreachable"},
		"phantom_purchases":   {"never_there"},
		"overlapping_stays":   {"overlap"},
		"unknown_identity":    {"unknown_person"},
	}
	ms := embedded(t)
	if len(ms) != len(want) {
		t.Fatalf("%d embedded models, want %d", len(ms), len(want))
	}
	nonPortable := regexp.MustCompile(`(?i)\bqualify\b|\basof\b|read_parquet|read_csv|read_json|\blambda\b|->`)
	for _, m := range ms {
		var codes []string
		for _, r := range m.Reasons {
			codes = append(codes, r.Code)
		}
		if strings.Join(codes, ",") != strings.Join(want[m.Name], ",") {
			t.Errorf("%s reasons %v, want %v", m.Name, codes, want[m.Name])
		}
		if m.Severity.High == "" || m.Tests == nil || len(m.Tests.Cases) < 3 {
			t.Errorf("%s: severity rules and fixture cases expected", m.Name)
		}
		query := m.SQL[strings.Index(m.SQL, "\n"+firstQueryWord(m.SQL)):]
		if loc := nonPortable.FindString(query); loc != "" {
			t.Errorf("%s uses %q, which is not portable SQL", m.Name, loc)
		}
		flagged := map[string]bool{}
		for _, c := range m.Tests.Cases {
			for _, r := range c.Flag {
				flagged[r] = true
			}
		}
		for _, r := range want[m.Name] {
			if !flagged[r] {
				t.Errorf("%s: no fixture case flags reason %s", m.Name, r)
			}
		}
	}
}

func firstQueryWord(sql string) string {
	for _, l := range strings.Split(sql, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			return strings.Fields(l)[0]
		}
	}
	return ""
}
