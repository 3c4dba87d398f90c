// This file writes worksheets for people, not scripts: Chinese headings in
// bold on a frozen first row, an autofilter, amounts as numbers shown with
// two decimals and thousands separators, dates and times as Excel dates.
// (CSV keeps machine column names for scripts.) Rows stream through
// excelize's stream writer, which spills them to a temporary file, and the
// workbook streams out as it is zipped, so memory stays bounded.
package casebook

import (
	"archive/zip"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/xuri/excelize/v2"

	"collider/domain"
)

// CellKind is how a column's values are written.
type CellKind int

const (
	TextCell CellKind = iota
	IntCell
	AmountCell // a number shown as 12,345.67
	TimeCell   // a China wall-clock time: a time.Time, a *time.Time or "2006-01-02 15:04:05" text
)

// SheetColumn is one column of a worksheet for people.
type SheetColumn struct {
	Heading string
	Kind    CellKind
	Width   float64 // in characters; 0: Excel's default
}

// Sheet is a workbook of one worksheet for people, written to its writer
// by Close.
type Sheet struct {
	f                *excelize.File
	sw               *excelize.StreamWriter
	w                io.Writer
	name             string
	cols             []SheetColumn
	row              int
	amount, datetime int
}

// NewSheet starts a workbook with one worksheet of the given columns;
// tmpDir is where its rows spill ("": the system's).
func NewSheet(w io.Writer, tmpDir, name string, cols []SheetColumn) (*Sheet, error) {
	s := &Sheet{f: excelize.NewFile(excelize.Options{TmpDir: tmpDir}), w: w, name: name, cols: cols, row: 1}
	if err := s.start(); err != nil {
		s.Discard()
		return nil, err
	}
	return s, nil
}

func (s *Sheet) start() error {
	f := s.f
	if err := f.SetSheetName("Sheet1", s.name); err != nil {
		return err
	}
	var err error
	if s.sw, err = f.NewStreamWriter(s.name); err != nil {
		return err
	}
	head, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true},
		Fill: excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"DCE6F0"}}})
	if err != nil {
		return err
	}
	amountFmt, dateFmt := "#,##0.00", "yyyy-mm-dd hh:mm"
	if s.amount, err = f.NewStyle(&excelize.Style{CustomNumFmt: &amountFmt}); err != nil {
		return err
	}
	if s.datetime, err = f.NewStyle(&excelize.Style{CustomNumFmt: &dateFmt}); err != nil {
		return err
	}
	if err := s.sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return err
	}
	header := make([]any, len(s.cols))
	for i, c := range s.cols {
		header[i] = excelize.Cell{StyleID: head, Value: c.Heading}
		if c.Width > 0 {
			if err := s.sw.SetColWidth(i+1, i+1, c.Width); err != nil {
				return err
			}
		}
	}
	return s.sw.SetRow("A1", header)
}

// Add writes one row; values follow the columns.
func (s *Sheet) Add(values ...any) error {
	s.row++
	row := make([]any, len(values))
	for i, v := range values {
		switch x := v.(type) { // what a spreadsheet cannot hold as it is
		case *int64:
			v = nil
			if x != nil {
				v = *x
			}
		case json.RawMessage:
			v = string(x)
		}
		row[i] = v
		if i < len(s.cols) && v != nil {
			row[i] = s.cell(s.cols[i].Kind, v)
		}
	}
	cell, _ := excelize.CoordinatesToCellName(1, s.row)
	return s.sw.SetRow(cell, row)
}

func (s *Sheet) cell(kind CellKind, v any) any {
	switch kind {
	case AmountCell:
		return excelize.Cell{StyleID: s.amount, Value: v}
	case TimeCell:
		switch t := v.(type) {
		case *time.Time:
			if t == nil {
				return nil
			}
			return excelize.Cell{StyleID: s.datetime, Value: wallClock(*t)}
		case time.Time:
			return excelize.Cell{StyleID: s.datetime, Value: wallClock(t)}
		case string:
			if t == "" {
				return nil
			}
			if parsed, err := time.ParseInLocation("2006-01-02 15:04:05", t, domain.ChinaTime); err == nil {
				return excelize.Cell{StyleID: s.datetime, Value: wallClock(parsed)}
			}
		}
	}
	return v
}

// wallClock is a China wall-clock time as Excel holds it: a date without a
// zone, so that the sheet shows the time the store does.
func wallClock(t time.Time) time.Time {
	t = t.In(domain.ChinaTime)
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// Close puts an autofilter on the table and writes the workbook.
func (s *Sheet) Close() error {
	defer s.Discard()
	if err := s.sw.Flush(); err != nil {
		return err
	}
	last, _ := excelize.CoordinatesToCellName(len(s.cols), max(s.row, 2))
	if err := s.f.AutoFilter(s.name, fmt.Sprintf("A1:%s", last), nil); err != nil {
		return err
	}
	// excelize's WriteTo builds the whole zip in a bytes.Buffer (memory
	// growing with the sheet); a zip writer on w instead streams it, the
	// sheet read back from the stream writer's temporary file. WriteTo's own
	// buffer then stays empty.
	s.f.SetZipWriter(func(io.Writer) excelize.ZipWriter { return zip.NewWriter(s.w) })
	_, err := s.f.WriteTo(io.Discard)
	return err
}

// Discard drops the workbook and its temporary files (after Close: nothing).
func (s *Sheet) Discard() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
