// synth_test.go checks the generator's output as a loader would see it:
// determinism, contracts, counts, ID numbers, truth and bad deliveries.

package synth

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"collider/feeds"
	"collider/personid"

	"github.com/parquet-go/parquet-go"
)

// fixture is one small province shared by the tests: 10,000 settlements,
// small files so that rotation is exercised, bad deliveries included.
var fixture struct {
	dir      string
	sum      Summary
	err      error
	progress []int64 // done, as reported
	total    int64
}

var fixtureOptions = Options{Seed: 7, Settlements: 10_000, FileRows: 4_000, Bad: true}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "synth-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	opt := fixtureOptions
	opt.Out = filepath.Join(dir, "a")
	opt.Progress = func(done, total int64) {
		fixture.progress = append(fixture.progress, done)
		fixture.total = total
	}
	fixture.dir = opt.Out
	fixture.sum, fixture.err = Generate(context.Background(), opt)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func out(t *testing.T) string {
	t.Helper()
	if fixture.err != nil {
		t.Fatalf("generate: %v", fixture.err)
	}
	return fixture.dir
}

// hashes maps every file under dir (relative path) to its SHA-256.
func hashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		m[filepath.ToSlash(rel)] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGenerate_SameSeedSameBytes(t *testing.T) {
	a := hashes(t, out(t))
	opt := fixtureOptions
	opt.Out = t.TempDir()
	// One worker instead of one per CPU: the order of the output must not
	// depend on who generated what.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if _, err := Generate(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	b := hashes(t, opt.Out)
	if len(a) != len(b) {
		t.Fatalf("%d files vs %d files", len(a), len(b))
	}
	for name, h := range a {
		if b[name] != h {
			t.Errorf("%s differs between two runs with the same seed", name)
		}
	}

	opt.Out, opt.Seed = t.TempDir(), 8
	if _, err := Generate(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	if c := hashes(t, opt.Out); c["settlements/0001/part-00000.parquet"] == a["settlements/0001/part-00000.parquet"] {
		t.Error("another seed gave the same settlements")
	}
}

func TestGenerate_RefusesNonEmptyDelivery(t *testing.T) {
	opt := fixtureOptions
	opt.Out = out(t)
	_, err := Generate(context.Background(), opt)
	if err == nil || !strings.Contains(err.Error(), "already holds files") {
		t.Fatalf("err = %v", err)
	}
}

func TestGenerate_CancelledContextStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	opt := fixtureOptions
	opt.Out = t.TempDir()
	if _, err := Generate(ctx, opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(opt.Out, "settlements", "0001", "_SUCCESS")); err == nil {
		t.Fatal("a cancelled run marked its delivery complete")
	}
}

func TestGenerate_GoodFilesMeetContracts(t *testing.T) {
	dir := out(t)
	for _, c := range feeds.Contracts {
		files, _ := filepath.Glob(filepath.Join(dir, c.Feed, "0001", "*.parquet"))
		if len(files) == 0 {
			t.Errorf("%s: no files", c.Feed)
		}
		if _, err := os.Stat(filepath.Join(dir, c.Feed, "0001", "_SUCCESS")); err != nil {
			t.Errorf("%s: no _SUCCESS", c.Feed)
		}
		for _, f := range files {
			fs, err := feeds.CheckFile(f, c)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if len(fs.Extra) > 0 {
				t.Errorf("%s: extra columns %v", f, fs.Extra)
			}
			if len(fs.Columns) != len(c.Columns) {
				t.Errorf("%s: carries %d of %d contract columns", f, len(fs.Columns), len(c.Columns))
			}
			if fs.Rows > fixtureOptions.FileRows {
				t.Errorf("%s: %d rows, more than FileRows", f, fs.Rows)
			}
		}
	}
	// The big feeds carry wall-clock timestamps, the others strings and dates.
	want := map[string]feeds.Carrier{
		"settlements/visit_start": feeds.CarrierTimestamp, "settlements/total_amount": feeds.CarrierFloat,
		"locations/start_time": feeds.CarrierTimestamp, "locations/lat": feeds.CarrierFloat,
		"civil_status/updated_at": feeds.CarrierString, "civil_status/death_date": feeds.CarrierString,
		"residents/birth_date": feeds.CarrierString, "floating/valid_from": feeds.CarrierDate,
		"institutions/lat": feeds.CarrierFloat,
	}
	for key, carrier := range want {
		feed, col, _ := strings.Cut(key, "/")
		c, _ := feeds.Lookup(feed)
		fs, err := feeds.CheckFile(filepath.Join(dir, feed, "0001", "part-00000.parquet"), c)
		if err != nil {
			t.Fatal(err)
		}
		if fs.Columns[col] != carrier {
			t.Errorf("%s carried as %s, want %s", key, fs.Columns[col], carrier)
		}
	}
}

