package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"collider/casebook"
	"collider/domain"
	"collider/models"
	"collider/personid"
	"collider/store"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// The property of incremental runs: whatever deliveries arrive, in whatever
// order, the incremental pipeline issues exactly what a full run would.
//
// Random sequences of deliveries — new settlements, late deaths and
// cancellations, custody and abroad records arriving after the visit,
// travel records near visits, overlapping stays, re-delivered corrections
// (a settlement moved to another person, day or institution; a location
// record moved to another person; a death withdrawn), institutions moved,
// household and floating registrations, police feeds arriving late, a
// delivery that fails, suppressions made, expiring and revoked — go into
// one inbox, and after each the incremental pipeline runs. What a fresh
// store would issue from the same deliveries with the same suppressions is
// the full examination of everything loaded (the oracle: every model in
// full over the feeds, nothing issued before). A (model, settlement) pair is
// issued once, ever, so after each delivery the pipeline's issued set must
// be what it issued before plus every (model, settlement, reason) of the
// full examination whose pair it had not issued yet — which is the fresh
// store's set itself whenever nothing issued was withdrawn since. At the
// end of each sequence a store made afresh loads the inbox and runs once,
// and issues exactly the oracle's set.
//
// The runs must also be incremental (most of them by person), or the
// property would hold for nothing.
func TestPipeline_IncrementalRunsIssueWhatAFullRunWould(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4}
	steps := 10
	if s := os.Getenv("COLLIDER_PROPERTY_SEEDS"); s != "" { // more, by hand: COLLIDER_PROPERTY_SEEDS=100
		var n int
		fmt.Sscan(s, &n)
		seeds = nil
		for i := 1; i <= n; i++ {
			seeds = append(seeds, uint64(i))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Parallel() // mostly small statements and commits: two sequences share the cores well
			propertySequence(t, seed, steps)
		})
	}
}

type issue struct{ model, settlement, reason string }

func (i issue) pair() string { return i.model + " " + i.settlement }

func propertySequence(t *testing.T, seed uint64, steps int) {
	ctx := context.Background()
	w := newWorld(seed)
	inbox := t.TempDir()
	s := openStore(t)
	clock := time.Date(2026, 1, 1, 9, 0, 0, 0, domain.ChinaTime)
	cb := casebook.New(s.DB)
	cb.Now = func() time.Time { return clock }
	p := &Pipeline{Store: s, Casebook: cb, Catalog: liveCatalog(t), Inbox: inbox, Now: func() time.Time { return clock },
		Log: quietLog()}

	var history []string
	issued := map[string]issue{} // pair → what was issued
	byPerson := 0
	for step := 0; step < steps; step++ {
		clock = clock.Add(24 * time.Hour)
		what := w.step(t, step, inbox, s.DB, cb, clock)
		history = append(history, fmt.Sprintf("step %d: %s", step, what))
		var person bool
		issued, person = runAndCompare(t, p, issued, clock, fmt.Sprintf("seed %d, after %s", seed, history[len(history)-1]), history)
		if person {
			byPerson++
		}
	}
	if byPerson < steps/2 {
		t.Fatalf("seed %d: only %d of %d runs examined every model by person; the property holds for nothing", seed, byPerson, steps)
	}

	// A store made afresh from the same inbox and suppressions issues what
	// the oracle says a full run issues.
	fresh := openStore(t)
	fcb := casebook.New(fresh.DB)
	fcb.Now = func() time.Time { return clock }
	w.copySuppressions(t, cb, fcb, clock)
	fp := &Pipeline{Store: fresh, Casebook: fcb, Catalog: liveCatalog(t), Inbox: inbox, Now: func() time.Time { return clock }, Log: quietLog()}
	if out, err := fp.Run(ctx, "cli", "test"); out.BatchID == 0 {
		t.Fatalf("fresh store: %v", err)
	}
	want := map[string]issue{}
	for _, x := range oracle(t, s, clock) {
		want[x.pair()] = x
	}
	if diff := diffIssues(want, issuedSet(t, fresh.DB)); diff != "" {
		t.Fatalf("seed %d: a fresh store's run differs from the oracle: %s", seed, diff)
	}
}

