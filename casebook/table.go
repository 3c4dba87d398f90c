// This file writes a list as a download: CSV for scripts (the list's
// machine column names, UTF-8 with a byte-order mark so that Excel opens
// Chinese text), XLSX for people (sheet.go). The pages' lists — batches,
// runs, deliveries, suppressions, the audit log, users — download through it.
package casebook

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"collider/domain"
)

// TableColumn is one column of a list download: its machine name (the CSV
// header, the API's JSON field) and its column for people (XLSX).
type TableColumn struct {
	Name string
	SheetColumn
}

// TableWriter writes a list's rows, one value per column; Close finishes
// the file, Discard drops what was not finished.
type TableWriter interface {
	Add(values ...any) error
	Close() error
	Discard()
}

// NewTableWriter writes a list as CSV or XLSX (a sheet of the given name;
// tmpDir is where its rows spill).
func NewTableWriter(w io.Writer, tmpDir, format, sheet string, cols []TableColumn) (TableWriter, error) {
	switch format {
	case "csv":
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = c.Name
		}
		return newCSV(w, names)
	case "xlsx":
		sheetCols := make([]SheetColumn, len(cols))
		for i, c := range cols {
			sheetCols[i] = c.SheetColumn
		}
		return NewSheet(w, tmpDir, sheet, sheetCols)
	}
	return nil, domain.Errorf(domain.EINVALID, "a list downloads as csv or xlsx, not %q", format)
}

// csvTable is CSV in UTF-8 with a byte-order mark, so that Excel opens
// Chinese text correctly.
type csvTable struct {
	buf *bufio.Writer
	w   *csv.Writer
}

func newCSV(w io.Writer, header []string) (*csvTable, error) {
	buf := bufio.NewWriterSize(w, 64<<10)
	if _, err := buf.WriteString("\uFEFF"); err != nil {
		return nil, err
	}
	t := &csvTable{buf: buf, w: csv.NewWriter(buf)}
	return t, t.w.Write(header)
}

// Add writes a row, each value as the API's JSON gives it: times in China
// time, amounts with two decimals, nothing for a nil.
func (t *csvTable) Add(values ...any) error {
	rec := make([]string, len(values))
	for i, v := range values {
		rec[i] = csvText(v)
	}
	return t.w.Write(rec)
}

func csvText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', 2, 64)
	case time.Time:
		return x.In(domain.ChinaTime).Format("2006-01-02 15:04:05")
	case *time.Time:
		if x == nil {
			return ""
		}
		return csvText(*x)
	case *int64:
		if x == nil {
			return ""
		}
		return strconv.FormatInt(*x, 10)
	case json.RawMessage:
		return string(x)
	}
	return fmt.Sprint(v)
}

func (t *csvTable) Close() error {
	t.w.Flush()
	if err := t.w.Error(); err != nil {
		return err
	}
	return t.buf.Flush()
}

func (t *csvTable) Discard() {}