func TestGenerate_CountsNearTarget(t *testing.T) {
	dir := out(t)
	sum := fixture.sum
	opt := fixtureOptions
	persons := max(MinPersons, opt.Settlements*25/63)
	if sum.Persons != persons {
		t.Errorf("persons %d, want %d", sum.Persons, persons)
	}
	rows := map[string]int64{}
	for _, feed := range goodFeeds {
		files, _ := filepath.Glob(filepath.Join(dir, feed, "0001", "*.parquet"))
		for _, f := range files {
			pf := openParquet(t, f)
			rows[feed] += pf.NumRows()
		}
		if rows[feed] != sum.Rows[feed] {
			t.Errorf("%s: summary says %d rows, files hold %d", feed, sum.Rows[feed], rows[feed])
		}
	}
	if d := rows[feedSettlements] - opt.Settlements; d < -opt.Settlements/100 || d > opt.Settlements/100 {
		t.Errorf("settlements %d, want %d ± 1%%", rows[feedSettlements], opt.Settlements)
	}
	loc := opt.Settlements * 50 / 63
	if d := rows[feedLocations] - loc; d < -loc/20 || d > loc/20 {
		t.Errorf("locations %d, want %d ± 5%%", rows[feedLocations], loc)
	}
	unknown := int64(sum.Scenarios["unknown_person"])
	if got, want := rows[feedResidents], persons-unknown-int64(sum.Scenarios["near_civil_status_only"]); got != want {
		t.Errorf("residents %d, want %d", got, want)
	}
	if got, want := rows[feedCivil], persons-unknown; got != want {
		t.Errorf("civil_status %d, want %d", got, want)
	}
	if f := float64(rows[feedFloating]) / float64(persons); f < 0.02 || f > 0.045 {
		t.Errorf("floating share %.3f, want about 3%%", f)
	}
	if n := rows[feedInstitutions]; n < 86*8 {
		t.Errorf("%d institutions", n)
	}
	for _, sc := range scenarios {
		if sum.Scenarios[sc.name] < 3 {
			t.Errorf("scenario %s: %d persons, want at least 3", sc.name, sum.Scenarios[sc.name])
		}
	}
}

func TestGenerate_ReportsProgress(t *testing.T) {
	out(t)
	p := fixture.progress
	if len(p) < 2 || fixture.total != fixtureOptions.Settlements {
		t.Fatalf("progress %v of %d", p, fixture.total)
	}
	for i := 1; i < len(p); i++ {
		if p[i] < p[i-1] {
			t.Fatalf("progress went back: %v", p)
		}
	}
	if last := p[len(p)-1]; last != fixture.sum.Rows[feedSettlements] {
		t.Errorf("last progress %d, %d settlements written", last, fixture.sum.Rows[feedSettlements])
	}
}

func TestMakeID_IsPersonidMake(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		birth := birthFirst + r.Int64N(birthLast-birthFirst+1)
		seq := 1 + r.IntN(999)
		y, m, d := civil(birth)
		want := personid.Make("620102", time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC), seq)
		if got := makeID("620102", birth, seq); got != want {
			t.Fatalf("makeID = %s, personid.Make = %s", got, want)
		}
	}
}

func TestClock_Formats(t *testing.T) {
	cases := []struct {
		t      int64
		layout int
		want   string
	}{
		{at(0, 0, 0), layoutSpace, "2025-01-01 00:00:00"},
		{at(58, 13, 5) + 9, layoutT, "2025-02-28T13:05:09"},
		{at(lastDay, 23, 59), layoutCompact, "20251231235900"},
		{at(-1, 8, 30), layoutSpace, "2024-12-31 08:30:00"},
		{at(-3653, 0, 0), layoutCompact, "20150101000000"},
	}
	for _, c := range cases {
		if got := timeString(c.t, c.layout); got != c.want {
			t.Errorf("timeString(%d) = %s, want %s", c.t, got, c.want)
		}
	}
	if got := time.UnixMilli(millis(at(31, 10, 0))).UTC().Format(time.DateTime); got != "2025-02-01 10:00:00" {
		t.Errorf("millis carries %s", got)
	}
	for d := int64(-40000); d < 40000; d += 37 {
		y, m, dd := civil(d)
		if epochDays(y, m, dd) != d {
			t.Fatalf("civil/epochDays disagree at %d", d)
		}
	}
}