// runAndCompare runs p and checks that its issued set is what it issued
// before plus what a full run issues now of the pairs it had not issued;
// it returns the issued set and whether the run examined every model by
// person.
func runAndCompare(t *testing.T, p *Pipeline, before map[string]issue, now time.Time, where string, history []string) (map[string]issue, bool) {
	t.Helper()
	out, err := p.Run(context.Background(), "cli", "test")
	if out.BatchID == 0 {
		t.Fatalf("%s: no batch: %v\n%s", where, err, strings.Join(history, "\n"))
	}
	want := map[string]issue{}
	for k, v := range before {
		want[k] = v
	}
	for _, x := range oracle(t, p.Store, now) {
		if _, ok := want[x.pair()]; !ok {
			want[x.pair()] = x
		}
	}
	got := issuedSet(t, p.Store.DB)
	if diff := diffIssues(want, got); diff != "" {
		t.Fatalf("%s:\nthe incremental pipeline's issued set differs from a full run's: %s\nrun steps: %s\nsequence:\n%s",
			where, diff, runSteps(t, p.Store.DB, out.RunID), strings.Join(history, "\n"))
	}
	return got, examinedByPerson(t, p.Store.DB, out.BatchID)
}

// oracle is what a full run over everything loaded in s issues when
// nothing was issued before: every live model in full over the feeds,
// suppressions judged at now, on a connection of its own.
func oracle(t *testing.T, s *store.Store, now time.Time) []issue {
	t.Helper()
	ctx := context.Background()
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	runner := &models.Runner{Log: quietLog(), Now: func() time.Time { return now }}
	opts := models.RunOptions{Prefix: "oracle"}
	var runs []*models.Run
	for _, m := range liveCatalog(t).Models() {
		r, err := runner.Start(ctx, conn, m, opts)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	if err := runner.Group(ctx, conn, opts, runs...); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(ctx, "SELECT model, settlement_id, reason FROM "+runs[0].RowTable+" WHERE NOT suppressed")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []issue
	for rows.Next() {
		var x issue
		if err := rows.Scan(&x.model, &x.settlement, &x.reason); err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	dropTemp(ctx, conn)
	return out
}

// issuedSet reads every (model, settlement, reason) a store's batches issued.
func issuedSet(t *testing.T, db *sql.DB) map[string]issue {
	t.Helper()
	rows, err := db.Query(`SELECT model, e->>'settlement_id', e->>'reason'
		FROM (SELECT model, unnest(CAST(evidence AS JSON[])) AS e FROM casebook.clues)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]issue{}
	for rows.Next() {
		var x issue
		if err := rows.Scan(&x.model, &x.settlement, &x.reason); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[x.pair()]; dup {
			t.Fatalf("%s issued twice", x.pair())
		}
		out[x.pair()] = x
	}
	return out
}

func diffIssues(want, got map[string]issue) string {
	var missing, extra []string
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			missing = append(missing, fmt.Sprintf("(%s, %s, %s)", w.model, w.settlement, w.reason))
		}
	}
	for k, g := range got {
		if w, ok := want[k]; !ok || g != w {
			extra = append(extra, fmt.Sprintf("(%s, %s, %s)", g.model, g.settlement, g.reason))
		}
	}
	if len(missing)+len(extra) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return fmt.Sprintf("missing %v, extra %v", missing, extra)
}

// examinedByPerson says whether a batch examined every model by person.
func examinedByPerson(t *testing.T, db *sql.DB, batch int64) bool {
	t.Helper()
	var n, person int
	if err := db.QueryRow("SELECT count(*), count(*) FILTER (WHERE scope = 'person') FROM casebook.examined WHERE batch_id = ?", batch).Scan(&n, &person); err != nil {
		t.Fatal(err)
	}
	return n > 0 && n == person
}

func runSteps(t *testing.T, db *sql.DB, run int64) string {
	rows, err := db.Query("SELECT name || ' ' || status || ' ' || coalesce(rows, 0) || ' ' || coalesce(detail, '') FROM casebook.run_steps WHERE run_id = ? ORDER BY step_no", run)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var l string
		rows.Scan(&l)
		out = append(out, l)
	}
	return "\n  " + strings.Join(out, "\n  ")
}

// world is a small province the sequences draw from: persons, institutions
// near and far from each other, and what has been delivered so far.
type world struct {
	r       *rand.Rand
	persons []string
	insts   []inst
	settled []row // every settlement delivered, as last delivered
	located []row // every location record delivered
	// trips delivered with a purchase far from home that they explain
	explaining []row
	nextS      int
	nextE      int
	sups       []int64 // suppressions made
	police     bool    // residents and civil status delivered for most persons yet
}

type inst struct{ id, kind, region string }

type row map[string]string

func newWorld(seed uint64) *world {
	w := &world{r: rand.New(rand.NewPCG(seed, 0x13))}
	for i := 0; i < 10; i++ {
		birth := time.Date(1940+i*5, time.Month(1+i), 1+i, 0, 0, 0, 0, time.UTC)
		w.persons = append(w.persons, personid.Make("620102", birth, 11+2*i))
	}
	w.insts = []inst{
		{"H62010200001", "hospital", "620102"}, // Lanzhou
		{"H62050200002", "hospital", "620502"}, // Tianshui, 250 km
		{"H62010200005", "clinic", "620102"},
		{"P62010200003", "pharmacy", "620102"},
		{"P62090200004", "pharmacy", "620902"}, // Jiuquan, 700 km
		{"H11010100006", "hospital", "110101"}, // Beijing
	}
	return w
}

// feedColumns are the columns each feed's deliveries carry, all as text.
var feedColumns = map[string][]string{
	"institutions": {"institution_id", "name", "kind", "region_code", "lat", "lon"},
	"residents":    {"person_id", "name", "hukou_region", "birth_date"},
	"civil_status": {"person_id", "status", "death_date", "updated_at"},
	"floating":     {"person_id", "region_code", "valid_from", "valid_to"},
	"locations":    {"event_id", "person_id", "kind", "start_time", "end_time", "region_code", "lat", "lon"},
	"settlements": {"settlement_id", "person_id", "person_name", "institution_id", "visit_type", "visit_start", "visit_end",
		"settled_at", "total_amount", "fund_amount", "insured_region"},
}

// deliver writes rows as a delivery INBOX/feed/name, every value as text
// (amounts and coordinates as DOUBLE), without the columns in drop.
func deliver(t *testing.T, db *sql.DB, inbox, feed, name string, rows []row, drop ...string) {
	t.Helper()
	var cols []string
	for _, c := range feedColumns[feed] {
		if !contains(drop, c) {
			cols = append(cols, c)
		}
	}
	var values []string
	for _, r := range rows {
		var vs []string
		for _, c := range cols {
			v, ok := r[c]
			switch {
			case !ok || v == "":
				vs = append(vs, "NULL")
			case c == "total_amount" || c == "fund_amount" || c == "lat" || c == "lon":
				vs = append(vs, v)
			default:
				vs = append(vs, "'"+v+"'")
			}
		}
		values = append(values, "("+strings.Join(vs, ", ")+")")
	}
	var casts []string
	for _, c := range cols {
		typ := "VARCHAR"
		if c == "total_amount" || c == "fund_amount" || c == "lat" || c == "lon" {
			typ = "DOUBLE"
		}
		casts = append(casts, fmt.Sprintf("CAST(%s AS %s) AS %s", c, typ, c))
	}
	q := fmt.Sprintf("SELECT %s FROM (VALUES %s) v(%s)", strings.Join(casts, ", "), strings.Join(values, ", "), strings.Join(cols, ", "))
	dir := filepath.Join(inbox, feed, name)
	writeParquet(t, db, filepath.Join(dir, "part-00000.parquet"), q)
	if err := os.WriteFile(filepath.Join(dir, SuccessMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (w *world) person() string { return w.persons[w.r.IntN(len(w.persons))] }

func (w *world) instOf(kinds ...string) inst {
	var pick []inst
	for _, in := range w.insts {
		if contains(kinds, in.kind) {
			pick = append(pick, in)
		}
	}
	return pick[w.r.IntN(len(pick))]
}

// day is a time in 2025: day d (0-based) at hh:mm.
func day(d, hh, mm int) time.Time {
	return time.Date(2025, 1, 1, hh, mm, 0, 0, time.UTC).AddDate(0, 0, d)
}

func ts(t time.Time) string { return t.Format("2006-01-02 15:04:05") }

func (w *world) settlement(person string) row {
	w.nextS++
	r := row{"settlement_id": fmt.Sprintf("S%04d", w.nextS), "person_id": person, "person_name": "某某",
		"total_amount": fmt.Sprint(100 + w.r.IntN(9000)), "fund_amount": fmt.Sprint(50 + w.r.IntN(4000)), "insured_region": "620102"}
	start := day(w.r.IntN(300), 8+w.r.IntN(10), w.r.IntN(60))
	switch x := w.r.IntN(3); x {
	case 0:
		in := w.instOf("hospital")
		r["institution_id"], r["visit_type"] = in.id, "inpatient"
		end := start.Add(time.Duration(24*(1+w.r.IntN(10))) * time.Hour)
		r["visit_end"], r["settled_at"] = ts(end), ts(end.Add(time.Hour))
	case 1:
		in := w.instOf("hospital", "clinic")
		r["institution_id"], r["visit_type"], r["settled_at"] = in.id, "outpatient", ts(start.Add(30*time.Minute))
	default:
		in := w.instOf("pharmacy")
		r["institution_id"], r["visit_type"], r["settled_at"] = in.id, "pharmacy", ts(start.Add(5*time.Minute))
	}
	r["visit_start"] = ts(start)
	return r
}

func (w *world) regionOf(id string) string { return w.inst(id).region }

func (w *world) inst(id string) inst {
	for _, in := range w.insts {
		if in.id == id {
			return in
		}
	}
	return inst{}
}

func (w *world) moveInst(id, region string) {
	for i := range w.insts {
		if w.insts[i].id == id {
			w.insts[i].region = region
		}
	}
}

func (w *world) visit() (row, bool) {
	if len(w.settled) == 0 {
		return nil, false
	}
	return w.settled[w.r.IntN(len(w.settled))], true
}

func parseTS(s string) time.Time {
	t, _ := time.Parse("2006-01-02 15:04:05", s)
	return t
}

func (w *world) location(person, kind string, start time.Time, end *time.Time, region string) row {
	w.nextE++
	r := row{"event_id": fmt.Sprintf("E%04d", w.nextE), "person_id": person, "kind": kind, "start_time": ts(start), "region_code": region}
	if end != nil {
		r["end_time"] = ts(*end)
	}
	return r
}

func copyRow(r row) row {
	out := row{}
	for k, v := range r {
		out[k] = v
	}
	return out
}

func (w *world) replaceSettlement(r row) {
	for i := range w.settled {
		if w.settled[i]["settlement_id"] == r["settlement_id"] {
			w.settled[i] = r
		}
	}
}

// step makes one random step of a sequence: deliveries into the inbox, or
// suppressions made or revoked in cb, and says what it did.
func (w *world) step(t *testing.T, n int, inbox string, db *sql.DB, cb *casebook.Casebook, now time.Time) string {
	name := fmt.Sprintf("%04d", n)
	send := func(feed string, rows []row, drop ...string) {
		deliver(t, db, inbox, feed, name, rows, drop...)
	}
	if n == 0 {
		var insts []row
		for _, in := range w.insts {
			insts = append(insts, row{"institution_id": in.id, "name": "机构" + in.id[len(in.id)-2:], "kind": in.kind, "region_code": in.region})
		}
		send("institutions", insts)
		var settled []row
		for i := 0; i < 8; i++ {
			settled = append(settled, w.settlement(w.person()))
		}
		w.settled = append(w.settled, settled...)
		send("settlements", settled)
		if w.r.IntN(3) == 0 {
			return "institutions and 8 settlements; the police feeds come later"
		}
		w.police = true
		w.sendPolice(t, db, inbox, name)
		return "institutions, 8 settlements, residents and civil status of most persons"
	}
	if !w.police && w.r.IntN(3) == 0 {
		w.police = true
		w.sendPolice(t, db, inbox, name)
		return "the police feeds' first rows: residents and civil status of most persons"
	}
	switch k := w.r.IntN(18); k {
	case 17:
		if len(w.explaining) == 0 {
			return "nothing"
		}
		c := copyRow(w.explaining[len(w.explaining)-1])
		c["person_id"] = w.person()
		send("locations", []row{c})
		return fmt.Sprintf("the trip %s re-delivered under another person", c["event_id"])
	case 15, 16:
		p := w.person()
		r := w.settlement(p)
		for r["visit_type"] != "pharmacy" {
			w.nextS--
			r = w.settlement(p)
		}
		in := w.instOf("pharmacy")
		r["institution_id"] = in.id
		loc := w.location(p, "hotel", parseTS(r["visit_start"]).Add(-20*time.Hour), nil, in.region)
		w.settled, w.located, w.explaining = append(w.settled, r), append(w.located, loc), append(w.explaining, loc)
		send("settlements", []row{r})
		send("locations", []row{loc})
		return fmt.Sprintf("purchase %s at %s with the trip %s that explains it", r["settlement_id"], in.id, loc["event_id"])
	case 0, 1:
		var settled []row
		for i := 0; i < 1+w.r.IntN(4); i++ {
			settled = append(settled, w.settlement(w.person()))
		}
		w.settled = append(w.settled, settled...)
		send("settlements", settled)
		return fmt.Sprintf("%d new settlements", len(settled))
	case 2:
		p, d := w.person(), w.r.IntN(300)
		send("civil_status", []row{{"person_id": p, "status": "deceased", "death_date": day(d, 0, 0).Format("2006-01-02"), "updated_at": ts(day(d+20, 9, 0))}})
		return fmt.Sprintf("a late death: %s on day %d", p, d)
	case 3:
		p, d := w.person(), w.r.IntN(300)
		send("civil_status", []row{{"person_id": p, "status": "cancelled", "updated_at": ts(day(d, 10, 0))}})
		return fmt.Sprintf("hukou of %s cancelled on day %d", p, d)
	case 4:
		v, ok := w.visit()
		if !ok {
			return "nothing"
		}
		start := parseTS(v["visit_start"]).Add(-time.Duration(w.r.IntN(48)) * time.Hour)
		end := start.Add(time.Duration(24+w.r.IntN(96)) * time.Hour)
		kind, region, endp := "custody", "620102", &end
		if w.r.IntN(2) == 0 {
			kind, region = "abroad", ""
			if w.r.IntN(2) == 0 {
				endp = nil // still abroad
			}
		}
		loc := w.location(v["person_id"], kind, start, endp, region)
		w.located = append(w.located, loc)
		send("locations", []row{loc})
		return fmt.Sprintf("%s record arriving after visit %s", kind, v["settlement_id"])
	case 5:
		v, ok := w.visit()
		if !ok {
			return "nothing"
		}
		at := parseTS(v["visit_start"]).Add(time.Duration(w.r.IntN(40)-8) * time.Hour)
		region := []string{"110101", "620902", "620102"}[w.r.IntN(3)]
		if v["visit_type"] == "pharmacy" && w.r.IntN(2) == 0 {
			region = w.regionOf(v["institution_id"]) // it explains the purchase
		}
		kind := []string{"hotel", "rail", "flight"}[w.r.IntN(3)]
		loc := w.location(v["person_id"], kind, at, nil, region)
		w.located = append(w.located, loc)
		send("locations", []row{loc})
		return fmt.Sprintf("%s record in %s near visit %s", kind, region, v["settlement_id"])
	case 6:
		var stay row
		for _, v := range w.settled {
			if v["visit_type"] == "inpatient" {
				stay = v
			}
		}
		if stay == nil {
			return "nothing"
		}
		r := w.settlement(stay["person_id"])
		start := parseTS(stay["visit_start"]).Add(time.Duration(w.r.IntN(48)) * time.Hour)
		end := start.Add(time.Duration(48+w.r.IntN(100)) * time.Hour)
		in := w.instOf("hospital")
		r["institution_id"], r["visit_type"], r["visit_start"], r["visit_end"], r["settled_at"] = in.id, "inpatient", ts(start), ts(end), ts(end)
		w.settled = append(w.settled, r)
		send("settlements", []row{r})
		return fmt.Sprintf("a stay overlapping %s", stay["settlement_id"])
	case 7, 8:
		v, ok := w.visit()
		if !ok {
			return "nothing"
		}
		c := copyRow(v)
		var what string
		switch w.r.IntN(3) {
		case 0:
			c["person_id"], what = w.person(), "moved to another person"
		case 1:
			start := parseTS(c["visit_start"]).AddDate(0, 0, w.r.IntN(120)-60)
			if c["visit_end"] != "" {
				end := parseTS(c["visit_end"]).Sub(parseTS(c["visit_start"]))
				c["visit_end"] = ts(start.Add(end))
			}
			c["visit_start"], c["settled_at"], what = ts(start), ts(start.Add(time.Hour)), "moved to another day"
		default:
			kinds := map[string][]string{"inpatient": {"hospital"}, "outpatient": {"hospital", "clinic"}, "pharmacy": {"pharmacy"}}
			c["institution_id"], what = w.instOf(kinds[c["visit_type"]]...).id, "moved to another institution"
		}
		w.replaceSettlement(c)
		send("settlements", []row{c})
		return fmt.Sprintf("settlement %s re-delivered, %s", c["settlement_id"], what)
	case 9:
		if len(w.located) > 0 && w.r.IntN(2) == 0 {
			c := copyRow(w.located[len(w.located)-1-w.r.IntN(min(2, len(w.located)))])
			c["person_id"] = w.person()
			send("locations", []row{c})
			return fmt.Sprintf("location %s re-delivered under another person", c["event_id"])
		}
		p := w.person()
		send("civil_status", []row{{"person_id": p, "status": "alive", "updated_at": ts(day(330, 9, 0))}})
		return fmt.Sprintf("the civil status of %s corrected to alive", p)
	case 10:
		in := w.insts[w.r.IntN(len(w.insts))]
		if v, ok := w.visit(); ok && w.r.IntN(3) > 0 {
			in = w.inst(v["institution_id"]) // one that was visited
		}
		regions := []string{"620102", "620502", "620902", "110101"}
		region := regions[w.r.IntN(len(regions))]
		for region == in.region {
			region = regions[w.r.IntN(len(regions))]
		}
		w.moveInst(in.id, region)
		r := row{"institution_id": in.id, "name": "机构" + in.id[len(in.id)-2:], "kind": in.kind, "region_code": region}
		if w.r.IntN(2) == 0 {
			r["lat"], r["lon"] = "39.9", "116.4" // a precise position, in Beijing
		}
		send("institutions", []row{r})
		return fmt.Sprintf("institution %s moved to %s (lat/lon %q)", in.id, region, r["lat"])
	case 11:
		p := w.person()
		if w.r.IntN(2) == 0 {
			region := []string{"620102", "620902", "620502"}[w.r.IntN(3)]
			send("residents", []row{{"person_id": p, "name": "某某", "hukou_region": region}})
			return fmt.Sprintf("household of %s in %s", p, region)
		}
		region := []string{"620902", "620502"}[w.r.IntN(2)]
		send("floating", []row{{"person_id": p, "region_code": region, "valid_from": "2025-01-01"}})
		return fmt.Sprintf("floating registration of %s in %s", p, region)
	case 12:
		r := w.settlement(w.person())
		send("settlements", []row{r}, "fund_amount")
		return "a settlements delivery without fund_amount, which fails"
	case 13:
		u := casebook.User{Name: "test", Role: casebook.RoleProvince}
		s := casebook.Suppression{Reason: "test"}
		switch w.r.IntN(3) {
		case 0:
			s.Kind, s.PersonID = "person", w.person()
		case 1:
			s.Kind, s.InstitutionID = "institution", w.insts[w.r.IntN(len(w.insts))].id
		default:
			s.Kind, s.PersonID, s.Model = "model_person", w.person(), []string{"deceased_claims", "impossible_location", "phantom_purchases"}[w.r.IntN(3)]
		}
		if w.r.IntN(2) == 0 {
			exp := now.Add(time.Duration(12+24*w.r.IntN(3)) * time.Hour)
			s.ExpiresAt = &exp
		}
		got, err := cb.Suppress(context.Background(), u, s)
		if err != nil {
			t.Fatal(err)
		}
		w.sups = append(w.sups, got.ID)
		return fmt.Sprintf("suppression %d of %s %s%s%s (expires %v)", got.ID, s.Kind, s.PersonID, s.InstitutionID, s.Model, s.ExpiresAt != nil)
	default:
		if len(w.sups) == 0 {
			return "nothing"
		}
		id := w.sups[w.r.IntN(len(w.sups))]
		if _, err := cb.RevokeSuppression(context.Background(), casebook.User{Name: "test", Role: casebook.RoleProvince}, id); err != nil {
			return fmt.Sprintf("suppression %d was no longer active", id)
		}
		return fmt.Sprintf("suppression %d revoked", id)
	}
}

// sendPolice delivers residents and alive civil status for all persons but
// two (who stay unknown).
func (w *world) sendPolice(t *testing.T, db *sql.DB, inbox, name string) {
	var res, civil []row
	for _, p := range w.persons[2:] {
		res = append(res, row{"person_id": p, "name": "某某", "hukou_region": "620102"})
		civil = append(civil, row{"person_id": p, "status": "alive", "updated_at": "2024-06-01 10:00:00"})
	}
	deliver(t, db, inbox, "residents", name, res)
	deliver(t, db, inbox, "civil_status", name, civil)
}

// copySuppressions makes in to the suppressions of from active at now.
func (w *world) copySuppressions(t *testing.T, from, to *casebook.Casebook, now time.Time) {
	u := casebook.User{Name: "test", Role: casebook.RoleProvince}
	all, err := from.Suppressions(context.Background(), u, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if !s.Active {
			continue
		}
		if _, err := to.Suppress(context.Background(), u, casebook.Suppression{Kind: s.Kind, Model: s.Model, PersonID: s.PersonID,
			InstitutionID: s.InstitutionID, Reason: s.Reason, ExpiresAt: s.ExpiresAt}); err != nil {
			t.Fatal(err)
		}
	}
}

// Each change a night can bring re-examines what it can affect, and
// nothing more is paid for a night with nothing new: a scripted sequence,
// checked like the random ones after every step, where each step must
// issue the clue its change makes.
func TestPipeline_EachChangeReExaminesWhatItCanAffect(t *testing.T) {
	ctx := context.Background()
	w := newWorld(1)
	inbox := t.TempDir()
	s := openStore(t)
	clock := time.Date(2026, 1, 1, 9, 0, 0, 0, domain.ChinaTime)
	cb := casebook.New(s.DB)
	cb.Now = func() time.Time { return clock }
	p := &Pipeline{Store: s, Casebook: cb, Catalog: liveCatalog(t), Inbox: inbox, Now: func() time.Time { return clock }, Log: quietLog()}
	u := casebook.User{Name: "test", Role: casebook.RoleProvince}
	P := w.persons
	visit := func(id, person, inst, typ string, d, days int) row {
		r := row{"settlement_id": id, "person_id": person, "institution_id": inst, "visit_type": typ, "visit_start": ts(day(d, 10, 0)),
			"settled_at": ts(day(d+days, 11, 0)), "total_amount": "800", "fund_amount": "600"}
		if typ == "inpatient" {
			r["visit_end"] = ts(day(d+days, 10, 0))
		}
		return r
	}
	var insts []row
	for _, in := range w.insts {
		insts = append(insts, row{"institution_id": in.id, "name": "机构", "kind": in.kind, "region_code": in.region})
	}
	steps := []struct {
		what  string
		do    func(name string)
		full  bool     // the run examines every model in full
		issue []string // "model settlement" pairs this step must issue
	}{
		{"institutions, settlements and a trip; no police feed yet", func(name string) {
			deliver(t, s.DB, inbox, "institutions", name, insts)
			deliver(t, s.DB, inbox, "settlements", name, []row{
				visit("S1", P[2], "P62010200003", "pharmacy", 100, 0), visit("S2", P[2], "H62010200001", "outpatient", 200, 0),
				visit("S3", P[3], "P62090200004", "pharmacy", 50, 0), visit("S4", P[4], "H62010200001", "inpatient", 10, 10),
				visit("S5", P[5], "H62050200002", "inpatient", 12, 6), visit("S6", P[6], "H62010200001", "outpatient", 150, 0),
				visit("S7", P[0], "H62010200001", "outpatient", 90, 0)})
			deliver(t, s.DB, inbox, "locations", name, []row{{"event_id": "E1", "person_id": P[3], "kind": "hotel",
				"start_time": ts(day(49, 16, 0)), "region_code": "620902"}})
		}, true, nil},
		{"the police feeds' first rows: every model in full", func(name string) { w.sendPolice(t, s.DB, inbox, name) },
			true, []string{"unknown_identity S7"}},
		{"a death recorded late re-examines the person's old settlements", func(name string) {
			deliver(t, s.DB, inbox, "civil_status", name, []row{{"person_id": P[2], "status": "deceased", "death_date": "2025-06-01"}})
		}, false, []string{"deceased_claims S2"}},
		{"a custody record arriving after the visit", func(name string) {
			deliver(t, s.DB, inbox, "locations", name, []row{{"event_id": "E2", "person_id": P[6], "kind": "custody",
				"start_time": ts(day(148, 9, 0)), "end_time": ts(day(152, 9, 0)), "region_code": "620102"}})
		}, false, []string{"impossible_location S6"}},
		{"the trip that explained a purchase re-delivered under another person", func(name string) {
			deliver(t, s.DB, inbox, "locations", name, []row{{"event_id": "E1", "person_id": P[7], "kind": "hotel",
				"start_time": ts(day(49, 16, 0)), "region_code": "620902"}})
		}, false, []string{"phantom_purchases S3"}},
		{"a pharmacy moved 700 km: its earlier purchases re-examined", func(name string) {
			deliver(t, s.DB, inbox, "institutions", name, []row{{"institution_id": "P62010200003", "name": "机构", "kind": "pharmacy", "region_code": "620902"}})
		}, false, []string{"phantom_purchases S1"}},
		{"a suppressed person's settlement after death is held", func(name string) {
			if _, err := cb.Suppress(ctx, u, casebook.Suppression{Kind: "person", PersonID: P[9], Reason: "death date disputed"}); err != nil {
				t.Fatal(err)
			}
			deliver(t, s.DB, inbox, "civil_status", name, []row{{"person_id": P[9], "status": "deceased", "death_date": "2025-02-01"}})
			deliver(t, s.DB, inbox, "settlements", name, []row{visit("S8", P[9], "H62010200001", "outpatient", 60, 0)})
		}, false, nil},
		{"the suppression revoked: the held settlement is issued", func(string) {
			all, err := cb.Suppressions(ctx, u, 0, 10)
			if err != nil || len(all) != 1 {
				t.Fatalf("%v %v", all, err)
			}
			if _, err := cb.RevokeSuppression(ctx, u, all[0].ID); err != nil {
				t.Fatal(err)
			}
		}, false, []string{"deceased_claims S8"}},
		{"an overlapping stay held by a suppression of the person for that model, expiring tonight", func(name string) {
			exp := clock.Add(12 * time.Hour)
			if _, err := cb.Suppress(ctx, u, casebook.Suppression{Kind: "model_person", Model: "overlapping_stays", PersonID: P[4], Reason: "transfer", ExpiresAt: &exp}); err != nil {
				t.Fatal(err)
			}
			deliver(t, s.DB, inbox, "settlements", name, []row{visit("S9", P[4], "H62050200002", "inpatient", 12, 5)})
		}, false, nil},
		{"the suppression expired: the stays are issued", func(string) {}, false, []string{"overlapping_stays S4", "overlapping_stays S9"}},
		{"a settlement corrected to another person overlaps that person's stay", func(name string) {
			r := visit("S5", P[4], "H62050200002", "inpatient", 12, 6)
			deliver(t, s.DB, inbox, "settlements", name, []row{r})
		}, false, []string{"overlapping_stays S5"}},
		{"nothing new: nothing examined, an empty batch", func(string) {}, false, nil},
	}
	issued := map[string]issue{}
	var history []string
	for i, st := range steps {
		clock = clock.Add(24 * time.Hour)
		st.do(fmt.Sprintf("%04d", i))
		history = append(history, fmt.Sprintf("step %d: %s", i, st.what))
		before := issued
		var byPerson bool
		issued, byPerson = runAndCompare(t, p, before, clock, history[i], history)
		if byPerson == st.full {
			t.Fatalf("%s: examined by person: %v, want %v", st.what, byPerson, !st.full)
		}
		var fresh []string
		for k := range issued {
			if _, ok := before[k]; !ok {
				fresh = append(fresh, k)
			}
		}
		sort.Strings(fresh)
		if i > 0 && strings.Join(fresh, ",") != strings.Join(st.issue, ",") {
			t.Fatalf("%s: issued %v, want %v", st.what, fresh, st.issue)
		}
	}
	// The night with nothing new re-examined nobody.
	var persons sql.NullInt64
	if err := s.DB.QueryRow("SELECT max(persons) FROM casebook.examined WHERE batch_id = (SELECT max(batch_id) FROM casebook.batches)").Scan(&persons); err != nil || persons.Int64 != 0 {
		t.Fatalf("persons examined with nothing new: %v %v", persons, err)
	}
	// and paid for no model's query: no settlement was in scope, so the
	// models were not run (each step is recorded, with nothing flagged).
	var detail string
	var modelSteps, flagged int64
	if err := s.DB.QueryRow(`SELECT any_value(detail) FILTER (WHERE name = 'clues'), count(*) FILTER (WHERE name = 'model'),
		coalesce(sum(rows) FILTER (WHERE name = 'model'), 0)
		FROM casebook.run_steps WHERE run_id = (SELECT max(run_id) FROM casebook.run_steps)`).Scan(&detail, &modelSteps, &flagged); err != nil {
		t.Fatal(err)
	}
	if detail != "nothing to group: the changes reach no settlement" || modelSteps != 5 || flagged != 0 {
		t.Fatalf("the night with nothing new: clues step %q, %d model steps flagging %d", detail, modelSteps, flagged)
	}
}

// A model runs in full when what it reads changed otherwise than by
// deliveries: a new version of it (the others still by person), the region
// table, another copy of the feeds, or when a full run is asked for.
func TestPipeline_RunsInFullWhenTheModelOrWhatItReadsChanged(t *testing.T) {
	ctx := context.Background()
	w := newWorld(2)
	inbox := t.TempDir()
	s := openStore(t)
	cat := liveCatalog(t)
	p := &Pipeline{Store: s, Casebook: casebook.New(s.DB), Catalog: cat, Inbox: inbox, Log: quietLog()}
	w.step(t, 0, inbox, s.DB, p.Casebook, time.Now())
	scopes := func(what string) map[string]string {
		t.Helper()
		out, err := p.Run(ctx, "cli", "test")
		if out.BatchID == 0 {
			t.Fatalf("%s: %v", what, err)
		}
		got := map[string]string{}
		for _, m := range out.Models {
			got[m.Model] = m.Scope + ": " + m.Why
		}
		return got
	}
	expect := func(what string, got map[string]string, full string, why string) {
		t.Helper()
		for model, sc := range got {
			isFull := strings.HasPrefix(sc, "full: ")
			if isFull != (full == "*" || full == model) || (isFull && !strings.Contains(sc, why)) {
				t.Errorf("%s: %s examined %q", what, model, sc)
			}
		}
	}
	expect("first run", scopes("first run"), "*", "no batch has examined the model yet")
	expect("nothing new", scopes("nothing new"), "", "")

	m, err := cat.Model("overlapping_stays")
	if err != nil {
		t.Fatal(err)
	}
	changed, err := models.Parse(m.File, []byte(m.Text+"\n-- a comment is a new version too\n"))
	if err != nil {
		t.Fatal(err)
	}
	changed.Tests = m.Tests
	cat.Set(changed)
	expect("new version", scopes("new version"), "overlapping_stays", "a new version")

	if _, err := s.DB.Exec("UPDATE regions SET name = name || '区' WHERE code = '620102'"); err != nil {
		t.Fatal(err)
	}
	expect("regions", scopes("regions"), "*", "the region table changed")

	if _, err := s.DB.Exec("UPDATE feeds_identity SET id = 'another copy'"); err != nil {
		t.Fatal(err)
	}
	expect("feeds copy", scopes("feeds copy"), "*", "the feeds were reloaded into a new copy")

	p.Full = true
	expect("--full", scopes("--full"), "*", "a full run was asked for")
	p.Full = false
	expect("after --full", scopes("after --full"), "", "")
}
