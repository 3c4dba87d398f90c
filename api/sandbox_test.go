package api_test

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"collider/models"
)

// draftOf is the live deceased_claims model with its query replaced: a
// draft as a modeler would post it. evidence is a SQL expression over the
// settlement s; tail is appended after the WHERE clause.
func draftOf(t *testing.T, evidence, from, tail string) string {
	t.Helper()
	b, err := models.Embedded().Open("deceased_claims.sql")
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	buf := make([]byte, 1<<16)
	n, _ := b.Read(buf)
	header, _, _ := strings.Cut(string(buf[:n]), "WITH ended AS")
	text.WriteString(header)
	if from == "" {
		from = "settlements s"
	}
	text.WriteString("SELECT s.settlement_id, 'after_death' AS reason, " + evidence + " AS evidence\nFROM " + from +
		"\nWHERE CAST($grace_days AS INTEGER) >= 0" + tail + "\n")
	return text.String()
}

func previewBody(t *testing.T, sql string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"sql": sql, "sample": 20})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A draft reads the feed tables and nothing else. Each probe reaches for a
// capability the server has (a file, a glob, a copy, another database, an
// extension, a setting, the casebook) and is refused with an error that
// says what a draft may not do — not an internal error. Before the sandbox,
// drafts ran in the server, and every one of these probes succeeded.
func TestSandbox_DraftsReachNothingButTheFeeds(t *testing.T) {
	e := getEnv(t)
	for _, tc := range []struct {
		name, evidence, from, tail, want string
	}{
		{name: "a file", evidence: "json_object('x', (SELECT content FROM read_text('/etc/passwd')))", want: "files"},
		{name: "a file as a table", evidence: "json_object('x', (SELECT count(*) FROM read_csv('/etc/passwd', header = false)))", want: "files"},
		{name: "a blob", evidence: "json_object('x', (SELECT size FROM read_blob('" + e.dir + "/data/casebook.duckdb')))", want: "files"},
		{name: "the store's own file", evidence: "json_object('x', (SELECT count(*) FROM read_parquet('" + e.dir + "/inbox/*/*/*.parquet')))", want: "files"},
		{name: "globbing", evidence: "json_object('x', (SELECT string_agg(file, ',') FROM glob('" + e.dir + "/*')))", want: "files"},
		{name: "a Parquet footer", evidence: "json_object('x', (SELECT count(*) FROM parquet_metadata('/etc/passwd')))", want: "files"},
		{name: "sniffing", evidence: "json_object('x', (SELECT count(*) FROM sniff_csv('/etc/passwd')))", want: "files"},
		{name: "copy", evidence: "json_object()", tail: ") AS x; COPY (SELECT 1) TO '/tmp/collider-probe.csv'; SELECT * FROM (SELECT 1 AS settlement_id", want: "one SELECT query"},
		{name: "attach", evidence: "json_object()", tail: ") AS x; ATTACH '" + e.dir + "/data/casebook.duckdb' AS cb; SELECT * FROM (SELECT 1 AS settlement_id", want: "one SELECT query"},
		{name: "an extension", evidence: "json_object()", tail: ") AS x; LOAD httpfs; SELECT * FROM (SELECT 1 AS settlement_id", want: "one SELECT query"},
		{name: "an extension autoloaded", evidence: "json_object('x', (SELECT count(*) FROM read_xlsx('/etc/passwd')))", want: "extension"},
		{name: "a setting", evidence: "json_object()", tail: ") AS x; SET memory_limit = '100GB'; SELECT * FROM (SELECT 1 AS settlement_id", want: "one SELECT query"},
		{name: "a casebook table", evidence: "json_object('x', (SELECT string_agg(token_hash, ',') FROM casebook.users))", want: "casebook"},
		{name: "a casebook table by its catalog", evidence: "json_object('x', (SELECT count(*) FROM casebook.main.issued))", want: "casebook"},
		{name: "the vault", evidence: "json_object('x', (SELECT count(*) FROM pseudonyms))", want: "feed tables"},
		{name: "the delivery ledger", evidence: "json_object('x', (SELECT string_agg(path, ',') FROM deliveries))", want: "feed tables"},
		{name: "rejected raw values", evidence: "json_object('x', (SELECT string_agg(raw_value, ',') FROM rejects))", want: "feed tables"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, asModeler, http.MethodPost, "/api/v1/models/deceased_claims/preview", previewBody(t, draftOf(t, tc.evidence, tc.from, tc.tail)))
			if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("want a 400 naming %q: %s", tc.want, r)
			}
		})
	}
	if _, err := os.Stat("/tmp/collider-probe.csv"); err == nil {
		t.Error("a draft wrote /tmp/collider-probe.csv")
	}
}

// What a draft can list of its own surroundings names none of the store's
// files, no casebook table and no user column.
func TestSandbox_DraftsSeeNoStorePathsAndNoCasebook(t *testing.T) {
	e := getEnv(t)
	draft := draftOf(t, `json_object(
		'databases', (SELECT string_agg(coalesce(path, database_name), ';') FROM duckdb_databases()),
		'tables', (SELECT string_agg(table_catalog || '.' || table_name, ';') FROM information_schema.tables),
		'columns', (SELECT string_agg(column_name, ';') FROM information_schema.columns),
		'settings', (SELECT string_agg(name || '=' || coalesce(value, ''), ';') FROM duckdb_settings()))`, "", " AND s.settlement_id = (SELECT min(settlement_id) FROM settlements)")
	r := e.do(t, asModeler, http.MethodPost, "/api/v1/models/deceased_claims/preview", previewBody(t, draft))
	if r.status != http.StatusOK {
		t.Fatal(r)
	}
	body := string(r.body)
	if !strings.Contains(body, "settlements") {
		t.Fatalf("the probe shows no table at all: it proves nothing: %s", body)
	}
	for _, bad := range []string{e.dir + "/data/feeds.duckdb", e.dir + "/data/casebook.duckdb", e.dir + "/data/sandbox", "casebook.", "token_hash", "pseudonyms", "audit", e.dir + "/inbox"} {
		if strings.Contains(body, bad) {
			t.Errorf("a draft sees %q", bad)
		}
	}
}

