package casebook

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
)

// reloaded is what memory would hold if it were read again now.
func (f *fixture) reloaded(t *testing.T) []memLead {
	t.Helper()
	leads, err := f.cb.readLeads(context.Background(), f.cb.DB, 0)
	if err != nil {
		t.Fatal(err)
	}
	return leads
}

func (f *fixture) inMemory(t *testing.T) []memLead {
	t.Helper()
	var out []memLead
	if err := f.cb.leadsView(context.Background(), func(leads []memLead) { out = append(out, leads...) }); err != nil {
		t.Fatal(err)
	}
	return out
}

// publishSmall publishes a batch of n clues for city through Publish, as a
// run does (temp tables on one connection).
func (f *fixture) publishSmall(t *testing.T, n int, city string) Batch {
	t.Helper()
	ctx := context.Background()
	conn, err := f.cb.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{
		fmt.Sprintf(`CREATE OR REPLACE TEMP TABLE pub_clues AS SELECT i AS clue_no, 'deceased_claims' AS model, 'v9' AS model_version, 'high' AS severity,
			50.0 + i AS score, 'after_death' AS reasons, '62010219800229' || lpad(CAST(i AS VARCHAR), 4, '0') AS person_id, '李四' AS person_name,
			'P1' AS institution_id, '药房' AS institution_name, '%s' AS city_code, 1 AS settlement_count, 'PUB' || i AS settlement_ids,
			TIMESTAMP '2026-01-02 10:00:00' AS first_visit, TIMESTAMP '2026-01-02 10:00:00' AS last_visit,
			CAST(10.5 AS DECIMAL(18,2)) AS total_amount, CAST(8.25 AS DECIMAL(18,2)) AS fund_amount, '叙述' AS narrative, '[{"a":1}]' AS evidence
			FROM range(%d) t(i)`, city, n),
		"CREATE OR REPLACE TEMP TABLE pub_pairs AS SELECT clue_no, model, settlement_ids AS settlement_id FROM pub_clues",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	b, err := f.cb.Publish(ctx, conn, PublishInput{Models: []ModelRun{{Model: "deceased_claims", Version: "v9", SQL: "SELECT 1", Params: "{}",
		ClueTable: "temp.pub_clues", ClueSettlementTable: "temp.pub_pairs"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Memory after every kind of write is what reading the tables again gives:
// publish, every action, refused and conflicting actions.
func TestMemory_AfterEveryWriteEqualsTheTablesReadAgain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.cb.Synthesize(ctx, 400); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		if got, want := f.inMemory(t), f.reloaded(t); !reflect.DeepEqual(got, want) {
			for i := range min(len(got), len(want)) {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("after %s, lead %d in memory:\n%+v\nin the tables:\n%+v", step, want[i].ID, got[i], want[i])
				}
			}
			t.Fatalf("after %s: %d leads in memory, %d in the tables", step, len(got), len(want))
		}
		var got groups
		var cities cityIndex
		f.cb.memoryView(ctx, func(mem *leadMemory) { got, cities = maps.Clone(mem.groups), maps.Clone(mem.cities) })
		if want := groupLeads(f.reloaded(t)); !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s, the groups in memory:\n%v\nof the leads in the tables:\n%v", step, got, want)
		}
		if want := indexCities(f.reloaded(t)); !reflect.DeepEqual(cities, want) {
			t.Fatalf("after %s, the city index in memory:\n%v\nof the leads in the tables:\n%v", step, cities, want)
		}
	}
	check("loading")
	b := f.publishSmall(t, 5, "620100")
	check("publish")
	lead := b.ID // any lead of the batch
	page, err := f.cb.Clues(ctx, f.province, ClueFilter{Batch: b.ID})
	if err != nil || len(page) != 5 {
		t.Fatalf("the published batch's clues at once: %d, %v", len(page), err)
	}
	lead = page[0].ID
	steps := []struct {
		u User
		a Action
	}{
		{f.lanzhou, Action{Action: ActionAccept}},
		{f.lanzhou, Action{Action: ActionAccept}}, // refused: already accepted
		{f.lanzhou, Action{Action: ActionInvestigate}},
		{f.lanzhou, Action{Action: ActionClose, Outcome: OutcomeConfirmed, RecoveredAmount: amount(12.345), Note: " 属实 "}},
	}
	for i, s := range steps {
		f.cb.Act(ctx, s.u, lead, s.a)
		check(fmt.Sprintf("step %d (%s)", i, s.a.Action))
	}
	ret := page[1].ID
	if _, err := f.cb.Act(ctx, f.lanzhou, ret, Action{Action: ActionReturn, Note: "非本市"}); err != nil {
		t.Fatal(err)
	}
	check("return")
	if _, err := f.cb.Act(ctx, f.province, ret, Action{Action: ActionReassign, City: "620400"}); err != nil {
		t.Fatal(err)
	}
	check("reassign")
	if l, err := f.cb.Lead(ctx, f.baiyin, ret); err != nil || l.City != "620400" || l.Clue.City != "620400" || l.Clue.Status != StatusNew {
		t.Fatalf("the reassigned lead for its new city: %+v %v", l, err)
	}
	if _, err := f.cb.Lead(ctx, f.lanzhou, ret); err == nil {
		t.Fatal("the old city still sees the reassigned lead")
	}
}

// A clue put together from memory and the three columns memory does not
// keep is the clue its row holds, for every lead (with and without visits,
// follow-ups, names).
func TestMemory_AClueFromMemoryIsItsRow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.cb.Synthesize(ctx, 300); err != nil {
		t.Fatal(err)
	}
	f.publishSmall(t, 3, "620100")
	if _, err := f.cb.DB.Exec(`UPDATE casebook.clues SET follow_up_of = clue_id - 1, first_visit = NULL, person_name = NULL
		WHERE clue_id % 7 = 0`); err != nil {
		t.Fatal(err)
	}
	f.cb.forgetLeads()
	rows, err := f.cb.DB.Query("SELECT " + clueColumns + " FROM casebook.clues c JOIN casebook.leads l ON l.lead_id = c.clue_id ORDER BY c.clue_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for ; rows.Next(); n++ {
		var want Clue
		if err := scanClue(rows, &want); err != nil {
			t.Fatal(err)
		}
		m, ok, err := f.cb.memLeadByID(ctx, want.ID)
		if err != nil || !ok {
			t.Fatalf("lead %d: %v %v", want.ID, ok, err)
		}
		f.cb.cache.clear()
		want.Evidence = appendJSONRaw(nil, want.Evidence) // as the API answers it
		for _, from := range []string{"a query", "the read cache"} {
			got, err := f.cb.clueOf(ctx, &m)
			if err != nil {
				t.Fatal(err)
			}
			got.encoded = nil
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("clue %d from memory and %s:\n%+v\nits row:\n%+v", want.ID, from, got, want)
			}
		}
	}
	if n != 303 {
		t.Fatalf("%d clues compared", n)
	}
}

