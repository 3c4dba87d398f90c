// This file checks the downloads: each export format parses with the usual
// library and holds exactly the rows of the clue list, in the spec's
// columns and order.
package api_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/xuri/excelize/v2"

	"collider/casebook"
)

// table is an export read back: its header and its rows, every cell as the
// CSV writes it.
type table struct {
	header []string
	rows   [][]string
}

// column returns the index of a column, or fails.
func (tb table) column(t *testing.T, name string) int {
	t.Helper()
	i := slices.Index(tb.header, name)
	if i < 0 {
		t.Fatalf("no column %s in %v", name, tb.header)
	}
	return i
}

const bom = "\uFEFF"

func readCSV(t *testing.T, body []byte) table {
	t.Helper()
	if !bytes.HasPrefix(body, []byte(bom)) {
		t.Fatalf("CSV does not start with the UTF-8 byte-order mark: %q", body[:min(len(body), 16)])
	}
	recs, err := csv.NewReader(bytes.NewReader(body[len(bom):])).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v", err)
	}
	if len(recs) == 0 {
		t.Fatal("CSV without a header")
	}
	return table{header: recs[0], rows: recs[1:]}
}

// moneyColumns are written with two decimals in CSV; a spreadsheet holds
// them as plain numbers. timeColumns are text in CSV and Excel dates in a
// spreadsheet.
var (
	moneyColumns = map[string]bool{"score": true, "total_amount": true, "fund_amount": true}
	timeColumns  = map[string]bool{"first_visit": true, "last_visit": true}
)

// readXLSX reads the XLSX export back in the CSV's terms: it checks the
// sheet is made for people (peopleSheet), maps the Chinese headings to the
// spec's columns, and turns numbers and Excel dates into the CSV's text.
func readXLSX(t *testing.T, body []byte) table {
	t.Helper()
	f, err := excelize.OpenReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("XLSX: %v", err)
	}
	defer f.Close()
	sheets := f.GetSheetList()
	if len(sheets) != 1 {
		t.Fatalf("XLSX sheets %v, want one", sheets)
	}
	rows := peopleSheet(t, f, sheets[0], casebook.ExportHeadings())
	out := table{header: casebook.ExportColumns}
	for n, r := range rows[1:] {
		for len(r) < len(out.header) { // excelize leaves out trailing empty cells
			r = append(r, "")
		}
		for i, name := range out.header {
			if r[i] == "" || !moneyColumns[name] && !timeColumns[name] {
				continue
			}
			cell, _ := excelize.CoordinatesToCellName(i+1, n+2)
			if style := numFmt(t, f, sheets[0], cell); moneyColumns[name] && style != "#,##0.00" || timeColumns[name] && style != "yyyy-mm-dd hh:mm" {
				t.Errorf("XLSX %s (%s) has the number format %q", cell, name, style)
			}
			v, err := strconv.ParseFloat(r[i], 64)
			if err != nil {
				t.Fatalf("XLSX %s (%s) %q is not a number: %v", cell, name, r[i], err)
			}
			if moneyColumns[name] {
				r[i] = strconv.FormatFloat(v, 'f', 2, 64)
				continue
			}
			at, err := excelize.ExcelDateToTime(v, false)
			if err != nil {
				t.Fatalf("XLSX %s (%s) %v: %v", cell, name, v, err)
			}
			r[i] = at.Round(time.Second).Format("2006-01-02 15:04:05")
		}
		out.rows = append(out.rows, r)
	}
	return out
}

// peopleSheet checks a worksheet is one for people — the given headings in
// bold on a frozen first row, an autofilter over the table — and returns
// its rows with raw cell values (numbers as numbers, dates as serials).
func peopleSheet(t *testing.T, f *excelize.File, sheet string, headings []string) [][]string {
	t.Helper()
	rows, err := f.GetRows(sheet, excelize.Options{RawCellValue: true})
	if err != nil {
		t.Fatalf("XLSX: %v", err)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], headings) {
		t.Fatalf("XLSX headings %v, want %v", rows[:min(len(rows), 1)], headings)
	}
	panes, err := f.GetPanes(sheet)
	if err != nil || !panes.Freeze || panes.YSplit != 1 || panes.TopLeftCell != "A2" {
		t.Errorf("XLSX panes %+v (%v): the header row is not frozen", panes, err)
	}
	style, err := f.GetCellStyle(sheet, "A1")
	if err != nil {
		t.Fatalf("XLSX: %v", err)
	}
	if s, err := f.GetStyle(style); err != nil || s.Font == nil || !s.Font.Bold {
		t.Errorf("XLSX: the header is not bold (%v)", err)
	}
	filtered := false
	for _, d := range f.GetDefinedName() {
		last, _ := excelize.CoordinatesToCellName(len(headings), max(len(rows), 2), true)
		if d.Name == "_xlnm._FilterDatabase" && d.Scope == sheet && strings.HasSuffix(d.RefersTo, "!$A$1:"+last) {
			filtered = true
		}
	}
	if !filtered {
		t.Errorf("XLSX: no autofilter over the table (defined names %+v)", f.GetDefinedName())
	}
	return rows
}

