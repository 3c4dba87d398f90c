package jobs

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"collider/casebook"
	"collider/domain"
	"collider/models"
	"collider/synth"
)

func liveCatalog(t *testing.T) *models.Catalog {
	t.Helper()
	ms, err := models.Load(models.Embedded())
	if err != nil {
		t.Fatal(err)
	}
	c := models.NewCatalog()
	c.Set(ms...)
	return c
}

// truth reads the generator's truth file: model → settlement ids to flag.
func truth(t *testing.T, dir string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, synth.TruthFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, r := range recs[1:] { // expect,model,settlement_id,reason,scenario
		if r[0] == "flag" {
			out[r[1]] = append(out[r[1]], r[2])
		}
	}
	for _, ids := range out {
		sort.Strings(ids)
	}
	return out
}

func issuedByModel(t *testing.T, p *Pipeline) map[string][]string {
	t.Helper()
	rows, err := p.Store.DB.Query("SELECT model, settlement_id FROM casebook.issued ORDER BY model, settlement_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var m, s string
		rows.Scan(&m, &s)
		out[m] = append(out[m], s)
	}
	return out
}

func newPipeline(t *testing.T, inbox string) *Pipeline {
	s := openStore(t)
	return &Pipeline{Store: s, Casebook: casebook.New(s.DB), Catalog: liveCatalog(t), Inbox: inbox}
}

// The whole pipeline over a generated province publishes exactly the planted
// clues; a second run over the same data publishes an empty batch and no
// (model, settlement) pair twice.
func TestPipeline_PublishesPlantedCluesOnceAndOnlyOnce(t *testing.T) {
	inbox := t.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: inbox, Seed: 5, Settlements: 20_000, Bad: true}); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, inbox)
	ctx := context.Background()
	out, err := p.Run(ctx, "cli", "test")
	if out.Status != RunPartial || out.BatchID == 0 || len(out.Failed()) != 2 {
		t.Fatalf("first run: status %s batch %d failed %d err %v", out.Status, out.BatchID, len(out.Failed()), err)
	}
	want, got := truth(t, inbox), issuedByModel(t, p)
	for model, ids := range want {
		if strings.Join(got[model], ",") != strings.Join(ids, ",") {
			t.Errorf("%s: issued %d settlements, truth has %d", model, len(got[model]), len(ids))
		}
	}
	if len(got) != len(want) {
		t.Errorf("models with clues: %d, want %d", len(got), len(want))
	}
	rec, err := p.Get(ctx, out.RunID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range rec.Steps {
		names = append(names, st.Name)
	}
	if !strings.HasPrefix(strings.Join(names, ","), "discover,load") || !strings.HasSuffix(strings.Join(names, ","), "publish,route") {
		t.Errorf("steps %v", names)
	}

	again, err := p.Run(ctx, "cli", "test")
	if err != nil && again.Status != RunSucceeded {
		t.Fatalf("second run: %v", err)
	}
	if again.Status != RunSucceeded || again.BatchID == out.BatchID || again.Batch.Clues != 0 {
		t.Fatalf("second run: %+v", again)
	}
	// Over everything published, in both batches' clues (not the issued
	// ledger, whose key makes a repeat impossible to store): no (model,
	// settlement) appears twice.
	var pairs, distinct int
	if err := p.Store.DB.QueryRow(`SELECT count(*), count(DISTINCT (model, s)) FROM (
		SELECT model, unnest(string_split(settlement_ids, ';')) AS s FROM casebook.clues)`).Scan(&pairs, &distinct); err != nil {
		t.Fatal(err)
	}
	if pairs == 0 || pairs != distinct {
		t.Fatalf("%d published (model, settlement) pairs, %d distinct", pairs, distinct)
	}
	var leads, clues int
	p.Store.DB.QueryRow("SELECT (SELECT count(*) FROM casebook.leads), (SELECT count(*) FROM casebook.clues)").Scan(&leads, &clues)
	if leads != clues || clues == 0 {
		t.Fatalf("%d clues, %d leads", clues, leads)
	}

	// Every time the store keeps is China Standard Time wall clock, whatever
	// the statement that wrote it: a city's accept comes after the route, and
	// both are now.
	var lead int64
	var city string
	p.Store.DB.QueryRow("SELECT lead_id, city_code FROM casebook.leads WHERE city_code NOT LIKE '__0000' LIMIT 1").Scan(&lead, &city)
	if _, err := p.Casebook.Act(ctx, casebook.User{Name: "test", Role: casebook.RoleCity, City: city}, lead, casebook.Action{Action: casebook.ActionAccept}); err != nil {
		t.Fatal(err)
	}
	ev, err := p.Casebook.Events(ctx, casebook.User{Role: casebook.RoleProvince}, lead)
	if err != nil || len(ev) != 2 {
		t.Fatalf("events %v %v", ev, err)
	}
	now := time.Now()
	var runStart time.Time
	p.Store.DB.QueryRow("SELECT started_at FROM casebook.runs WHERE run_id = ?", out.RunID).Scan(&runStart)
	for _, at := range []time.Time{ev[0].At, ev[1].At, out.Batch.PublishedAt, domain.Wall(runStart)} {
		if d := now.Sub(at); d < -time.Minute || d > 5*time.Minute {
			t.Fatalf("a stored time is %s off now: %s", d, at)
		}
	}
	if ev[1].At.Before(ev[0].At) {
		t.Fatalf("accepted at %s, before the route at %s", ev[1].At, ev[0].At)
	}
}

