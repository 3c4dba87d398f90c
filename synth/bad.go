// bad.go writes the deliveries a loader must reject, wholly or row by row,
// next to the good ones (Options.Bad):
//
//	settlements/9001-bad-rows    good rows and one bad cell per bad row; OUT/bad_rows.csv lists them
//	residents/9002-wrong-schema  no hukou_region column, an extra column
//	locations/9003-corrupt       a Parquet file cut off halfway, with _SUCCESS
//	civil_status/9004-incomplete a valid file without _SUCCESS: never to be read
//
// None of them may change what the models find in the good data: their
// settlement and event ids start with B, and their good rows are purchases
// and outpatient visits of alive persons without any location record, at
// institutions of their own county.

package synth

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/parquet-go/parquet-go"
)

// Bad delivery directory names.
const (
	BadRowsDelivery     = "9001-bad-rows"
	WrongSchemaDelivery = "9002-wrong-schema"
	CorruptDelivery     = "9003-corrupt"
	IncompleteDelivery  = "9004-incomplete"
)

// badSettlementRow carries every timestamp as a string so that a row can
// hold a bad one, and the amounts as DECIMAL(12,2) and INT64 yuan, the
// carriers the good delivery does not use. Every column is optional so that
// a required value can be missing.
type badSettlementRow struct {
	SettlementID  *string `parquet:"settlement_id,optional"`
	PersonID      *string `parquet:"person_id,optional"`
	PersonName    *string `parquet:"person_name,optional"`
	InstitutionID *string `parquet:"institution_id,optional"`
	VisitType     *string `parquet:"visit_type,optional"`
	VisitStart    *string `parquet:"visit_start,optional"`
	VisitEnd      *string `parquet:"visit_end,optional"`
	SettledAt     *string `parquet:"settled_at,optional"`
	TotalAmount   *int64  `parquet:"total_amount,optional,decimal(2:12)"` // fen
	FundAmount    *int64  `parquet:"fund_amount,optional"`                // whole yuan
	InsuredRegion *string `parquet:"insured_region,optional"`
}

// wrongResidentRow lacks the required hukou_region and has a column the
// contract does not know.
type wrongResidentRow struct {
	PersonID     string `parquet:"person_id"`
	Name         string `parquet:"name,optional"`
	BirthDate    string `parquet:"birth_date,optional"`
	HukouAddress string `parquet:"hukou_address,optional"`
}

// badCell is one planted bad value: the row (1-based, in its file) and
// column a loader must reject, and the reason code it should give.
type badCell struct {
	Delivery, Feed, File string
	Row                  int
	Column, Reason       string
}

// cleanPerson is a person whose data no model can flag whatever outpatient
// visits and purchases at home are added: alive, no scenario, no location
// record, no floating registration, ID written canonically.
type cleanPerson struct {
	id, name, county string
	birth            int64
	update           int64
	pharmacy, clinic string
}

func (w *world) cleanPersons(n int) []cleanPerson {
	b := newBatch()
	g := newGen(w, b)
	var out []cleanPerson
	withX := false // one of them should have an X to write in lower case
	for p := int64(0); p < w.persons && (len(out) < n || !withX && p < 20_000); p++ {
		b.reset()
		g.person(p)
		if g.scen >= 0 || g.status != alive || g.sid != g.id || len(b.locations) > 0 || len(b.floating) > 0 {
			continue
		}
		if len(out) >= n && g.id[17] != 'X' {
			continue
		}
		withX = withX || g.id[17] == 'X'
		out = append(out, cleanPerson{
			id: g.id, name: g.name, county: g.c.code, birth: g.birth, update: g.update,
			pharmacy: w.insts[g.c.pharmacies[0]].id, clinic: w.insts[g.c.clinics[0]].id,
		})
	}
	return out
}

func strp(s string) *string { return &s }
func i64p(n int64) *int64   { return &n }

