package casebook

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"collider/domain"

	"github.com/parquet-go/parquet-go"
)

// ExportColumns are the columns of a clue export, in the order users'
// spreadsheets and scripts rely on.
var ExportColumns = []string{"clue_id", "batch_id", "model", "model_version", "severity", "score", "reasons",
	"person_id", "person_name", "institution_id", "institution_name", "city_code", "settlement_count",
	"settlement_ids", "first_visit", "last_visit", "total_amount", "fund_amount", "narrative", "evidence", "follow_up_of"}

// exportSheet is the XLSX export's columns for people: the same order as
// ExportColumns, Chinese headings.
var exportSheet = []SheetColumn{
	{"线索编号", IntCell, 10}, {"批次", IntCell, 6}, {"模型", TextCell, 18}, {"模型版本", TextCell, 14}, {"风险等级", TextCell, 8},
	{"评分", AmountCell, 12}, {"疑点", TextCell, 16}, {"身份证号", TextCell, 20}, {"姓名", TextCell, 10}, {"机构编码", TextCell, 14},
	{"机构名称", TextCell, 26}, {"市州代码", TextCell, 10}, {"结算笔数", IntCell, 8}, {"结算号", TextCell, 24},
	{"首次就诊", TimeCell, 17}, {"末次就诊", TimeCell, 17}, {"总金额（元）", AmountCell, 14}, {"基金支付（元）", AmountCell, 14},
	{"线索描述", TextCell, 60}, {"证据", TextCell, 40}, {"前序线索", IntCell, 10},
}

// ExportHeadings are the XLSX export's headings, column by column.
func ExportHeadings() []string {
	out := make([]string, len(exportSheet))
	for i, c := range exportSheet {
		out[i] = c.Heading
	}
	return out
}

// Formats an export can take.
var Formats = []string{"csv", "xlsx", "parquet"}

// ContentType returns the MIME type and file extension of an export format.
func ContentType(format string) (string, error) {
	switch format {
	case "csv":
		return "text/csv; charset=utf-8", nil
	case "xlsx":
		return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", nil
	case "parquet":
		return "application/vnd.apache.parquet", nil
	}
	return "", domain.Errorf(domain.EINVALID, "unknown format %q (formats: csv, xlsx, parquet)", format)
}

// exportRow is a clue as one flat row, for every format.
type exportRow struct {
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

func flatten(cl *Clue) exportRow {
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format("2006-01-02 15:04:05")
	}
	return exportRow{cl.ID, cl.BatchID, cl.Model, cl.ModelVersion, cl.Severity, cl.Score, strings.Join(cl.Reasons, ";"),
		cl.PersonID, cl.PersonName, cl.InstitutionID, cl.InstitutionName, cl.City, int32(cl.SettlementCount),
		strings.Join(cl.SettlementIDs, ";"), ts(cl.FirstVisit), ts(cl.LastVisit), cl.TotalAmount, cl.FundAmount,
		cl.Narrative, string(cl.Evidence), cl.FollowUpOf}
}

func (r *exportRow) strings() []string {
	follow := ""
	if r.FollowUpOf != nil {
		follow = strconv.FormatInt(*r.FollowUpOf, 10)
	}
	return []string{strconv.FormatInt(r.ClueID, 10), strconv.FormatInt(r.BatchID, 10), r.Model, r.ModelVersion, r.Severity,
		strconv.FormatFloat(r.Score, 'f', 2, 64), r.Reasons, r.PersonID, r.PersonName, r.InstitutionID, r.InstitutionName,
		r.CityCode, strconv.Itoa(int(r.SettlementCount)), r.SettlementIDs, r.FirstVisit, r.LastVisit,
		strconv.FormatFloat(r.TotalAmount, 'f', 2, 64), strconv.FormatFloat(r.FundAmount, 'f', 2, 64), r.Narrative, r.Evidence, follow}
}

// rowSink writes export rows in one format.
type rowSink interface {
	write(r *exportRow) error
	close() error
}

// Export streams the clues u may see under f to w in a format, one row at a
// time (memory stays bounded whatever the size), masked as u's role requires,
// and writes the download to the audit log. It returns the rows written.
func (c *Casebook) Export(ctx context.Context, u User, f ClueFilter, format string, w io.Writer) (n int64, err error) {
	if _, err := ContentType(format); err != nil {
		return 0, err
	}
	f.After, f.today = 0, domain.DBTime(c.now())
	where, args, err := clueScope(u, f)
	if err != nil {
		return 0, err
	}
	sink, err := newSink(format, w, c.TmpDir)
	if err != nil {
		return 0, err
	}
	// From here on rows may reach the reader, so the download is audited
	// even when it breaks off: a client that disconnects after most of the
	// rows has still downloaded them.
	defer func() {
		detail := ""
		if err != nil {
			detail = "interrupted: " + err.Error()
		}
		object := fmt.Sprintf("clues.%s?%s", format, f.describe(false))
		if aerr := c.Audit(context.WithoutCancel(ctx), u, "download", object, n, detail); err == nil {
			err = aerr
		}
	}()
	// The driver holds a query's whole result in DuckDB's memory before the
	// first row comes out (it does not stream results), so the export reads
	// ranges of clue ids, one query each: DuckDB then holds one range at a
	// time, whatever the size of the export.
	var first, last sql.NullInt64
	if err := c.DB.QueryRowContext(ctx, `SELECT min(c.clue_id), max(c.clue_id) FROM casebook.clues c
		JOIN casebook.leads l ON l.lead_id = c.clue_id WHERE `+where, args...).Scan(&first, &last); err != nil {
		return 0, err
	}
	for from := first.Int64; first.Valid && from <= last.Int64; from += exportIDsPerQuery {
		if err := c.exportRange(ctx, u, where, append(args, from, from+exportIDsPerQuery), sink, &n); err != nil {
			return n, err
		}
	}
	if err := sink.close(); err != nil {
		return n, err
	}
	return n, nil
}