// A modeler's draft that prints people in any form shows tokens only: the
// ID reversed, spaced, cut in pieces, as a number, aggregated over people;
// names are empty. The same draft run by the province shows ID numbers.
func TestSandbox_ModelersSeeTokensHoweverTheDraftSpellsIt(t *testing.T) {
	e := getEnv(t)
	draft := draftOf(t, `json_object(
		'id', s.person_id, 'rev', reverse(s.person_id),
		'spaced', array_to_string(string_split(s.person_id, ''), ' '),
		'head', substr(s.person_id, 1, 9), 'tail', substr(s.person_id, 10),
		'digits', try_cast(substr(s.person_id, 1, 17) AS BIGINT) + 0,
		'name', s.person_name, 'rname', (SELECT max(r.name) FROM residents r WHERE r.person_id = s.person_id),
		'agg', (SELECT string_agg(r.person_id, ',') FROM residents r WHERE r.hukou_region = s.insured_region),
		'birth_year', s.birth_year, 'sex', s.sex, 'id_region', s.id_region)`, "", "")
	var ids, names []string
	rows, err := e.store.DB.Query("SELECT person_id, coalesce(max(name), '') FROM residents GROUP BY person_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, name string
		rows.Scan(&id, &name)
		ids, names = append(ids, id), append(names, name)
	}
	rows.Close()
	if len(ids) < 100 {
		t.Fatalf("%d residents: too few to prove anything", len(ids))
	}
	type sample struct {
		PersonID, PersonName string
		Evidence             map[string]any
	}
	preview := func(as string) []sample {
		r := e.do(t, as, http.MethodPost, "/api/v1/models/deceased_claims/preview", previewBody(t, draft))
		if r.status != http.StatusOK {
			t.Fatalf("%s: %s", as, r)
		}
		var p struct {
			Diff struct{ AddedSample []sample }
		}
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Diff.AddedSample) == 0 {
			t.Fatalf("%s: the draft adds nothing to show", as)
		}
		for _, bad := range forms(ids) {
			if as == asModeler && strings.Contains(string(r.body), bad) {
				t.Errorf("the modeler's preview holds %q, a form of an ID number", bad)
			}
		}
		return p.Diff.AddedSample
	}
	token := regexp.MustCompile(`^[A-Za-z0-9_-]{12}$`)
	idRe := regexp.MustCompile(`^\d{17}[\dX]$`)
	for _, s := range preview(asModeler) {
		if !token.MatchString(s.PersonID) || s.PersonName != "" || s.Evidence["id"] != s.PersonID || s.Evidence["name"] != nil || s.Evidence["rname"] != nil {
			t.Errorf("modeler sees %+v", s)
		}
		if s.Evidence["birth_year"] == nil || (s.Evidence["sex"] != "M" && s.Evidence["sex"] != "F") || s.Evidence["id_region"] == nil {
			t.Errorf("modeler misses the derived facts: %+v", s.Evidence)
		}
	}
	for _, s := range preview(asProvince) {
		if !idRe.MatchString(s.PersonID) || s.Evidence["id"] != s.PersonID {
			t.Errorf("province sees %+v", s)
		}
	}
	_ = names
}

// forms are the spellings of the IDs a draft could try to carry out.
func forms(ids []string) []string {
	var out []string
	for _, id := range ids {
		r := []rune(id)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		out = append(out, id, string(r), strings.Join(strings.Split(id, ""), " "), id[:17], id[9:])
	}
	return out
}

// A draft that would run for hours ends at its time limit with an error
// that says so, and a run started meanwhile completes.
func TestSandbox_RunawayDraftEndsAtItsTimeLimit(t *testing.T) {
	e := getEnv(t)
	limit := e.sandbox.Limits.Timeout
	e.sandbox.Limits.Timeout = 4 * time.Second
	defer func() { e.sandbox.Limits.Timeout = limit }()
	draft := draftOf(t, "json_object('n', (SELECT count(*) FROM settlements a, settlements b, settlements c WHERE a.fund_amount + b.fund_amount > c.fund_amount))", "", "")
	done := make(chan response, 1)
	go func() {
		done <- e.do(t, asModeler, http.MethodPost, "/api/v1/models/deceased_claims/preview", previewBody(t, draft))
	}()
	time.Sleep(time.Second)
	r := e.do(t, asProvince, http.MethodPost, "/api/v1/runs", "")
	if r.status != http.StatusAccepted && r.status != http.StatusCreated {
		t.Fatalf("start a run: %s", r)
	}
	var run struct {
		ID int64 `json:"run_id"`
	}
	json.Unmarshal(r.body, &run)
	for i := 0; i < 20; i++ { // the API answers while the draft runs
		if r := e.do(t, asCityOwn, http.MethodGet, "/api/v1/leads?limit=5", ""); r.status != http.StatusOK {
			t.Fatal(r)
		}
	}
	got := <-done
	if got.status != http.StatusBadRequest || !strings.Contains(string(got.body), "time limit") {
		t.Fatalf("the runaway draft: %s", got)
	}
	e.waitForRuns(t)
	rec, err := e.pipeline.Get(t.Context(), run.ID)
	if err != nil || (rec.Status != "succeeded" && rec.Status != "partial") {
		t.Fatalf("the run started during the draft: %+v %v", rec, err)
	}
}