// writeBad writes the bad deliveries and OUT/bad_rows.csv.
func (w *world) writeBad() ([]string, int, error) {
	out := w.opt.Out
	people := w.cleanPersons(16)
	if len(people) < 4 {
		return nil, 0, fmt.Errorf("synth: too few clean persons for the bad deliveries")
	}
	var files []string

	// 9001: good rows and bad rows.
	dir := filepath.Join(out, feedSettlements, BadRowsDelivery)
	if err := prepareDir(dir); err != nil {
		return nil, 0, err
	}
	rows, cells := w.badSettlementRows(people)
	fs, err := writeAll(dir, rows)
	if err != nil {
		return nil, 0, err
	}
	if err := markComplete(dir); err != nil {
		return nil, 0, err
	}
	files = append(files, fs...)
	files = append(files, filepath.Join(dir, "_SUCCESS"))
	for i := range cells {
		cells[i].File = filepath.Base(fs[0])
	}

	// 9002: residents without hukou_region.
	dir = filepath.Join(out, feedResidents, WrongSchemaDelivery)
	if err := prepareDir(dir); err != nil {
		return nil, 0, err
	}
	var wrong []wrongResidentRow
	for _, p := range people {
		wrong = append(wrong, wrongResidentRow{PersonID: p.id, Name: p.name, BirthDate: dateString(p.birth-day2025, false), HukouAddress: p.county + "某街道"})
	}
	if fs, err = writeAll(dir, wrong); err != nil {
		return nil, 0, err
	}
	if err := markComplete(dir); err != nil {
		return nil, 0, err
	}
	files = append(files, fs...)
	files = append(files, filepath.Join(dir, "_SUCCESS"))

	// 9003: a location file cut off halfway, marked complete all the same.
	dir = filepath.Join(out, feedLocations, CorruptDelivery)
	if err := prepareDir(dir); err != nil {
		return nil, 0, err
	}
	var locs []locationRow
	for i, p := range people {
		reg, _ := w.tab.Lookup(p.county)
		end := millis(at(31+i, 9, 0))
		locs = append(locs, locationRow{
			EventID: string(appendID(nil, 'B', int64(i+1))), PersonID: p.id, Kind: "hotel",
			StartTime: millis(at(30+i, 20, 0)), EndTime: &end,
			RegionCode: strp(p.county), Lat: &reg.Lat, Lon: &reg.Lon,
		})
	}
	var buf bytes.Buffer
	pw := parquet.NewGenericWriter[locationRow](&buf, parquet.Compression(&parquet.Snappy), parquet.CreatedBy("collider synth", "1", ""))
	if _, err := pw.Write(locs); err != nil {
		return nil, 0, err
	}
	if err := pw.Close(); err != nil {
		return nil, 0, err
	}
	name := filepath.Join(dir, "part-00000.parquet")
	if err := os.WriteFile(name, buf.Bytes()[:buf.Len()/2], 0o644); err != nil {
		return nil, 0, err
	}
	if err := markComplete(dir); err != nil {
		return nil, 0, err
	}
	files = append(files, name, filepath.Join(dir, "_SUCCESS"))

	// 9004: a valid civil_status file whose delivery never completes.
	dir = filepath.Join(out, feedCivil, IncompleteDelivery)
	if err := prepareDir(dir); err != nil {
		return nil, 0, err
	}
	var civ []civilStatusRow
	for _, p := range people {
		civ = append(civ, civilStatusRow{PersonID: p.id, Status: alive, UpdatedAt: timeString(p.update, layoutCompact)})
	}
	if fs, err = writeAll(dir, civ); err != nil {
		return nil, 0, err
	}
	files = append(files, fs...)

	path := filepath.Join(out, BadRowsFile)
	if err := writebadCells(path, cells); err != nil {
		return nil, 0, err
	}
	files = append(files, path)
	return files, len(cells), nil
}