// A death record that arrives late turns up the purchases made after that
// death on the next run; a new purchase of an already-flagged person at the
// same pharmacy joins a follow-up clue that names the earlier one.
func TestPipeline_LateDeathRecordAndFollowUpClue(t *testing.T) {
	inbox := t.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: inbox, Seed: 9, Settlements: 10_000}); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, inbox)
	ctx := context.Background()
	first, err := p.Run(ctx, "cli", "test")
	if err != nil {
		t.Fatal(err)
	}
	db := p.Store.DB
	// An alive person with several purchases: they die, per a late police record,
	// ten days before their last purchase.
	var person, lastVisit string
	if err := db.QueryRow(`SELECT s.person_id, CAST(max(s.visit_start) AS VARCHAR) FROM settlements s
		JOIN civil_status c USING (person_id) WHERE c.status = 'alive'
		GROUP BY s.person_id HAVING count(*) >= 3 ORDER BY s.person_id LIMIT 1`).Scan(&person, &lastVisit); err != nil {
		t.Fatal(err)
	}
	var wantLate []string
	rows, _ := db.Query(`SELECT settlement_id FROM settlements WHERE person_id = ?
		AND CAST(visit_start AS DATE) > CAST(CAST(? AS TIMESTAMP) - INTERVAL 10 DAYS AS DATE) ORDER BY settlement_id`, person, lastVisit)
	for rows.Next() {
		var id string
		rows.Scan(&id)
		wantLate = append(wantLate, id)
	}
	rows.Close()
	delivery(t, db, inbox, "civil_status", "0002", `SELECT '`+person+`' AS person_id, 'deceased' AS status,
		strftime(CAST('`+lastVisit+`' AS TIMESTAMP) - INTERVAL 10 DAYS, '%Y-%m-%d') AS death_date`)

	// A planted after_death clue of the first batch; its person buys again there.
	var clueID int64
	var dead, pharmacy, sid string
	if err := db.QueryRow(`SELECT c.clue_id, c.person_id, c.institution_id, split_part(c.settlement_ids, ';', 1) FROM casebook.clues c
		WHERE c.batch_id = ? AND c.model = 'deceased_claims' AND c.institution_id LIKE 'P%' ORDER BY c.clue_id LIMIT 1`, first.BatchID).
		Scan(&clueID, &dead, &pharmacy, &sid); err != nil {
		t.Fatal(err)
	}
	delivery(t, db, inbox, "settlements", "0002", `SELECT 'S-LATE-1' AS settlement_id, person_id, person_name, institution_id, visit_type,
		visit_start + INTERVAL 20 DAYS AS visit_start, visit_end, settled_at + INTERVAL 20 DAYS AS settled_at, CAST(total_amount AS DOUBLE) AS total_amount,
		CAST(fund_amount AS DOUBLE) AS fund_amount, insured_region FROM settlements WHERE settlement_id = '`+sid+`'`)

	second, err := p.Run(ctx, "cli", "test")
	if err != nil {
		t.Fatal(err)
	}
	var late []string
	rows, _ = db.Query(`SELECT i.settlement_id FROM casebook.issued i JOIN casebook.clues c USING (clue_id)
		WHERE c.batch_id = ? AND c.person_id = ? AND i.model = 'deceased_claims' ORDER BY 1`, second.BatchID, person)
	for rows.Next() {
		var id string
		rows.Scan(&id)
		late = append(late, id)
	}
	rows.Close()
	if len(wantLate) == 0 || strings.Join(late, ",") != strings.Join(wantLate, ",") {
		t.Fatalf("late death: flagged %v, want %v", late, wantLate)
	}
	var follow int64
	var ids string
	if err := db.QueryRow(`SELECT follow_up_of, settlement_ids FROM casebook.clues WHERE batch_id = ? AND model = 'deceased_claims'
		AND person_id = ? AND institution_id = ?`, second.BatchID, dead, pharmacy).Scan(&follow, &ids); err != nil {
		t.Fatal(err)
	}
	if follow != clueID || ids != "S-LATE-1" {
		t.Fatalf("follow-up clue: follow_up_of %d (want %d), settlements %s", follow, clueID, ids)
	}
}