// What the read cache keeps of a clue reads back as it was, whatever
// bytes it holds.
func TestReadCache_ClueTextReadsBack(t *testing.T) {
	for _, c := range [][3]string{{"", "", ""}, {"S1;S2", "叙述\x00含零字节", `[{"a":1}]`}, {strings.Repeat("S;", 5000), "x", "[]"}} {
		text := packText(c[0], c[1], []byte(c[2]))
		ids, narrative, evidence, err := text.unpack()
		if err != nil || ids != c[0] || narrative != c[1] || string(evidence) != c[2] {
			t.Fatalf("%q read back as %q %q %q %v", c, ids, narrative, evidence, err)
		}
		// The cache counts a text by its length: it holds no more than that
		// (S2 asks for room for its worst case, several times as much).
		if cap(text) > len(text)*5/4+16 { // an allocation rounds up to its size class
			t.Fatalf("%q packed into %d bytes holds %d", c, len(text), cap(text))
		}
	}
	if _, _, _, err := clueText("not zstd").unpack(); err == nil {
		t.Fatal("garbage read back")
	}
}

// A lead's events show the action that adds one at once; a clue list and a
// lead show a publish and an action at once.
func TestReadCache_EveryWriteIsSeenAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addLead(t, 100_000, "620100", "high")
	ev, err := f.cb.Events(ctx, f.lanzhou, 100_000)
	if err != nil || len(ev) != 1 {
		t.Fatalf("%v %v", ev, err)
	}
	if _, err := f.cb.Act(ctx, f.lanzhou, 100_000, Action{Action: ActionAccept}); err != nil {
		t.Fatal(err)
	}
	ev, err = f.cb.Events(ctx, f.lanzhou, 100_000)
	if err != nil || len(ev) != 2 || ev[1].Action != ActionAccept {
		t.Fatalf("events after accept: %+v %v", ev, err)
	}
	cl, err := f.cb.Clue(ctx, f.province, 100_000)
	if err != nil || cl.Status != StatusAccepted {
		t.Fatalf("the clue's status after accept: %+v %v", cl, err)
	}
	b := f.publishSmall(t, 3, "620400")
	cls, err := f.cb.Clues(ctx, f.baiyin, ClueFilter{})
	if err != nil || len(cls) != 3 || cls[0].BatchID != b.ID {
		t.Fatalf("baiyin's clues after a publish: %d %v", len(cls), err)
	}
	if n, err := f.cb.CountClues(ctx, f.province, ClueFilter{Batch: b.ID, City: "620400"}); err != nil || n != 3 {
		t.Fatalf("count %d %v", n, err)
	}
}