// badSettlementRows builds delivery 9001: good rows in every accepted
// timestamp layout and ID form, and bad rows with exactly one bad cell each.
func (w *world) badSettlementRows(people []cleanPerson) ([]badSettlementRow, []badCell) {
	var rows []badSettlementRow
	var cells []badCell
	seq := 0
	good := func(typeIndex int) badSettlementRow {
		p := people[seq%len(people)]
		seq++
		day := 5 + seq*13%350
		start := at(day, 9+seq%9, seq*7%60)
		typ, inst := outpatient, p.clinic
		if typeIndex%2 == 1 {
			typ, inst = pharmacy, p.pharmacy
		}
		layout := seq % 3
		return badSettlementRow{
			SettlementID:  strp(string(appendID(nil, 'B', int64(seq)))),
			PersonID:      strp(p.id),
			PersonName:    strp(p.name),
			InstitutionID: strp(inst),
			VisitType:     strp(typ),
			VisitStart:    strp(timeString(start, layout)),
			SettledAt:     strp(timeString(start+10*minute, (layout+1)%3)),
			TotalAmount:   i64p(int64(5000 + seq*137%40000)),
			FundAmount:    i64p(int64(20 + seq%30)),
			InsuredRegion: strp(p.county),
		}
	}
	add := func(r badSettlementRow, column, reason string) {
		rows = append(rows, r)
		if column != "" {
			cells = append(cells, badCell{Delivery: BadRowsDelivery, Feed: feedSettlements, Row: len(rows), Column: column, Reason: reason})
		}
	}

	add(good(0), "", "")
	r := good(1)
	r.PersonID = strp(wrongCheck(*r.PersonID))
	add(r, "person_id", "invalid_person_id")
	add(good(1), "", "")
	r = good(0)
	r.PersonID = strp(withCheck(*r.InsuredRegion + "19990230" + "123")) // 30 February
	add(r, "person_id", "invalid_person_id")
	// The same persons' IDs in the other accepted forms: lower-case x, the
	// 15-digit legacy form, surrounding spaces.
	for _, p := range people {
		if p.id[17] == 'X' {
			r = good(0)
			r.PersonID, r.PersonName, r.InstitutionID, r.InsuredRegion = strp(p.id[:17]+"x"), strp(p.name), strp(p.clinic), strp(p.county)
			add(r, "", "")
			break
		}
	}
	for _, p := range people {
		if p.id[6:8] == "19" {
			r = good(1)
			r.PersonID, r.PersonName, r.InstitutionID, r.InsuredRegion = strp(p.id[:6]+p.id[8:17]), strp(p.name), strp(p.pharmacy), strp(p.county)
			add(r, "", "")
			break
		}
	}
	r = good(0)
	r.PersonID = strp(" " + *r.PersonID + " ")
	add(r, "", "")
	r = good(1)
	r.InstitutionID = nil
	add(r, "institution_id", "missing_value")
	r = good(0)
	r.PersonID = strp("")
	add(r, "person_id", "missing_value")
	r = good(1)
	r.SettledAt = nil
	add(r, "settled_at", "missing_value")
	add(good(0), "", "")
	r = good(1)
	r.VisitStart = strp("2025-13-45 10:00:00")
	add(r, "visit_start", "bad_timestamp")
	r = good(0)
	r.SettledAt = strp("yesterday")
	add(r, "settled_at", "bad_timestamp")
	r = good(1)
	r.VisitType = strp("emergency")
	add(r, "visit_type", "bad_enum")
	add(good(0), "", "")
	r = good(1)
	r.FundAmount = i64p(-5)
	add(r, "fund_amount", "negative_amount")
	r = good(0)
	r.VisitType = strp(inpatient)
	r.PersonID, r.PersonName, r.InsuredRegion = strp(people[0].id), strp(people[0].name), strp(people[0].county)
	r.InstitutionID = strp(w.hospitalOf(people[0].county))
	r.VisitStart = strp("2025-05-10 10:00:00")
	r.VisitEnd = strp("2025-05-08 09:00:00")
	r.SettledAt = strp("2025-05-10 11:00:00")
	add(r, "visit_end", "end_before_start")
	r = good(1)
	r.InsuredRegion = strp("990101")
	add(r, "insured_region", "unknown_region")
	r = good(0)
	r.InsuredRegion = strp("12AB56")
	add(r, "insured_region", "unknown_region")
	r = good(1)
	r.InstitutionID = strp("X123")
	add(r, "institution_id", "invalid_institution_id")
	add(good(0), "", "")
	// A row repeating the first row's key: the later row wins, and the
	// first row becomes the duplicate_key reject (so nothing is lost).
	r = good(1)
	r.SettlementID = rows[0].SettlementID
	add(r, "", "")
	cells = append(cells, badCell{Delivery: BadRowsDelivery, Feed: feedSettlements, Row: 1, Column: "settlement_id", Reason: "duplicate_key"})
	add(good(0), "", "")
	return rows, cells
}

// hospitalOf returns the first hospital of a county.
func (w *world) hospitalOf(code string) string {
	for i := range w.counties {
		if w.counties[i].code == code {
			return w.insts[w.counties[i].hospitals[0]].id
		}
	}
	return w.insts[w.counties[0].hospitals[0]].id
}

// wrongCheck replaces an ID's check character by another one.
func wrongCheck(id string) string {
	c := byte('0')
	if id[17] == '0' {
		c = '1'
	}
	return id[:17] + string(c)
}

// withCheck appends the right check character to 17 digits.
func withCheck(first17 string) string {
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(first17[i]-'0') * idWeights[i]
	}
	return first17 + string("10X98765432"[sum%11])
}

func writebadCells(path string, cells []badCell) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	fmt.Fprintln(bw, "delivery,feed,file,row,column,reason")
	for _, c := range cells {
		fmt.Fprintf(bw, "%s,%s,%s,%d,%s,%s\n", c.Delivery, c.Feed, c.File, c.Row, c.Column, c.Reason)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
