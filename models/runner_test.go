package models_test

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"collider/models"
	"collider/store"
)

const (
	personA = "620102195001100115" // died 2021-03-02
	personB = "620102195302110130" // died 2021-04-01
	personC = "620102195603120156" // alive
)

// deceasedStore loads a small province for deceased_claims: A's purchases
// 2 and 69 days after death at a Lanzhou pharmacy and a visit at a
// province-level hospital, B's purchase the day after death, C alive.
func deceasedStore(t *testing.T) *store.Store {
	t.Helper()
	s := openStore(t)
	deliver(t, s, "institutions", `SELECT * FROM (VALUES
		('P62010200456', '某某大药房', 'pharmacy', '620102', NULL::DOUBLE, NULL::DOUBLE),
		('H62000000001', '甘肃省人民医院', 'hospital', '620000', NULL, NULL))
		t(institution_id, name, kind, region_code, lat, lon)`)
	deliver(t, s, "residents", `SELECT * FROM (VALUES ('`+personB+`', '李四', '620102', NULL::VARCHAR)) t(person_id, name, hukou_region, birth_date)`)
	deliver(t, s, "civil_status", `SELECT * FROM (VALUES
		('`+personA+`', 'deceased', '2021-03-02', NULL::VARCHAR),
		('`+personB+`', 'deceased', '2021-04-01', NULL),
		('`+personC+`', 'alive', NULL, NULL)) t(person_id, status, death_date, updated_at)`)
	deliver(t, s, "settlements", `SELECT settlement_id, person_id, person_name, institution_id, visit_type, visit_start,
			NULL::VARCHAR AS visit_end, visit_start AS settled_at, fund + 50 AS total_amount, fund AS fund_amount, '620102' AS insured_region
		FROM (VALUES
		('S1', '`+personA+`', '张三', 'P62010200456', 'pharmacy', '2021-05-10 10:00:00', 356.20),
		('S2', '`+personA+`', '张三', 'P62010200456', 'pharmacy', '2021-03-04 10:00:00', 100.00),
		('S3', '`+personA+`', '张三', 'H62000000001', 'outpatient', '2021-05-11 10:00:00', 50.00),
		('S4', '`+personB+`', NULL, 'P62010200456', 'pharmacy', '2021-04-02 10:00:00', 20.00),
		('S5', '`+personC+`', '王五', 'P62010200456', 'pharmacy', '2021-05-10 10:00:00', 10.00))
		t(settlement_id, person_id, person_name, institution_id, visit_type, visit_start, fund)`)
	return s
}

// runner's clock: suppressions are judged at this time.
var testNow = time.Date(2024, 1, 1, 12, 0, 0, 0, time.FixedZone("CST", 8*3600))

func newRunner() *models.Runner {
	return &models.Runner{Log: quiet, Now: func() time.Time { return testNow }}
}

func flaggedIDs(t *testing.T, c *sql.Conn, table string) []string {
	t.Helper()
	rows, err := c.QueryContext(context.Background(), "SELECT settlement_id FROM "+table+" ORDER BY settlement_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		rows.Scan(&id)
		out = append(out, id)
	}
	return out
}