// exportIDsPerQuery is how many clue ids an export reads per query.
const exportIDsPerQuery = 50_000

// exportRange writes the clues of one range of ids (the last two args) to the sink.
func (c *Casebook) exportRange(ctx context.Context, u User, where string, args []any, sink rowSink, n *int64) error {
	rows, err := c.DB.QueryContext(ctx, fmt.Sprintf(`SELECT %s FROM casebook.clues c JOIN casebook.leads l ON l.lead_id = c.clue_id
		WHERE %s AND c.clue_id >= ? AND c.clue_id < ? ORDER BY c.clue_id`, clueColumns, where), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var cl Clue
		if err := scanClue(rows, &cl); err != nil {
			return err
		}
		if u.MasksPersonalData() {
			cl.Mask()
		}
		r := flatten(&cl)
		if err := sink.write(&r); err != nil {
			return err
		}
		*n++
	}
	return rows.Err()
}

// describe writes the filter as a query string, for the audit log; a
// page's cursor and size with page.
func (f ClueFilter) describe(page bool) string {
	var parts []string
	add := func(k, v string) {
		if v != "" && v != "0" {
			parts = append(parts, k+"="+v)
		}
	}
	add("batch", strconv.FormatInt(f.Batch, 10))
	add("model", f.Model)
	add("city", f.City)
	add("severity", f.Severity)
	add("status", f.Status)
	if f.Overdue {
		add("overdue", "true")
	}
	if page {
		add("cursor", strconv.FormatInt(f.After, 10))
		add("limit", strconv.Itoa(f.Limit))
	}
	return strings.Join(parts, "&")
}

func newSink(format string, w io.Writer, tmpDir string) (rowSink, error) {
	switch format {
	case "csv":
		t, err := newCSV(w, ExportColumns)
		return csvSink{t}, err
	case "xlsx":
		sheet, err := NewSheet(w, tmpDir, "线索", exportSheet)
		return xlsxSink{sheet}, err
	case "parquet":
		return &parquetSink{w: parquet.NewGenericWriter[exportRow](w, parquet.Compression(&parquet.Zstd)), batch: make([]exportRow, 0, 1024)}, nil
	}
	return nil, domain.Errorf(domain.EINVALID, "unknown format %q", format)
}

// CSV (table.go) with the spec's columns.
type csvSink struct{ *csvTable }

func (s csvSink) write(r *exportRow) error { return s.w.Write(r.strings()) }
func (s csvSink) close() error             { return s.Close() }

// XLSX for people (sheet.go).
type xlsxSink struct{ *Sheet }

func (s xlsxSink) write(r *exportRow) error {
	var follow any
	if r.FollowUpOf != nil {
		follow = *r.FollowUpOf
	}
	return s.Add(r.ClueID, r.BatchID, r.Model, r.ModelVersion, r.Severity, r.Score, r.Reasons,
		r.PersonID, r.PersonName, r.InstitutionID, r.InstitutionName, r.CityCode, r.SettlementCount, r.SettlementIDs,
		r.FirstVisit, r.LastVisit, r.TotalAmount, r.FundAmount, r.Narrative, r.Evidence, follow)
}

func (s xlsxSink) close() error { return s.Close() }

// Parquet written in row groups, so memory stays bounded.
type parquetSink struct {
	w     *parquet.GenericWriter[exportRow]
	batch []exportRow
	rows  int
}

func (s *parquetSink) write(r *exportRow) error {
	s.batch = append(s.batch, *r)
	if len(s.batch) < cap(s.batch) {
		return nil
	}
	return s.flushBatch()
}

func (s *parquetSink) flushBatch() error {
	if _, err := s.w.Write(s.batch); err != nil {
		return err
	}
	s.rows += len(s.batch)
	s.batch = s.batch[:0]
	if s.rows >= 128*1024 {
		s.rows = 0
		return s.w.Flush()
	}
	return nil
}

func (s *parquetSink) close() error {
	if len(s.batch) > 0 {
		if err := s.flushBatch(); err != nil {
			return err
		}
	}
	return s.w.Close()
}
