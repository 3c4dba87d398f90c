package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"collider/feeds"
	"collider/personid"
	"collider/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), MemoryLimit: "2GB", Threads: 2, Files: []string{os.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeParquet writes the rows of a SQL query to a Parquet file with DuckDB,
// so fixtures can carry any type and any bad value.
func writeParquet(t *testing.T, db *sql.DB, path, query string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("COPY (%s) TO '%s' (FORMAT parquet)", query, path)); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// delivery writes files into INBOX/feed/name/ and marks it complete.
func delivery(t *testing.T, db *sql.DB, inbox, feed, name string, queries ...string) Delivery {
	t.Helper()
	dir := filepath.Join(inbox, feed, name)
	for i, qr := range queries {
		writeParquet(t, db, filepath.Join(dir, fmt.Sprintf("part-%05d.parquet", i)), qr)
	}
	if err := os.WriteFile(filepath.Join(dir, SuccessMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := ManualDelivery(feed, dir)
	if err != nil {
		t.Fatal(err)
	}
	d.Name = name
	return d
}

type reject struct {
	Row    int64
	Column string
	Reason string
	Raw    string
}

func rejectsOf(t *testing.T, db *sql.DB, id int64) []reject {
	t.Helper()
	rows, err := db.Query("SELECT row_number, column_name, reason, coalesce(raw_value, '<null>') FROM rejects WHERE delivery_id = ? ORDER BY row_number, column_name, reason", id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []reject
	for rows.Next() {
		var r reject
		if err := rows.Scan(&r.Row, &r.Column, &r.Reason, &r.Raw); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func count(t *testing.T, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

const goodSettlement = `SELECT 'S1' AS settlement_id, '11010519491231002X' AS person_id, '张三' AS person_name,
	'H62010200001' AS institution_id, 'outpatient' AS visit_type, '2025-03-01 10:00:00' AS visit_start,
	NULL::VARCHAR AS visit_end, '2025-03-01 10:30:00' AS settled_at, 120.5::DOUBLE AS total_amount,
	80.25::DOUBLE AS fund_amount, '620102' AS insured_region`

// Every reject reason, each on its own row, next to a good row.
func TestLoad_EveryRejectReasonIsKept(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	row := func(id, pid, inst, vt, start, end, amount, fund, region string) string {
		return fmt.Sprintf("SELECT %s, %s, '李四', %s, %s, %s, %s, '2025-03-02 09:00:00', %s::DOUBLE, %s::DOUBLE, %s",
			id, pid, inst, vt, start, end, amount, fund, region)
	}
	n := "NULL"
	rows := []string{
		goodSettlement, // row 1
		row("'S2'", "'440308199901101513'", "'H62010200001'", "'pharmacy'", "'2025-03-02 08:00:00'", n, "10", "5", "'620102'"),                        // 2 invalid_person_id
		row("'S3'", "'440308199901101512'", n, "'pharmacy'", "'2025-03-02 08:00:00'", n, "10", "5", "'620102'"),                                       // 3 missing_value institution_id
		row("'S4'", "'440308199901101512'", "'H62010200001'", "'pharmacy'", "'2025-13-45 10:00:00'", n, "10", "5", "'620102'"),                        // 4 bad_timestamp
		row("'S5'", "'440308199901101512'", "'H62010200001'", "'emergency'", "'2025-03-02 08:00:00'", n, "10", "5", "'620102'"),                       // 5 bad_enum
		row("'S6'", "'440308199901101512'", "'H62010200001'", "'pharmacy'", "'2025-03-02 08:00:00'", n, "10", "-5", "'620102'"),                       // 6 negative_amount
		row("'S7'", "'440308199901101512'", "'H62010200001'", "'inpatient'", "'2025-03-05 08:00:00'", "'2025-03-02 08:00:00'", "10", "5", "'620102'"), // 7 end_before_start
		row("'S8'", "'440308199901101512'", "'H62010200001'", "'pharmacy'", "'2025-03-02 08:00:00'", n, "10", "5", "'990101'"),                        // 8 unknown_region
		row("'S9'", "'440308199901101512'", "'X123'", "'pharmacy'", "'2025-03-02 08:00:00'", n, "10", "5", "'620102'"),                                // 9 invalid_institution_id
		row("'S10'", "''", "'H62010200001'", "'pharmacy'", "'2025-03-02 08:00:00'", n, "10", "5", "'620102'"),                                         // 10 missing_value person_id
		row("'S11'", "'610104620927690'", "'h62010200001'", "'Pharmacy'", "'20250302080000'", n, "10", "5", "'620199'"),                               // 11 good: legacy id, lower case, compact time, newer county
		row("'S12'", "'440308199902301512'", "'H62010200001'", "'pharmacy'", "'yesterday'", n, "10", "5", "'12AB56'"),                                 // 12 three bad cells
	}
	d := delivery(t, s.DB, inbox, "settlements", "0001", strings.Join(rows, " UNION ALL "))
	res := (&Loader{Store: s}).Load(context.Background(), d)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res.Rows != 12 || res.Loaded != 2 || res.Rejected != 10 {
		t.Fatalf("rows %d loaded %d rejected %d", res.Rows, res.Loaded, res.Rejected)
	}
	want := []reject{
		{2, "person_id", ReasonInvalidPersonID, "440308199901101513"},
		{3, "institution_id", ReasonMissingValue, "<null>"},
		{4, "visit_start", ReasonBadTimestamp, "2025-13-45 10:00:00"},
		{5, "visit_type", ReasonBadEnum, "emergency"},
		{6, "fund_amount", ReasonNegativeAmount, "-5.0"},
		{7, "visit_end", ReasonEndBeforeStart, "2025-03-02 08:00:00"},
		{8, "insured_region", ReasonUnknownRegion, "990101"},
		{9, "institution_id", ReasonInvalidInstitutionID, "X123"},
		{10, "person_id", ReasonMissingValue, ""},
		{12, "insured_region", ReasonUnknownRegion, "12AB56"},
		{12, "person_id", ReasonInvalidPersonID, "440308199902301512"},
		{12, "visit_start", ReasonBadTimestamp, "yesterday"},
	}
	got := rejectsOf(t, s.DB, res.DeliveryID)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rejects:\n got %v\nwant %v", got, want)
	}
	// By reason, a row counts once under each of its reasons (row 12 under three).
	byReason := map[string]int64{ReasonInvalidPersonID: 2, ReasonMissingValue: 2, ReasonBadTimestamp: 2, ReasonBadEnum: 1,
		ReasonNegativeAmount: 1, ReasonEndBeforeStart: 1, ReasonUnknownRegion: 2, ReasonInvalidInstitutionID: 1}
	if fmt.Sprint(res.RejectedBy) != fmt.Sprint(byReason) {
		t.Fatalf("rejected rows by reason: got %v, want %v", res.RejectedBy, byReason)
	}
	var pid, inst, vt, start string
	if err := s.DB.QueryRow("SELECT person_id, institution_id, visit_type, CAST(visit_start AS VARCHAR) FROM settlements WHERE settlement_id = 'S11'").Scan(&pid, &inst, &vt, &start); err != nil {
		t.Fatal(err)
	}
	if pid != "610104196209276908" || inst != "H62010200001" || vt != "pharmacy" || start != "2025-03-02 08:00:00" {
		t.Fatalf("S11 normalized to %s %s %s %s", pid, inst, vt, start)
	}
	var file string
	s.DB.QueryRow("SELECT DISTINCT file FROM rejects").Scan(&file)
	if file != "part-00000.parquet" {
		t.Fatalf("reject file %q", file)
	}
}

// The police feeds' own rules: a deceased status needs a death date, an
// interval cannot end before it starts, a point record needs a point.
func TestLoad_PoliceFeedRules(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	ctx := context.Background()
	l := &Loader{Store: s}
	cs := delivery(t, s.DB, inbox, "civil_status", "0001", `
		SELECT '11010519491231002X' AS person_id, 'deceased' AS status, '2021-03-02' AS death_date, '20210303120000' AS updated_at
		UNION ALL SELECT '440308199901101512', 'deceased', NULL, NULL
		UNION ALL SELECT '110101199003078670', 'alive', '2021-02-30', NULL
		UNION ALL SELECT '430302199312194239', 'cancelled', NULL, '2024-01-01T08:00:00'`)
	res := l.Load(ctx, cs)
	if res.Err != nil || res.Loaded != 2 {
		t.Fatalf("civil_status: %+v", res)
	}
	want := []reject{{2, "death_date", ReasonMissingValue, "<null>"}, {3, "death_date", ReasonBadDate, "2021-02-30"}}
	if got := rejectsOf(t, s.DB, res.DeliveryID); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v want %v", got, want)
	}
	loc := delivery(t, s.DB, inbox, "locations", "0001", `
		SELECT 'E1' AS event_id, '11010519491231002X' AS person_id, 'hotel' AS kind, TIMESTAMP '2025-01-01 20:00:00' AS start_time, NULL::TIMESTAMP AS end_time, '110101' AS region_code, NULL::DOUBLE AS lat, NULL::DOUBLE AS lon
		UNION ALL SELECT 'E2', '11010519491231002X', 'custody', TIMESTAMP '2025-01-05 00:00:00', TIMESTAMP '2025-01-04 00:00:00', '620102', NULL, NULL
		UNION ALL SELECT 'E3', '11010519491231002X', 'rail', TIMESTAMP '2025-01-06 00:00:00', NULL, NULL, NULL, NULL
		UNION ALL SELECT 'E4', '11010519491231002X', 'abroad', TIMESTAMP '2025-02-01 00:00:00', NULL, NULL, NULL, NULL
		UNION ALL SELECT 'E5', '11010519491231002X', 'flight', TIMESTAMP '2025-02-01 00:00:00', NULL, NULL, 95.0, 200.0
		UNION ALL SELECT 'E6', '11010519491231002X', 'hotel', TIMESTAMP '2025-02-02 00:00:00', NULL, '110101', 'nan'::DOUBLE, '-inf'::DOUBLE`)
	res = l.Load(ctx, loc)
	if res.Err != nil || res.Loaded != 2 {
		t.Fatalf("locations: %+v", res)
	}
	want = []reject{{2, "end_time", ReasonEndBeforeStart, "2025-01-04 00:00:00"}, {3, "region_code", ReasonMissingValue, "<null>"},
		{5, "lat", ReasonBadCoordinate, "95.0"}, {5, "lon", ReasonBadCoordinate, "200.0"},
		{6, "lat", ReasonBadCoordinate, "nan"}, {6, "lon", ReasonBadCoordinate, "-inf"}}
	if got := rejectsOf(t, s.DB, res.DeliveryID); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v want %v", got, want)
	}
	// The hotel has no coordinates: its point is the seat of 东城区.
	var lat, lon float64
	s.DB.QueryRow("SELECT point_lat, point_lon FROM locations WHERE event_id = 'E1'").Scan(&lat, &lon)
	if lat < 39.8 || lat > 40 || lon < 116.3 || lon > 116.5 {
		t.Fatalf("E1 point %.3f,%.3f", lat, lon)
	}
	fl := delivery(t, s.DB, inbox, "floating", "0001", `
		SELECT '11010519491231002X' AS person_id, '620102' AS region_code, DATE '2024-01-01' AS valid_from, DATE '2023-01-01' AS valid_to`)
	res = l.Load(ctx, fl)
	if res.Err != nil || res.Loaded != 0 || res.Rejected != 1 {
		t.Fatalf("floating: %+v", res)
	}
}

// The SQL normalization and personid.Normalize agree on every input.
func TestLoad_PersonIDsNormalizeLikeGo(t *testing.T) {
	s := openStore(t)
	inputs := []string{
		"11010519491231002X", "440308199901101512", "110101199003078670", "430302199312194239",
		"610104620927690", "440308199901101513", "11010119900307867X", "440308199902301512",
		"610104620932690", " 11010519491231002x ", "abc", "4403081999011015121", "62010219800229123",
		"62010219000229123X", "620102200002291230",
	}
	// Thousands of IDs over every digit position: random regions, birth
	// dates and sequences, a third of them with a check character that may
	// be wrong, and their 15-digit forms.
	rng := rand.New(rand.NewPCG(3, 11))
	const checks = "0123456789X"
	for i := 0; i < 3000; i++ {
		region := fmt.Sprintf("%06d", rng.IntN(1_000_000))
		id := personid.Make(region, personid.SampleBirth(rng.IntN(30000)), rng.IntN(1000))
		switch i % 3 {
		case 0:
			id = id[:17] + string(checks[rng.IntN(len(checks))])
		case 1:
			if id[6:8] == "19" {
				id = id[:6] + id[8:17] // the legacy form of a 19xx birth
			}
		}
		inputs = append(inputs, id)
	}
	var values []string
	for i, in := range inputs {
		values = append(values, fmt.Sprintf("SELECT '%s' AS person_id, '620102' AS hukou_region, %d AS n", in, i))
	}
	d := delivery(t, s.DB, t.TempDir(), "residents", "0001", strings.Join(values, " UNION ALL "))
	res := (&Loader{Store: s}).Load(context.Background(), d)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	loaded := map[string]bool{}
	rows, _ := s.DB.Query("SELECT person_id FROM residents")
	for rows.Next() {
		var p string
		rows.Scan(&p)
		loaded[p] = true
	}
	rows.Close()
	rejected := map[string]bool{}
	for _, r := range rejectsOf(t, s.DB, res.DeliveryID) {
		rejected[r.Raw] = true
	}
	for _, in := range inputs {
		want, err := personid.Normalize(in)
		switch {
		case err == nil && !loaded[want]:
			t.Errorf("%q: Go says %s, SQL did not load it", in, want)
		case err != nil && !rejected[in]:
			t.Errorf("%q: Go rejects it, SQL did not", in)
		}
	}
}

func TestLoad_TimestampFormatsAndTypes(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	l := &Loader{Store: s}
	// Strings in the three accepted formats.
	d := delivery(t, s.DB, inbox, "locations", "0001", `
		SELECT 'E1' AS event_id, '11010519491231002X' AS person_id, 'hotel' AS kind, '2025-01-01 20:00:00' AS start_time, '2025-01-02T08:00:00' AS end_time, '110101' AS region_code
		UNION ALL SELECT 'E2', '11010519491231002X', 'hotel', '20250103200000', NULL, '110101'`)
	if res := l.Load(context.Background(), d); res.Err != nil || res.Loaded != 2 {
		t.Fatalf("%+v", res)
	}
	// A UTC-adjusted TIMESTAMP is shown as China Standard Time wall clock.
	d = delivery(t, s.DB, inbox, "locations", "0002", `
		SELECT 'E3' AS event_id, '11010519491231002X' AS person_id, 'hotel' AS kind, TIMESTAMPTZ '2025-01-01 00:00:00+00' AS start_time, '110101' AS region_code`)
	if res := l.Load(context.Background(), d); res.Err != nil || res.Loaded != 1 {
		t.Fatalf("%+v", res)
	}
	got := map[string]string{}
	rows, _ := s.DB.Query("SELECT event_id, CAST(start_time AS VARCHAR) || ' ' || coalesce(CAST(end_time AS VARCHAR), '-') FROM locations")
	for rows.Next() {
		var k, v string
		rows.Scan(&k, &v)
		got[k] = v
	}
	rows.Close()
	want := map[string]string{"E1": "2025-01-01 20:00:00 2025-01-02 08:00:00", "E2": "2025-01-03 20:00:00 -", "E3": "2025-01-01 08:00:00 -"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v want %v", got, want)
	}
}

func TestDiscover_DeliveryWithoutSuccessIsNotRead(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	delivery(t, s.DB, inbox, "settlements", "0001", goodSettlement)
	writeParquet(t, s.DB, filepath.Join(inbox, "settlements", "0002", "part-00000.parquet"), goodSettlement)
	os.WriteFile(filepath.Join(inbox, "settlements", "0003"), nil, 0o644) // a stray file
	os.MkdirAll(filepath.Join(inbox, "notafeed", "x"), 0o755)
	ds, errs := Discover(inbox)
	if len(ds) != 1 || ds[0].Name != "0001" {
		t.Fatalf("discovered %+v", ds)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "notafeed") {
		t.Fatalf("errors %v", errs)
	}
}

// An operator may link a feed's directory, or one delivery, into the inbox.
func TestDiscover_FollowsSymbolicLinks(t *testing.T) {
	s := openStore(t)
	elsewhere, inbox := t.TempDir(), t.TempDir()
	delivery(t, s.DB, elsewhere, "settlements", "0001", goodSettlement)
	delivery(t, s.DB, elsewhere, "locations", "0001", `SELECT 'E1' AS event_id, '11010519491231002X' AS person_id, 'hotel' AS kind,
		TIMESTAMP '2025-01-01 20:00:00' AS start_time, '110101' AS region_code`)
	if err := os.Symlink(filepath.Join(elsewhere, "settlements"), filepath.Join(inbox, "settlements")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(inbox, "locations"), 0o755)
	if err := os.Symlink(filepath.Join(elsewhere, "locations", "0001"), filepath.Join(inbox, "locations", "0001")); err != nil {
		t.Fatal(err)
	}
	ds, errs := Discover(inbox)
	if len(errs) != 0 || len(ds) != 2 || ds[0].Feed != "locations" || ds[1].Feed != "settlements" || len(ds[0].Files) != 1 || len(ds[1].Files) != 1 {
		t.Fatalf("discovered %+v, errors %v", ds, errs)
	}
}

func TestDiscover_ReferenceFeedsFirst(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	delivery(t, s.DB, inbox, "settlements", "0001", goodSettlement)
	delivery(t, s.DB, inbox, "institutions", "0002", "SELECT 'H62010200001' AS institution_id, '兰州一院' AS name, 'hospital' AS kind, '620102' AS region_code")
	ds, _ := Discover(inbox)
	if len(ds) != 2 || ds[0].Feed != "institutions" {
		t.Fatalf("order %+v", ds)
	}
}

func TestLoad_RedeliveryIsNotLoadedTwice(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	l := &Loader{Store: s}
	d := delivery(t, s.DB, inbox, "settlements", "0001", goodSettlement)
	if res := l.Load(context.Background(), d); res.Status != StatusLoaded {
		t.Fatalf("%+v", res)
	}
	res := l.Load(context.Background(), d)
	if res.Status != StatusSkipped || !strings.Contains(res.Note, "delivery 1") {
		t.Fatalf("second load: %+v", res)
	}
	// The same files under another name are the same delivery.
	d2 := delivery(t, s.DB, inbox, "settlements", "0001-again", goodSettlement)
	if res := l.Load(context.Background(), d2); res.Status != StatusSkipped {
		t.Fatalf("renamed redelivery: %+v", res)
	}
	if n := count(t, s.DB, "SELECT count(*) FROM settlements"); n != 1 {
		t.Fatalf("%d settlements", n)
	}
}

func TestLoad_CorrectedRecordReplacesEarlierOne(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	l := &Loader{Store: s}
	first := delivery(t, s.DB, inbox, "settlements", "0001", goodSettlement+" UNION ALL "+strings.Replace(goodSettlement, "'S1'", "'S2'", 1))
	if res := l.Load(context.Background(), first); res.Loaded != 2 {
		t.Fatalf("%+v", res)
	}
	corrected := strings.Replace(goodSettlement, "80.25", "60.00", 1)
	res := l.Load(context.Background(), delivery(t, s.DB, inbox, "settlements", "0002", corrected))
	if res.Err != nil || res.Loaded != 1 || res.Replaced != 1 {
		t.Fatalf("%+v", res)
	}
	var fund string
	s.DB.QueryRow("SELECT CAST(fund_amount AS VARCHAR) FROM settlements WHERE settlement_id = 'S1'").Scan(&fund)
	if fund != "60.00" || count(t, s.DB, "SELECT count(*) FROM settlements") != 2 {
		t.Fatalf("fund %s", fund)
	}
}

// A record re-delivered under another person (a settlement corrected to the
// right ID) leaves its first person in delivery_left, for that person's
// verdicts may change too; a correction that keeps the person leaves none.
func TestLoad_RecordMovedToAnotherPersonKeepsThePersonItLeft(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	l := &Loader{Store: s}
	two := goodSettlement + " UNION ALL " + strings.Replace(goodSettlement, "'S1'", "'S2'", 1)
	if res := l.Load(context.Background(), delivery(t, s.DB, inbox, "settlements", "0001", two)); res.Loaded != 2 {
		t.Fatalf("%+v", res)
	}
	moved := strings.Replace(goodSettlement, "'11010519491231002X'", "'620102195001100115'", 1)
	kept := strings.Replace(strings.Replace(goodSettlement, "'S1'", "'S2'", 1), "80.25", "60.00", 1)
	res := l.Load(context.Background(), delivery(t, s.DB, inbox, "settlements", "0002", moved+" UNION ALL "+kept))
	if res.Err != nil || res.Replaced != 2 {
		t.Fatalf("%+v", res)
	}
	var left []string
	rows, err := s.DB.Query("SELECT delivery_id || ' ' || feed || ' ' || person_id FROM delivery_left ORDER BY ALL")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var l string
		rows.Scan(&l)
		left = append(left, l)
	}
	rows.Close()
	if want := fmt.Sprintf("%d settlements 11010519491231002X", res.DeliveryID); strings.Join(left, ",") != want {
		t.Fatalf("delivery_left %v, want %s", left, want)
	}
}

// A delivery seen before is known by its files' names, sizes, times and
// inodes, without reading them: files rewritten behind the ledger's back
// with their times put back are not read again (the inbox keeps a year of
// deliveries); a file that really changed is hashed and loaded.
func TestLoad_SeenDeliveryIsSkippedWithoutReadingItsFiles(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	l := &Loader{Store: s}
	d := delivery(t, s.DB, inbox, "settlements", "0001", goodSettlement)
	if res := l.Load(context.Background(), d); res.Status != StatusLoaded {
		t.Fatalf("%+v", res)
	}
	f := d.Files[0]
	st, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, len(b))
	if err := os.WriteFile(f, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(f, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	seen, err := l.SeenBefore(context.Background(), []Delivery{d})
	if err != nil || seen[0].Status != StatusSkipped || seen[0].DeliveryID != 1 {
		t.Fatalf("seen %+v %v", seen, err)
	}
	if res := l.Load(context.Background(), d); res.Status != StatusSkipped || res.Err != nil {
		t.Fatalf("a seen delivery was read again: %+v", res)
	}
	if err := os.Chtimes(f, st.ModTime().Add(time.Second), st.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if res := l.Load(context.Background(), d); res.Status != StatusFailed {
		t.Fatalf("changed files must be read (and fail, as garbage): %+v", res)
	}
}

// Inside one delivery the later row wins; the earlier becomes a duplicate_key reject.
func TestLoad_RepeatedKeyInDeliveryLaterRowWins(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	later := strings.Replace(goodSettlement, "80.25", "70.00", 1)
	d := delivery(t, s.DB, inbox, "settlements", "0001", goodSettlement+" UNION ALL "+later, strings.Replace(later, "70.00", "75.00", 1))
	res := (&Loader{Store: s}).Load(context.Background(), d)
	if res.Err != nil || res.Loaded != 1 || res.Rejected != 2 {
		t.Fatalf("%+v", res)
	}
	var fund string
	s.DB.QueryRow("SELECT CAST(fund_amount AS VARCHAR) FROM settlements").Scan(&fund)
	if fund != "75.00" {
		t.Fatalf("fund %s, want the last file's 75.00", fund)
	}
	got := rejectsOf(t, s.DB, res.DeliveryID)
	if len(got) != 2 || got[0].Reason != ReasonDuplicateKey || got[0].Raw != "S1" {
		t.Fatalf("rejects %v", got)
	}
}

func TestLoad_WrongSchemaFailsAloneNamingFileAndColumn(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	delivery(t, s.DB, inbox, "residents", "0001", "SELECT '11010519491231002X' AS person_id, '张三' AS name, 'x' AS shoe_size")
	delivery(t, s.DB, inbox, "settlements", "0001", "SELECT * REPLACE ('abc' AS total_amount) FROM ("+goodSettlement+")")
	delivery(t, s.DB, inbox, "civil_status", "0001", "SELECT '11010519491231002X' AS person_id, 'alive' AS status")
	ds, _ := Discover(inbox)
	results := (&Loader{Store: s}).LoadAll(context.Background(), ds)
	byFeed := map[string]LoadResult{}
	for _, r := range results {
		byFeed[r.Feed] = r
	}
	var se *feeds.SchemaError
	res := byFeed["residents"]
	if res.Status != StatusFailed || !errors.As(res.Err, &se) || se.Column != "hukou_region" || !strings.Contains(se.File, "residents/0001/part-00000.parquet") {
		t.Fatalf("residents: %+v", res)
	}
	res = byFeed["settlements"]
	if res.Status != StatusFailed || !strings.Contains(res.Err.Error(), "column total_amount") {
		t.Fatalf("settlements: %+v", res)
	}
	t.Log(byFeed["residents"].Err, "|", res.Err)
	if byFeed["civil_status"].Status != StatusLoaded {
		t.Fatalf("the good delivery did not load: %+v", byFeed["civil_status"])
	}
	if n := count(t, s.DB, "SELECT count(*) FROM deliveries WHERE status = 'failed' AND error LIKE '%hukou_region%'"); n != 1 {
		t.Fatal("failure not recorded in the ledger")
	}
}

func TestLoad_TruncatedParquetFailsAlone(t *testing.T) {
	s := openStore(t)
	inbox := t.TempDir()
	bad := delivery(t, s.DB, inbox, "settlements", "0001", goodSettlement)
	b, _ := os.ReadFile(bad.Files[0])
	os.WriteFile(bad.Files[0], b[:len(b)/2], 0o644)
	delivery(t, s.DB, inbox, "settlements", "0002", strings.Replace(goodSettlement, "'S1'", "'S2'", 1))
	ds, _ := Discover(inbox)
	results := (&Loader{Store: s}).LoadAll(context.Background(), ds)
	if results[0].Status != StatusFailed || !strings.Contains(results[0].Err.Error(), "0001/part-00000.parquet") {
		t.Fatalf("%+v", results[0])
	}
	t.Log(results[0].Err)
	if results[1].Status != StatusLoaded || count(t, s.DB, "SELECT count(*) FROM settlements") != 1 {
		t.Fatalf("%+v", results[1])
	}
}

func TestLoad_ExtraColumnsAreReported(t *testing.T) {
	s := openStore(t)
	d := delivery(t, s.DB, t.TempDir(), "settlements", "0001", "SELECT *, 'x' AS remark, 1 AS batch_no FROM ("+goodSettlement+")")
	res := (&Loader{Store: s}).Load(context.Background(), d)
	sort.Strings(res.Extra)
	if res.Err != nil || fmt.Sprint(res.Extra) != "[batch_no remark]" {
		t.Fatalf("%+v", res)
	}
	var extra string
	s.DB.QueryRow("SELECT extra_columns FROM deliveries").Scan(&extra)
	if extra != "batch_no,remark" {
		t.Fatalf("ledger says %q", extra)
	}
}

// Optional columns may be missing from a file: a locations delivery without
// region_code loads, with points from its coordinates.
func TestLoad_OptionalColumnsMayBeAbsent(t *testing.T) {
	s := openStore(t)
	d := delivery(t, s.DB, t.TempDir(), "locations", "0001", `
		SELECT 'E1' AS event_id, '11010519491231002X' AS person_id, 'hotel' AS kind, TIMESTAMP '2025-01-01 20:00:00' AS start_time, 39.9 AS lat, 116.4 AS lon
		UNION ALL SELECT 'E2', '11010519491231002X', 'abroad', TIMESTAMP '2025-02-01 00:00:00', NULL, NULL`)
	res := (&Loader{Store: s}).Load(context.Background(), d)
	if res.Err != nil || res.Loaded != 2 {
		t.Fatalf("%+v", res)
	}
	var lat float64
	s.DB.QueryRow("SELECT point_lat FROM locations WHERE event_id = 'E1'").Scan(&lat)
	if lat != 39.9 {
		t.Fatalf("point %v", lat)
	}
}
