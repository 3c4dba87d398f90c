// rows.go declares the Parquet row of every feed, with the exact column
// names of feeds.Contracts, and the writer that streams rows into a
// delivery directory, rotating files and flushing row groups as it goes.
//
// Physical types were chosen to exercise the contract's accepted carriers
// while keeping the two big feeds native: settlements and locations carry
// TIMESTAMP(MILLIS, isAdjustedToUTC=false) with the China Standard Time
// wall-clock value as is, and DOUBLE amounts and coordinates; civil_status
// carries its dates as strings, residents birth_date as YYYYMMDD, floating
// native DATE.
//
// Optional columns are pointer fields, nil for null. parquet-go v0.32.0 also
// offers "optional" on plain fields (zero value = null), but its run scan
// (writeRowsFuncOfOptional) mis-reads some null/non-null patterns within a
// 64-row word and writes nulls as zero values (visit_end 1970-01-01, lat 0,
// empty death_date); the pointer path writes row by row and is correct. The
// pointers point into a batch's slabs, so they cost no allocation per row.

package synth

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

	"github.com/parquet-go/parquet-go"
)

type institutionRow struct {
	InstitutionID string   `parquet:"institution_id"`
	Name          string   `parquet:"name"`
	Kind          string   `parquet:"kind,dict"`
	RegionCode    string   `parquet:"region_code,dict"`
	Lat           *float64 `parquet:"lat,optional"` // null: the region's seat
	Lon           *float64 `parquet:"lon,optional"`
}

type residentRow struct {
	PersonID    string `parquet:"person_id"`
	Name        string `parquet:"name"`
	HukouRegion string `parquet:"hukou_region,dict"`
	BirthDate   string `parquet:"birth_date"` // YYYYMMDD
}

type civilStatusRow struct {
	PersonID  string  `parquet:"person_id"`
	Status    string  `parquet:"status,dict"`
	DeathDate *string `parquet:"death_date,optional"` // YYYY-MM-DD
	UpdatedAt string  `parquet:"updated_at"`          // YYYYMMDDHHMMSS
}

type floatingRow struct {
	PersonID   string `parquet:"person_id"`
	RegionCode string `parquet:"region_code,dict"`
	ValidFrom  int32  `parquet:"valid_from,date"`
	ValidTo    *int32 `parquet:"valid_to,optional,date"` // null: open-ended
}

type locationRow struct {
	EventID    string   `parquet:"event_id"`
	PersonID   string   `parquet:"person_id"`
	Kind       string   `parquet:"kind,dict"`
	StartTime  int64    `parquet:"start_time,timestamp(millisecond:local)"`
	EndTime    *int64   `parquet:"end_time,optional,timestamp(millisecond:local)"` // null: still abroad
	RegionCode *string  `parquet:"region_code,optional,dict"`                      // null for abroad
	Lat        *float64 `parquet:"lat,optional"`                                   // null: the region's seat
	Lon        *float64 `parquet:"lon,optional"`
}

type settlementRow struct {
	SettlementID  string  `parquet:"settlement_id"`
	PersonID      string  `parquet:"person_id"`
	PersonName    string  `parquet:"person_name"`
	InstitutionID string  `parquet:"institution_id,dict"`
	VisitType     string  `parquet:"visit_type,dict"`
	VisitStart    int64   `parquet:"visit_start,timestamp(millisecond:local)"`
	VisitEnd      *int64  `parquet:"visit_end,optional,timestamp(millisecond:local)"` // inpatient only
	SettledAt     int64   `parquet:"settled_at,timestamp(millisecond:local)"`
	TotalAmount   float64 `parquet:"total_amount"`
	FundAmount    float64 `parquet:"fund_amount"`
	InsuredRegion string  `parquet:"insured_region,dict"`
}

// slab hands out pointers to values that live as long as their batch.
// Blocks never move, so a pointer stays valid until the batch is reset.
type slab[T any] struct {
	blocks [][]T
	cur    int
}

const slabBlock = 4096