func TestGenerate_PersonIDsNormalize(t *testing.T) {
	dir := out(t)
	seen := map[string]bool{}
	for _, r := range readFeed[residentRow](t, dir, feedResidents, "0001") {
		n, err := personid.Normalize(r.PersonID)
		if err != nil || n != r.PersonID {
			t.Fatalf("resident id %q is not a normalized ID", r.PersonID)
		}
		if seen[n] {
			t.Fatalf("resident id %s twice", n)
		}
		seen[n] = true
		if r.PersonID[:6] != r.HukouRegion {
			t.Fatalf("id %s, hukou %s", r.PersonID, r.HukouRegion)
		}
	}
	variants := 0
	for _, s := range readFeed[settlementRow](t, dir, feedSettlements, "0001") {
		n, err := personid.Normalize(s.PersonID)
		if err != nil {
			t.Fatalf("settlement %s: person id %q: %v", s.SettlementID, s.PersonID, err)
		}
		if n != s.PersonID {
			variants++
		}
	}
	if variants == 0 {
		t.Error("no settlement writes an ID in its legacy or lower-case form")
	}
}

func TestGenerate_TruthNamesWrittenSettlements(t *testing.T) {
	dir := out(t)
	ids := map[string]bool{}
	for _, s := range readFeed[settlementRow](t, dir, feedSettlements, "0001") {
		if ids[s.SettlementID] {
			t.Fatalf("settlement id %s twice", s.SettlementID)
		}
		ids[s.SettlementID] = true
	}
	truth := readTruth(t, dir)
	flags, clears := 0, 0
	models := map[string]bool{}
	for _, tr := range truth {
		if !ids[tr.id] {
			t.Errorf("truth names %s, which is not in the settlements", tr.id)
		}
		switch tr.expect {
		case "flag":
			flags++
			models[tr.model] = true
			if tr.reason == "" {
				t.Errorf("flag row %s has no reason", tr.id)
			}
		case "clear":
			clears++
			if tr.reason != "" {
				t.Errorf("clear row %s has a reason", tr.id)
			}
		default:
			t.Errorf("expect %q", tr.expect)
		}
	}
	if flags != fixture.sum.Planted || clears != fixture.sum.NearMisses {
		t.Errorf("truth has %d flag and %d clear rows, summary %d and %d", flags, clears, fixture.sum.Planted, fixture.sum.NearMisses)
	}
	for _, m := range []string{"deceased_claims", "impossible_location", "phantom_purchases", "overlapping_stays", "unknown_identity"} {
		if !models[m] {
			t.Errorf("nothing planted for %s", m)
		}
	}
}