func TestRun_GroupsCluesPerPersonAndInstitution(t *testing.T) {
	s := deceasedStore(t)
	c := conn(t, s)
	run, err := newRunner().Run(context.Background(), c, model(t, "deceased_claims"), models.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if run.Flagged != 4 || run.Clues != 3 || run.Settlements != 4 || run.Suppressed != 0 || run.Unmatched != 0 {
		t.Fatalf("run %+v", run)
	}
	clues, err := models.ReadClues(context.Background(), c, run.ClueTable, 10)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]models.Clue{}
	for _, cl := range clues {
		byKey[cl.PersonID+"@"+cl.InstitutionID] = cl
	}
	a := byKey[personA+"@P62010200456"]
	if a.SettlementCount != 2 || strings.Join(a.SettlementIDs, ";") != "S2;S1" || a.FundAmount != 456.20 ||
		a.Severity != "high" || a.CityCode != "620100" || a.PersonName != "张三" || a.InstitutionName != "某某大药房" ||
		a.FirstVisit.Format("2006-01-02") != "2021-03-04" || a.LastVisit.Format("2006-01-02") != "2021-05-10" ||
		strings.Join(a.Reasons, ";") != "after_death" || a.Model != "deceased_claims" || a.ModelVersion != run.Version {
		t.Errorf("clue of A at the pharmacy: %+v", a)
	}
	if want := "参保人620102195001100115于2021-03-02死亡（公安生存状态），2021-03-04至2021-05-10在某某大药房（P62010200456）购药结算2次，基金支付456.20元。"; a.Narrative != want {
		t.Errorf("narrative\n got %s\nwant %s", a.Narrative, want)
	}
	if !strings.Contains(string(a.Evidence), `"days_after_death":69`) || !strings.Contains(string(a.Evidence), `"settlement_id":"S2"`) {
		t.Errorf("evidence %s", a.Evidence)
	}
	// A province-level hospital's clue goes to the province.
	if h := byKey[personA+"@H62000000001"]; h.CityCode != "620000" || h.SettlementCount != 1 {
		t.Errorf("clue at the provincial hospital: %+v", h)
	}
	// The name comes from the household register when the settlement has none.
	if b := byKey[personB+"@P62010200456"]; b.PersonName != "李四" || b.Severity != "low" {
		t.Errorf("clue of B: %+v", b)
	}
	// Clues are numbered best score first.
	if clues[0].No != 1 || clues[0].Score < clues[1].Score || clues[1].Score < clues[2].Score {
		t.Errorf("clue order %v %v %v", clues[0].Score, clues[1].Score, clues[2].Score)
	}
	// The clue's settlements are linked for the casebook's issued pairs.
	var links int
	c.QueryRowContext(context.Background(), "SELECT count(*) FROM "+run.ClueSettlementTable+" WHERE model = 'deceased_claims'").Scan(&links)
	if links != 4 {
		t.Errorf("%d clue settlements", links)
	}

}