// numFmt is a cell's custom number format.
func numFmt(t *testing.T, f *excelize.File, sheet, cell string) string {
	t.Helper()
	id, err := f.GetCellStyle(sheet, cell)
	if err != nil {
		t.Fatalf("XLSX %s: %v", cell, err)
	}
	s, err := f.GetStyle(id)
	if err != nil {
		t.Fatalf("XLSX %s: %v", cell, err)
	}
	if s.CustomNumFmt == nil {
		return ""
	}
	return *s.CustomNumFmt
}

// parquetClue is the Parquet export's row as a reader sees it.
type parquetClue struct {
	ClueID          int64   `parquet:"clue_id"`
	BatchID         int64   `parquet:"batch_id"`
	Model           string  `parquet:"model"`
	ModelVersion    string  `parquet:"model_version"`
	Severity        string  `parquet:"severity"`
	Score           float64 `parquet:"score"`
	Reasons         string  `parquet:"reasons"`
	PersonID        string  `parquet:"person_id"`
	PersonName      string  `parquet:"person_name"`
	InstitutionID   string  `parquet:"institution_id"`
	InstitutionName string  `parquet:"institution_name"`
	CityCode        string  `parquet:"city_code"`
	SettlementCount int32   `parquet:"settlement_count"`
	SettlementIDs   string  `parquet:"settlement_ids"`
	FirstVisit      string  `parquet:"first_visit"`
	LastVisit       string  `parquet:"last_visit"`
	TotalAmount     float64 `parquet:"total_amount"`
	FundAmount      float64 `parquet:"fund_amount"`
	Narrative       string  `parquet:"narrative"`
	Evidence        string  `parquet:"evidence"`
	FollowUpOf      *int64  `parquet:"follow_up_of,optional"`
}

func readParquet(t *testing.T, body []byte) table {
	t.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("Parquet: %v", err)
	}
	var out table
	for _, field := range f.Schema().Fields() {
		out.header = append(out.header, field.Name())
	}
	r := parquet.NewGenericReader[parquetClue](bytes.NewReader(body))
	defer r.Close()
	buf := make([]parquetClue, 64)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			follow := ""
			if c.FollowUpOf != nil {
				follow = strconv.FormatInt(*c.FollowUpOf, 10)
			}
			money := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
			out.rows = append(out.rows, []string{strconv.FormatInt(c.ClueID, 10), strconv.FormatInt(c.BatchID, 10), c.Model,
				c.ModelVersion, c.Severity, money(c.Score), c.Reasons, c.PersonID, c.PersonName, c.InstitutionID, c.InstitutionName,
				c.CityCode, strconv.Itoa(int(c.SettlementCount)), c.SettlementIDs, c.FirstVisit, c.LastVisit, money(c.TotalAmount),
				money(c.FundAmount), c.Narrative, c.Evidence, follow})
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Parquet: %v", err)
		}
	}
	if int64(len(out.rows)) != f.NumRows() {
		t.Fatalf("Parquet: read %d rows of %d", len(out.rows), f.NumRows())
	}
	return out
}

// readExport reads an export in any format.
func readExport(t *testing.T, format string, body []byte) table {
	t.Helper()
	switch format {
	case "csv":
		return readCSV(t, body)
	case "xlsx":
		return readXLSX(t, body)
	case "parquet":
		return readParquet(t, body)
	}
	t.Fatalf("format %s", format)
	return table{}
}

// exportRowOf is a clue of the JSON list as an export row.
func exportRowOf(c casebook.Clue) []string {
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format("2006-01-02 15:04:05")
	}
	follow := ""
	if c.FollowUpOf != nil {
		follow = strconv.FormatInt(*c.FollowUpOf, 10)
	}
	money := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	return []string{strconv.FormatInt(c.ID, 10), strconv.FormatInt(c.BatchID, 10), c.Model, c.ModelVersion, c.Severity,
		money(c.Score), strings.Join(c.Reasons, ";"), c.PersonID, c.PersonName, c.InstitutionID, c.InstitutionName, c.City,
		strconv.Itoa(c.SettlementCount), strings.Join(c.SettlementIDs, ";"), ts(c.FirstVisit), ts(c.LastVisit),
		money(c.TotalAmount), money(c.FundAmount), c.Narrative, string(c.Evidence), follow}
}