func TestGenerate_BadDeliveries(t *testing.T) {
	dir := out(t)
	settlements, _ := feeds.Lookup(feedSettlements)
	residents, _ := feeds.Lookup(feedResidents)
	locations, _ := feeds.Lookup(feedLocations)
	civil, _ := feeds.Lookup(feedCivil)

	badDir := filepath.Join(dir, feedSettlements, BadRowsDelivery)
	fs, err := feeds.CheckFile(filepath.Join(badDir, "part-00000.parquet"), settlements)
	if err != nil {
		t.Fatalf("9001 must pass its footer check (its problems are in rows): %v", err)
	}
	if fs.Columns["visit_start"] != feeds.CarrierString || fs.Columns["total_amount"] != feeds.CarrierDecimal || fs.Columns["fund_amount"] != feeds.CarrierInt {
		t.Errorf("9001 carriers %v", fs.Columns)
	}
	rows := readFeed[badSettlementRow](t, dir, feedSettlements, BadRowsDelivery)
	cells := readCSV(t, filepath.Join(dir, BadRowsFile))
	if cells[0][0] != "delivery" || len(cells) < 2 {
		t.Fatalf("bad_rows.csv: %v", cells)
	}
	reasons := map[string]bool{}
	for _, c := range cells[1:] {
		var row int
		fmt.Sscan(c[3], &row)
		if c[0] != BadRowsDelivery || c[1] != feedSettlements || c[2] != "part-00000.parquet" || row < 1 || row > len(rows) {
			t.Fatalf("bad cell %v", c)
		}
		reasons[c[5]] = true
		r := rows[row-1]
		if !badCellIsBad(r, c[4], c[5], rows[row:]) {
			t.Errorf("row %d column %s is not %s: %+v", row, c[4], c[5], r)
		}
	}
	for _, want := range []string{"invalid_person_id", "missing_value", "bad_timestamp", "bad_enum", "negative_amount", "end_before_start", "unknown_region", "invalid_institution_id", "duplicate_key"} {
		if !reasons[want] {
			t.Errorf("no bad cell with reason %s", want)
		}
	}
	for _, r := range rows {
		if r.SettlementID == nil || !strings.HasPrefix(*r.SettlementID, "B") {
			t.Errorf("9001 settlement id %v does not start with B", r.SettlementID)
		}
	}

	_, err = feeds.CheckFile(filepath.Join(dir, feedResidents, WrongSchemaDelivery, "part-00000.parquet"), residents)
	var se *feeds.SchemaError
	if !errors.As(err, &se) || se.Column != "hukou_region" {
		t.Errorf("9002: err = %v, want the missing hukou_region", err)
	}
	if _, err := feeds.CheckFile(filepath.Join(dir, feedLocations, CorruptDelivery, "part-00000.parquet"), locations); err == nil {
		t.Error("9003: a truncated file passed its footer check")
	}
	if _, err := os.Stat(filepath.Join(dir, feedLocations, CorruptDelivery, "_SUCCESS")); err != nil {
		t.Error("9003 must be marked complete")
	}
	if _, err := feeds.CheckFile(filepath.Join(dir, feedCivil, IncompleteDelivery, "part-00000.parquet"), civil); err != nil {
		t.Errorf("9004: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, feedCivil, IncompleteDelivery, "_SUCCESS")); err == nil {
		t.Error("9004 must not be marked complete")
	}
}

// badCellIsBad says whether a cell holds the kind of bad value its reason
// names; later are the rows after it (a duplicate key is the earlier row,
// which a later row with the same key replaces).
func badCellIsBad(r badSettlementRow, column, reason string, later []badSettlementRow) bool {
	str := func(p *string) string {
		if p == nil {
			return "<null>"
		}
		return *p
	}
	switch reason {
	case "invalid_person_id":
		_, err := personid.Normalize(str(r.PersonID))
		return column == "person_id" && r.PersonID != nil && *r.PersonID != "" && err != nil
	case "missing_value":
		switch column {
		case "institution_id":
			return r.InstitutionID == nil
		case "person_id":
			return r.PersonID == nil || strings.TrimSpace(*r.PersonID) == ""
		case "settled_at":
			return r.SettledAt == nil
		}
	case "bad_timestamp":
		v := r.VisitStart
		if column == "settled_at" {
			v = r.SettledAt
		}
		_, ok := parseStringTime(str(v))
		return v != nil && !ok
	case "bad_enum":
		return column == "visit_type" && str(r.VisitType) != "inpatient" && str(r.VisitType) != "outpatient" && str(r.VisitType) != "pharmacy"
	case "negative_amount":
		return column == "fund_amount" && r.FundAmount != nil && *r.FundAmount < 0
	case "end_before_start":
		s, ok1 := parseStringTime(str(r.VisitStart))
		e, ok2 := parseStringTime(str(r.VisitEnd))
		return ok1 && ok2 && e.Before(s)
	case "unknown_region":
		if column != "insured_region" || r.InsuredRegion == nil {
			return false
		}
		tab := mustRegions()
		_, ok := tab.Lookup(*r.InsuredRegion)
		return !ok
	case "invalid_institution_id":
		id := str(r.InstitutionID)
		return len(id) != 12 || (id[0] != 'H' && id[0] != 'P')
	case "duplicate_key":
		for _, e := range later {
			if str(e.SettlementID) == str(r.SettlementID) {
				return true
			}
		}
	}
	return false
}

// parseStringTime reads the timestamp layouts the contract accepts.
func parseStringTime(s string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "20060102150405"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func openParquet(t *testing.T, path string) *parquet.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pf
}

// readFeed reads every file of a delivery, in file order.
func readFeed[T any](t *testing.T, dir, feed, delivery string) []T {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, feed, delivery, "*.parquet"))
	sort.Strings(files)
	var out []T
	for _, f := range files {
		rows, err := parquet.ReadFile[T](f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, rows...)
	}
	return out
}

