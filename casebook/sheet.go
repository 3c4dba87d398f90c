// This file writes worksheets for people, not scripts: Chinese headings in
// bold on a frozen first row, an autofilter, amounts as numbers shown with
// two decimals and thousands separators, dates and times as Excel dates.
// (CSV keeps the spec's machine column names for scripts.) Rows stream
// through excelize's stream writer, so memory stays bounded.
package casebook

import (
	"fmt"
	"time"

	"github.com/xuri/excelize/v2"

	"collider/domain"
)

// cellKind is how a column's values are written.
type cellKind int

const (
	textCell cellKind = iota
	intCell
	amountCell
	timeCell // a wall-clock time (China Standard Time) as "2006-01-02 15:04:05" text or a time.Time
)

// sheetColumn is one column of a worksheet for people.
type sheetColumn struct {
	heading string
	kind    cellKind
	width   float64
}

type peopleSheet struct {
	f                *excelize.File
	sw               *excelize.StreamWriter
	name             string
	cols             []sheetColumn
	row              int
	amount, datetime int
}

func newPeopleSheet(f *excelize.File, name string, cols []sheetColumn) (*peopleSheet, error) {
	if err := f.SetSheetName("Sheet1", name); err != nil {
		return nil, err
	}
	sw, err := f.NewStreamWriter(name)
	if err != nil {
		return nil, err
	}
	s := &peopleSheet{f: f, sw: sw, name: name, cols: cols, row: 1}
	head, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true},
		Fill: excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"DCE6F0"}}})
	if err != nil {
		return nil, err
	}
	amountFmt := "#,##0.00"
	if s.amount, err = f.NewStyle(&excelize.Style{CustomNumFmt: &amountFmt}); err != nil {
		return nil, err
	}
	dateFmt := "yyyy-mm-dd hh:mm"
	if s.datetime, err = f.NewStyle(&excelize.Style{CustomNumFmt: &dateFmt}); err != nil {
		return nil, err
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return nil, err
	}
	for i, c := range cols {
		if c.width > 0 {
			if err := sw.SetColWidth(i+1, i+1, c.width); err != nil {
				return nil, err
			}
		}
	}
	header := make([]any, len(cols))
	for i, c := range cols {
		header[i] = excelize.Cell{StyleID: head, Value: c.heading}
	}
	return s, sw.SetRow("A1", header)
}

// add writes one row; values follow the columns.
func (s *peopleSheet) add(values ...any) error {
	s.row++
	row := make([]any, len(values))
	for i, v := range values {
		row[i] = v
		if i >= len(s.cols) || v == nil {
			continue
		}
		switch s.cols[i].kind {
		case amountCell:
			row[i] = excelize.Cell{StyleID: s.amount, Value: v}
		case timeCell:
			switch t := v.(type) {
			case string:
				if t == "" {
					row[i] = nil
					continue
				}
				parsed, err := time.ParseInLocation("2006-01-02 15:04:05", t, domain.ChinaTime)
				if err != nil {
					continue // written as the text it is
				}
				row[i] = excelize.Cell{StyleID: s.datetime, Value: wallClock(parsed)}
			case time.Time:
				row[i] = excelize.Cell{StyleID: s.datetime, Value: wallClock(t)}
			}
		}
	}
	cell, _ := excelize.CoordinatesToCellName(1, s.row)
	return s.sw.SetRow(cell, row)
}

// wallClock is a China wall-clock time as Excel holds it: a date without a
// zone, so that the sheet shows the time the store does.
func wallClock(t time.Time) time.Time {
	t = t.In(domain.ChinaTime)
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// finish flushes the rows and puts an autofilter on the header.
func (s *peopleSheet) finish() error {
	if err := s.sw.Flush(); err != nil {
		return err
	}
	last, _ := excelize.CoordinatesToCellName(len(s.cols), max(s.row, 2))
	return s.f.AutoFilter(s.name, fmt.Sprintf("A1:%s", last), nil)
}