// allClues follows the cursor through a clue list (query without cursor).
func (e *testEnv) allClues(t *testing.T, as, query string) []casebook.Clue {
	t.Helper()
	var out []casebook.Clue
	seen := map[int64]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("the cursor never ends")
		}
		var p struct {
			Items      []casebook.Clue `json:"items"`
			NextCursor *string         `json:"next_cursor"`
		}
		sep := "?"
		if query != "" {
			sep = "&"
		}
		e.getJSON(t, as, "/api/v1/clues?"+query+sep+"limit=7"+cursor, &p)
		for _, c := range p.Items {
			if seen[c.ID] {
				t.Fatalf("clue %d on two pages", c.ID)
			}
			seen[c.ID] = true
		}
		out = append(out, p.Items...)
		if p.NextCursor == nil {
			return out
		}
		cursor = "&cursor=" + *p.NextCursor
	}
}

var contentTypes = map[string]string{
	"csv":     "text/csv; charset=utf-8",
	"xlsx":    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	"parquet": "application/vnd.apache.parquet",
}

// Every export format holds exactly the clue list's rows, in the spec's
// columns and order, for the whole list and for one batch, for a reader
// who sees everything and one who sees masked data.
// specColumns is the spec's column list of a batch export, in its order,
// written out here so that a change to casebook.ExportColumns shows.
var specColumns = []string{"clue_id", "batch_id", "model", "model_version", "severity", "score", "reasons",
	"person_id", "person_name", "institution_id", "institution_name", "city_code", "settlement_count",
	"settlement_ids", "first_visit", "last_visit", "total_amount", "fund_amount", "narrative", "evidence", "follow_up_of"}

func TestExport_EveryFormatHoldsTheClueListsRows(t *testing.T) {
	e := getEnv(t)
	for _, as := range []string{asProvince, asModeler, asCityOwn} {
		for _, scope := range []struct{ name, export, query string }{
			{"all clues", "/api/v1/clues/export", ""},
			{"one batch", fmt.Sprintf("/api/v1/batches/%d/export", e.batch), fmt.Sprintf("batch=%d", e.batch)},
			{"filtered", "/api/v1/clues/export", "severity=high&model=deceased_claims"},
		} {
			want := e.allClues(t, as, scope.query)
			if len(want) == 0 {
				t.Fatalf("%s as %s: the clue list is empty", scope.name, as)
			}
			for _, format := range casebook.Formats {
				t.Run(as+"/"+scope.name+"/"+format, func(t *testing.T) {
					query := scope.query
					if scope.export != "/api/v1/clues/export" {
						query = ""
					}
					r := e.do(t, as, http.MethodGet, scope.export+"?format="+format+"&"+query, "")
					if r.status != http.StatusOK {
						t.Fatalf("%s", r)
					}
					if ct := r.header.Get("Content-Type"); ct != contentTypes[format] {
						t.Errorf("Content-Type %q, want %q", ct, contentTypes[format])
					}
					if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, "."+format+`"`) {
						t.Errorf("Content-Disposition %q", cd)
					}
					if as == asProvince && scope.name == "all clues" && r.header.Get("Content-Length") != "" {
						t.Errorf("a download of %d bytes came with a Content-Length: it was buffered, not streamed", len(r.body))
					}
					got := readExport(t, format, r.body)
					if !slices.Equal(got.header, specColumns) {
						t.Fatalf("columns %v\nwant the spec's %v", got.header, specColumns)
					}
					if len(got.rows) != len(want) {
						t.Fatalf("%d rows, the list has %d", len(got.rows), len(want))
					}
					for i, c := range want {
						if w := exportRowOf(c); !slices.Equal(got.rows[i], w) {
							for j := range w {
								if got.rows[i][j] != w[j] {
									t.Errorf("row %d (clue %d) %s = %q, want %q", i+1, c.ID, got.header[j], got.rows[i][j], w[j])
								}
							}
						}
					}
				})
			}
		}
	}
}

// A filter that matches nothing still downloads a file with the header, and
// a format the server does not know is a JSON 400 before any byte is sent.
func TestExport_EmptyAndUnknownFormats(t *testing.T) {
	e := getEnv(t)
	for _, format := range casebook.Formats {
		t.Run("empty "+format, func(t *testing.T) {
			r := e.do(t, asProvince, http.MethodGet, "/api/v1/clues/export?model=no_such_model&format="+format, "")
			if r.status != http.StatusOK {
				t.Fatalf("%s", r)
			}
			got := readExport(t, format, r.body)
			if !slices.Equal(got.header, casebook.ExportColumns) || len(got.rows) != 0 {
				t.Fatalf("header %v, %d rows", got.header, len(got.rows))
			}
		})
	}
	for _, format := range []string{"json", "CSV", "xls", "../csv"} {
		t.Run("unknown "+format, func(t *testing.T) {
			r := e.do(t, asProvince, http.MethodGet, "/api/v1/clues/export?format="+format, "")
			if r.status != http.StatusBadRequest {
				t.Fatalf("%s", r)
			}
			if msg := checkErrorShape(r); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}