type truthLine struct{ expect, model, id, reason, scenario string }

func readTruth(t *testing.T, dir string) []truthLine {
	t.Helper()
	recs := readCSV(t, filepath.Join(dir, TruthFile))
	if strings.Join(recs[0], ",") != "expect,model,settlement_id,reason,scenario" {
		t.Fatalf("truth header %v", recs[0])
	}
	var out []truthLine
	for _, r := range recs[1:] {
		out = append(out, truthLine{r[0], r[1], r[2], r[3], r[4]})
	}
	return out
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}

// TestGenerate_NullsExactlyWhereMeant guards against optional columns
// written as zero values instead of nulls (see rows.go).
func TestGenerate_NullsExactlyWhereMeant(t *testing.T) {
	dir := out(t)
	inChina := func(lat, lon *float64) bool {
		return lat != nil && lon != nil && *lat > 18 && *lat < 54 && *lon > 73 && *lon < 135
	}
	for _, s := range readFeed[settlementRow](t, dir, feedSettlements, "0001") {
		if (s.VisitEnd != nil) != (s.VisitType == inpatient) {
			t.Fatalf("%s: %s with visit_end %v", s.SettlementID, s.VisitType, s.VisitEnd)
		}
		if s.VisitEnd != nil && *s.VisitEnd <= s.VisitStart || s.SettledAt < s.VisitStart {
			t.Fatalf("%s: times out of order", s.SettlementID)
		}
		if y := wallClock(s.VisitStart).Year(); y != 2025 {
			t.Fatalf("%s: visit in %d", s.SettlementID, y)
		}
	}
	openEnds := 0
	for _, l := range readFeed[locationRow](t, dir, feedLocations, "0001") {
		if (l.RegionCode == nil) != (l.Kind == "abroad") {
			t.Fatalf("%s: %s with region %v", l.EventID, l.Kind, l.RegionCode)
		}
		if l.EndTime == nil {
			openEnds++
			if l.Kind != "abroad" {
				t.Fatalf("%s: %s without end_time", l.EventID, l.Kind)
			}
		} else if *l.EndTime <= l.StartTime {
			t.Fatalf("%s: ends before it starts", l.EventID)
		}
		if (l.Lat == nil) != (l.Lon == nil) || l.Lat != nil && !inChina(l.Lat, l.Lon) {
			t.Fatalf("%s: point %v %v", l.EventID, l.Lat, l.Lon)
		}
	}
	if openEnds == 0 {
		t.Error("no open-ended abroad record")
	}
	for _, c := range readFeed[civilStatusRow](t, dir, feedCivil, "0001") {
		if (c.DeathDate != nil) != (c.Status == deceased) {
			t.Fatalf("%s: %s with death_date %v", c.PersonID, c.Status, c.DeathDate)
		}
		if _, err := time.Parse("20060102150405", c.UpdatedAt); err != nil {
			t.Fatalf("%s: updated_at %q", c.PersonID, c.UpdatedAt)
		}
	}
	for _, f := range readFeed[floatingRow](t, dir, feedFloating, "0001") {
		if f.ValidTo != nil && *f.ValidTo <= f.ValidFrom {
			t.Fatalf("%s: valid_to %d before valid_from %d", f.PersonID, *f.ValidTo, f.ValidFrom)
		}
	}
	nulls := 0
	insts := readFeed[institutionRow](t, dir, feedInstitutions, "0001")
	for _, in := range insts {
		if in.Lat == nil {
			nulls++
		} else if !inChina(in.Lat, in.Lon) {
			t.Fatalf("%s: point %v %v", in.InstitutionID, *in.Lat, *in.Lon)
		}
	}
	if f := float64(nulls) / float64(len(insts)); f < 0.05 || f > 0.15 {
		t.Errorf("%.2f of institutions without a point, want about 10%%", f)
	}
}