// A --set override changes what is flagged; the version follows.
func TestRun_SetOverrideChangesResults(t *testing.T) {
	s := deceasedStore(t)
	c := conn(t, s)
	m := model(t, "deceased_claims")
	r := newRunner()
	def, err := r.Run(context.Background(), c, m, models.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(flaggedIDs(t, c, def.FlagTable), ","); got != "S1,S2,S3,S4" {
		t.Fatalf("defaults flag %s", got)
	}
	grace, err := r.Run(context.Background(), c, m, models.RunOptions{Params: map[string]string{"grace_days": "5"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(flaggedIDs(t, c, grace.FlagTable), ","); got != "S1,S3" {
		t.Fatalf("grace_days=5 flags %s", got)
	}
	if grace.Version == def.Version || grace.Params["grace_days"] != int64(5) {
		t.Fatalf("version %s params %v", grace.Version, grace.Params)
	}
	if _, err := r.Run(context.Background(), c, m, models.RunOptions{Params: map[string]string{"grace_days": "5 OR 1=1"}}); err == nil {
		t.Fatal("a non-integer grace_days was accepted")
	}
}

// Values are bound, never pasted: a quote in a value is data.
func TestRun_QuoteInAParameterCannotInjectSQL(t *testing.T) {
	s := deceasedStore(t)
	c := conn(t, s)
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": tiny}))
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner()
	for _, v := range []string{"pharmacy' OR '1'='1", "pharmacy'; DROP TABLE settlements; --", `pharmacy" OR "1"="1`} {
		run, err := r.Run(context.Background(), c, ms[0], models.RunOptions{Params: map[string]string{"kind": v}})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if run.Flagged != 0 {
			t.Errorf("%q flagged %d settlements", v, run.Flagged)
		}
	}
	var n int
	if err := c.QueryRowContext(context.Background(), "SELECT count(*) FROM settlements").Scan(&n); err != nil || n != 5 {
		t.Fatalf("settlements: %d, %v", n, err)
	}
	run, err := r.Run(context.Background(), c, ms[0], models.RunOptions{})
	if err != nil || run.Flagged != 4 {
		t.Fatalf("plain value: %v %v", run, err)
	}
}

func TestRun_SuppressionsAreHonoured(t *testing.T) {
	s := deceasedStore(t)
	c := conn(t, s)
	m := model(t, "deceased_claims")
	cases := []struct {
		name        string
		suppression string // kind, model, person_id, institution_id, expires_at, revoked_at
		suppressed  int64
		issued      string
	}{
		{"none", "", 0, "S1,S2,S3,S4"},
		{"person", `'person', NULL, '` + personA + `', NULL, NULL, NULL`, 3, "S4"},
		{"person until a later date", `'person', NULL, '` + personA + `', NULL, TIMESTAMP '2024-06-01 00:00:00', NULL`, 3, "S4"},
		{"expired person", `'person', NULL, '` + personA + `', NULL, TIMESTAMP '2023-12-31 00:00:00', NULL`, 0, "S1,S2,S3,S4"},
		{"revoked person", `'person', NULL, '` + personA + `', NULL, NULL, TIMESTAMP '2023-06-01 00:00:00'`, 0, "S1,S2,S3,S4"},
		{"institution", `'institution', NULL, NULL, 'P62010200456', NULL, NULL`, 3, "S3"},
		{"model and person", `'model_person', 'deceased_claims', '` + personB + `', NULL, NULL, NULL`, 1, "S1,S2,S3"},
		{"another model and person", `'model_person', 'phantom_purchases', '` + personB + `', NULL, NULL, NULL`, 0, "S1,S2,S3,S4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if _, err := c.ExecContext(ctx, "DELETE FROM casebook.suppressions"); err != nil {
				t.Fatal(err)
			}
			if tc.suppression != "" {
				if _, err := c.ExecContext(ctx, `INSERT INTO casebook.suppressions
					(id, kind, model, person_id, institution_id, expires_at, revoked_at, reason, created_by, created_at)
					VALUES (nextval('casebook.suppression_ids'), `+tc.suppression+`, '公安死亡日期有误', 'province', TIMESTAMP '2023-01-01 00:00:00')`); err != nil {
					t.Fatal(err)
				}
			}
			run, err := newRunner().Run(ctx, c, m, models.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if run.Suppressed != tc.suppressed || run.Flagged != 4 {
				t.Errorf("flagged %d suppressed %d, want 4 and %d", run.Flagged, run.Suppressed, tc.suppressed)
			}
			if got := strings.Join(flaggedIDs(t, c, run.ClueSettlementTable), ","); got != tc.issued {
				t.Errorf("issued %s, want %s", got, tc.issued)
			}
		})
	}
}

// A (model, settlement) pair is issued once: a later run builds its clues
// from the new settlements only.
func TestRun_AlreadyIssuedSettlementsAreLeftOut(t *testing.T) {
	s := deceasedStore(t)
	c := conn(t, s)
	ctx := context.Background()
	if _, err := c.ExecContext(ctx, `CREATE TEMP TABLE issued AS SELECT * FROM (VALUES
		('deceased_claims', 'S1'), ('phantom_purchases', 'S3')) t(model, settlement_id)`); err != nil {
		t.Fatal(err)
	}
	run, err := newRunner().Run(ctx, c, model(t, "deceased_claims"), models.RunOptions{Exclude: "issued"})
	if err != nil {
		t.Fatal(err)
	}
	if run.AlreadyIssued != 1 || run.Settlements != 3 || run.Clues != 3 {
		t.Fatalf("run %+v", run)
	}
	clues, _ := models.ReadClues(ctx, c, run.ClueTable, 10)
	for _, cl := range clues {
		if cl.InstitutionID == "P62010200456" && cl.PersonID == personA && strings.Join(cl.SettlementIDs, ";") != "S2" {
			t.Errorf("follow-up clue holds %v, want only S2", cl.SettlementIDs)
		}
	}
	if _, err := newRunner().Run(ctx, c, model(t, "deceased_claims"), models.RunOptions{Exclude: "issued; DROP TABLE x"}); err == nil {
		t.Fatal("an excluded table that is not a name was accepted")
	}
}

func TestRun_ModelThatFlagsASettlementTwiceIsAnError(t *testing.T) {
	s := deceasedStore(t)
	c := conn(t, s)
	text := edit(tiny, 16, "FROM settlements CROSS JOIN range(2)")
	ms, err := models.Load(mapFS(map[string]string{"tiny.sql": text}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = newRunner().Run(context.Background(), c, ms[0], models.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "tiny.sql:15: the query returns settlement S1 more than once") {
		t.Fatalf("err = %v", err)
	}
}

// A reason the header does not declare has no label nor narrative, and it
// would be a free-text channel past the masks: the run is refused, naming
// the reason, and so is a null one.
func TestRun_ModelReturningAnUndeclaredReasonIsAnError(t *testing.T) {
	s := deceasedStore(t)
	c := conn(t, s)
	for reason, want := range map[string]string{
		"person_id": `tiny.sql:15: the query returns reason a value that is not a reason code in 4 rows, which the header's reasons do not declare (hit)`,
		"'hti'":     `tiny.sql:15: the query returns reason "hti" in 4 rows`,
		"NULL":      `tiny.sql:15: the query returns reason "(null)" in 4 rows`,
		"'hit'":     "",
	} {
		text := edit(tiny, 15, "SELECT settlement_id, "+reason+" AS reason, json_object('visit_type', visit_type) AS evidence")
		ms, err := models.Load(mapFS(map[string]string{"tiny.sql": text}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = newRunner().Run(context.Background(), c, ms[0], models.RunOptions{})
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("reason %s: err = %v, want %q", reason, err, want)
		}
	}
}

func TestPreview_ShowsCountsByCityAndTheDiffFromLive(t *testing.T) {
	s := deceasedStore(t)
	c := conn(t, s)
	ctx := context.Background()
	live := model(t, "deceased_claims")
	outcomes := []models.Outcome{{"S1", "confirmed"}, {"S4", "dismissed"}, {"S5", "dismissed"}}
	p, err := newRunner().Preview(ctx, c, models.PreviewOptions{
		Draft: live, Live: live, Params: map[string]string{"grace_days": "5"}, Outcomes: outcomes})
	if err != nil {
		t.Fatal(err)
	}
	if p.Flagged != 2 || p.Clues != 2 || p.Persons != 1 || p.Institutions != 2 || p.FundAmount != 406.20 || p.Settlements != 2 {
		t.Errorf("preview totals %+v", p)
	}
	if p.Version == p.LiveVersion || p.LiveVersion == "" {
		t.Errorf("versions %s %s", p.Version, p.LiveVersion)
	}
	var cities []string
	for _, ct := range p.ByCity {
		cities = append(cities, fmt.Sprintf("%s %s %d", ct.Key, ct.Label, ct.Clues))
	}
	sort.Strings(cities)
	if got := strings.Join(cities, "; "); got != "620000 甘肃省 1; 620100 兰州市 1" {
		t.Errorf("by city: %s", got)
	}
	if len(p.ByReason) != 1 || p.ByReason[0].Key != "after_death" || p.ByReason[0].Label != "死亡后发生结算" || p.ByReason[0].Rows != 2 {
		t.Errorf("by reason %+v", p.ByReason)
	}
	d := p.Diff
	if d == nil || d.LiveFlagged != 4 || d.Added != 0 || d.Removed != 2 || d.Kept != 2 || len(d.RemovedSample) != 2 {
		t.Fatalf("diff %+v", d)
	}
	if d.RemovedSample[0].SettlementID != "S2" || d.RemovedSample[1].SettlementID != "S4" || d.RemovedSample[0].InstitutionName != "某某大药房" {
		t.Errorf("removed sample %+v", d.RemovedSample)
	}
	if pr := p.Precision; pr == nil || pr.Draft.Confirmed != 1 || pr.Draft.Dismissed != 0 || pr.Live.Dismissed != 1 || pr.Live.Value() != 0.5 {
		t.Errorf("precision %+v", p.Precision)
	}
	if p.Diff.RemovedSample[0].PersonID != personA {
		t.Errorf("removed sample %+v", p.Diff.RemovedSample[0])
	}
}