func TestReadCache_StaysWithinItsSize(t *testing.T) {
	var rc readCache
	for i := int64(0); i < 100; i++ {
		rc.put(cacheKey{'c', i}, i, 100, rc.begin(), 1000)
	}
	if rc.size > 1000 || len(rc.entries) != 10 {
		t.Fatalf("%d bytes in %d entries", rc.size, len(rc.entries))
	}
	if _, ok := rc.get(cacheKey{'c', 99}); !ok {
		t.Fatal("the newest entry is gone")
	}
	if _, ok := rc.get(cacheKey{'c', 0}); ok {
		t.Fatal("the oldest entry is kept")
	}
	g := rc.begin()
	rc.forget(cacheKey{'c', 99})
	rc.put(cacheKey{'c', 99}, 99, 100, g, 1000) // read before the forget: not kept
	if _, ok := rc.get(cacheKey{'c', 99}); ok {
		t.Fatal("a value read before a write was kept")
	}
	rc.put(cacheKey{'c', 1}, 1, 100, rc.begin(), -1)
	if _, ok := rc.get(cacheKey{'c', 1}); ok {
		t.Fatal("a negative size caches")
	}
}

// The memory's clue scope agrees with clueScope's SQL for every role and filter.
func TestMemory_ClueScopeAgreesWithTheSQL(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.cb.Synthesize(ctx, 2000); err != nil {
		t.Fatal(err)
	}
	users := []User{f.province, f.lanzhou, f.baiyin, f.modeler, f.admin}
	filters := []ClueFilter{{}, {Batch: 1}, {Model: "deceased_claims"}, {City: "620100"}, {Severity: "high"}, {Status: "closed"},
		{Overdue: true}, {City: "620400", Severity: "low", Status: "new"}, {After: 1500}}
	for _, u := range users {
		for _, flt := range filters {
			got, err := f.cb.CountClues(ctx, u, flt)
			flt.today = "2026-03-15 10:00:00"
			where, args, serr := clueScope(u, flt)
			if (err == nil) != (serr == nil) {
				t.Fatalf("%s %+v: memory %v, sql %v", u.Name, flt, err, serr)
			}
			if err != nil {
				continue
			}
			if flt.After > 0 { // CountClues counts from the start
				flt.After = 0
				where, args, _ = clueScope(u, flt)
			}
			var want int64
			if err := f.cb.DB.QueryRow("SELECT count(*) FROM casebook.clues c JOIN casebook.leads l ON l.lead_id = c.clue_id WHERE "+where, args...).Scan(&want); err != nil && err != sql.ErrNoRows {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s %+v: memory counts %d, SQL %d", u.Name, flt, got, want)
			}
		}
	}
}

func TestReadCache_WarmReadsTheNewestCluesUntilFull(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.cb.Synthesize(ctx, 3000); err != nil {
		t.Fatal(err)
	}
	n, err := f.cb.WarmReadCache(ctx)
	if err != nil || n != 3000 {
		t.Fatalf("warmed %d, %v", n, err)
	}
	if _, ok := f.cb.cache.get(cacheKey{'c', 1}); !ok {
		t.Fatal("clue 1 is not in a cache big enough for all")
	}
	f.cb.ReadCacheBytes = 200 << 10
	f.cb.cache.clear()
	if n, err = f.cb.WarmReadCache(ctx); err != nil || n >= 3000 {
		t.Fatalf("a small cache read %d clues, %v", n, err)
	}
	if _, ok := f.cb.cache.get(cacheKey{'c', 3000}); !ok || f.cb.cache.size > 200<<10 {
		t.Fatalf("the newest clue is not kept, or %d bytes", f.cb.cache.size)
	}
}

// An export writes a clue's evidence as the clue stores it (a download is a
// copy of the record, not an API answer: no escaping of <, > and &).
func TestExport_WritesTheEvidenceAsStored(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addLead(t, 100_000, "620100", "high")
	stored := `[{"note": "A & B <药房>"}]`
	if _, err := f.cb.DB.Exec("UPDATE casebook.clues SET evidence = ? WHERE clue_id = 100000", stored); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if n, err := f.cb.Export(ctx, f.province, ClueFilter{}, "csv", &out); err != nil || n != 1 {
		t.Fatalf("exported %d, %v", n, err)
	}
	if want := `"[{""note"": ""A & B <药房>""}]"`; !strings.Contains(out.String(), want) {
		t.Fatalf("the export does not hold the stored evidence %s:\n%s", want, out.String())
	}
}