// The models against the generator's ground truth on a province of a
// million settlements: for each model every planted settlement is flagged
// (recall 100%), no planted near-miss is, and nothing else is either.
func TestModels_RecallOnAMillionSettlements(t *testing.T) {
	if testing.Short() {
		t.Skip("a million settlements: not in -short")
	}
	inbox := t.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: inbox, Seed: 21, Settlements: 1_000_000}); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, inbox)
	out, err := p.Run(context.Background(), "cli", "test")
	if err != nil {
		t.Fatal(err)
	}
	var loaded int64
	for _, l := range out.Loads {
		if l.Feed == "settlements" {
			loaded += l.Loaded
		}
	}
	if loaded < 990_000 {
		t.Fatalf("only %d settlements loaded; the test is about a million", loaded)
	}
	f, _ := os.Open(filepath.Join(inbox, synth.TruthFile))
	recs, _ := csv.NewReader(f).ReadAll()
	f.Close()
	issued := map[string]bool{}
	for model, ids := range issuedByModel(t, p) {
		for _, id := range ids {
			issued[model+" "+id] = true
		}
	}
	planted, found, clear, flaggedClear := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	inTruth := map[string]bool{}
	for _, r := range recs[1:] { // expect,model,settlement_id,reason,scenario
		key := r[1] + " " + r[2]
		switch r[0] {
		case "flag":
			planted[r[1]]++
			inTruth[key] = true
			if issued[key] {
				found[r[1]]++
			}
		case "clear":
			clear[r[1]]++
			for _, m := range []string{"deceased_claims", "impossible_location", "phantom_purchases", "overlapping_stays", "unknown_identity"} {
				if issued[m+" "+r[2]] {
					flaggedClear[r[1]]++
				}
			}
		}
	}
	for _, m := range []string{"deceased_claims", "impossible_location", "phantom_purchases", "overlapping_stays", "unknown_identity"} {
		if planted[m] == 0 || clear[m] == 0 {
			t.Errorf("%s: %d planted cases and %d near-misses in the truth; every model needs both", m, planted[m], clear[m])
		}
	}
	for model, n := range planted {
		t.Logf("%-20s planted %4d  flagged %4d  recall %.1f%%  near-misses %4d  near-misses flagged %d",
			model, n, found[model], 100*float64(found[model])/float64(n), clear[model], flaggedClear[model])
		if found[model] != n || flaggedClear[model] != 0 {
			t.Errorf("%s: recall %d/%d, near-misses flagged %d", model, found[model], n, flaggedClear[model])
		}
	}
	extra := 0
	for key := range issued {
		if !inTruth[key] {
			extra++
		}
	}
	if extra != 0 {
		t.Errorf("%d settlements flagged that were not planted", extra)
	}
	t.Logf("batch %d: %d clues over %d settlements; nothing flagged outside the truth", out.BatchID, out.Batch.Clues, out.Batch.Settlements)
}

// A record read as running while its run finishes is never shown running
// without progress: the live run's progress is attached, and a run that is
// no longer live is read again, finished.
func TestRuns_RunningRecordHasProgressOrIsReadAgain(t *testing.T) {
	p := newPipeline(t, "")
	ctx := context.Background()
	rl, _, err := p.begin(ctx, "api", "test")
	if err != nil {
		t.Fatal(err)
	}
	rl.begin(ctx, "model", "deceased_claims", 0)
	live, err := p.Get(ctx, rl.id)
	if err != nil || live.Status != RunRunning || live.Progress == nil || live.Progress.Step != "model" {
		t.Fatalf("live run: %+v %v", live, err)
	}
	stale := live
	rl.finish(ctx, RunSucceeded, nil, nil)
	p.end()
	if err := p.withProgress(ctx, &stale); err != nil {
		t.Fatal(err)
	}
	if stale.Status != RunSucceeded || stale.Progress != nil || stale.FinishedAt == nil {
		t.Fatalf("a run that finished during the read: %+v", stale)
	}
	runs, err := p.List(ctx, 0, 10)
	if err != nil || len(runs) != 1 || runs[0].Status != RunSucceeded {
		t.Fatalf("list: %+v %v", runs, err)
	}
}