func (s *slab[T]) ptr(v T) *T {
	if len(s.blocks) == 0 {
		s.blocks = append(s.blocks, make([]T, 0, slabBlock))
	}
	if len(s.blocks[s.cur]) == slabBlock {
		s.cur++
		if s.cur == len(s.blocks) {
			s.blocks = append(s.blocks, make([]T, 0, slabBlock))
		}
	}
	b := append(s.blocks[s.cur], v)
	s.blocks[s.cur] = b
	return &b[len(b)-1]
}

func (s *slab[T]) reset() {
	for i := range s.blocks {
		s.blocks[i] = s.blocks[i][:0]
	}
	s.cur = 0
}

// feedWriter streams rows of one feed into OUT/<feed>/<delivery>/part-NNNNN.parquet,
// starting a new file every fileRows rows.
type feedWriter[T any] struct {
	dir       string
	fileRows  int64
	groupRows int64
	f         *os.File
	bw        *bufio.Writer
	w         *parquet.GenericWriter[T]
	part      int
	inFile    int64
	rows      int64
	files     []string
}

func newFeedWriter[T any](dir string, fileRows int64) *feedWriter[T] {
	return &feedWriter[T]{dir: dir, fileRows: fileRows, groupRows: min(fileRows, rowGroupRows)}
}

// rowGroupRows bounds the rows a writer buffers before it flushes a row group.
const rowGroupRows = 256 << 10

func (fw *feedWriter[T]) open() error {
	name := filepath.Join(fw.dir, fmt.Sprintf("part-%05d.parquet", fw.part))
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	fw.f = f
	fw.bw = bufio.NewWriterSize(f, 1<<20)
	fw.w = parquet.NewGenericWriter[T](fw.bw,
		parquet.Compression(&parquet.Snappy),
		parquet.MaxRowsPerRowGroup(fw.groupRows),
		parquet.CreatedBy("collider synth", "1", ""),
	)
	fw.files = append(fw.files, name)
	fw.part++
	fw.inFile = 0
	return nil
}

// write appends rows, splitting them across files at fileRows.
func (fw *feedWriter[T]) write(rows []T) error {
	for len(rows) > 0 {
		if fw.w == nil {
			if err := fw.open(); err != nil {
				return err
			}
		}
		n := min(int64(len(rows)), fw.fileRows-fw.inFile)
		if _, err := fw.w.Write(rows[:n]); err != nil {
			return fmt.Errorf("%s: %w", fw.files[len(fw.files)-1], err)
		}
		fw.inFile += n
		fw.rows += n
		rows = rows[n:]
		if fw.inFile >= fw.fileRows {
			if err := fw.closeFile(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (fw *feedWriter[T]) closeFile() error {
	if fw.w == nil {
		return nil
	}
	name := fw.files[len(fw.files)-1]
	err := fw.w.Close()
	if err == nil {
		err = fw.bw.Flush()
	}
	if cerr := fw.f.Close(); err == nil {
		err = cerr
	}
	fw.w, fw.bw, fw.f = nil, nil, nil
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// close ends the last file; a feed without rows still gets one empty file,
// so that every delivery has a schema to check.
func (fw *feedWriter[T]) close() error {
	if len(fw.files) == 0 {
		if err := fw.open(); err != nil {
			return err
		}
	}
	return fw.closeFile()
}

// abort closes an open file after an error, keeping the first error.
func (fw *feedWriter[T]) abort() {
	if fw.f != nil {
		fw.f.Close()
		fw.w, fw.bw, fw.f = nil, nil, nil
	}
}

// writeAll writes a small feed in one go and closes it.
func writeAll[T any](dir string, rows []T) ([]string, error) {
	fw := newFeedWriter[T](dir, int64(max(len(rows), 1)))
	if err := fw.write(rows); err != nil {
		fw.abort()
		return nil, err
	}
	if err := fw.close(); err != nil {
		return nil, err
	}
	return fw.files, nil
}

// markComplete writes the _SUCCESS file that makes a delivery complete.
func markComplete(dir string) error {
	return os.WriteFile(filepath.Join(dir, "_SUCCESS"), nil, 0o644)
}
