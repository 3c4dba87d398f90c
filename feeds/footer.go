package feeds

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// Carrier is how a file physically carries a contract column; the loader
// casts each carrier to the contract type in SQL.
type Carrier string

const (
	CarrierString      Carrier = "string"
	CarrierTimestamp   Carrier = "timestamp"   // TIMESTAMP, wall-clock (isAdjustedToUTC=false)
	CarrierTimestampTZ Carrier = "timestamptz" // TIMESTAMP, an instant in UTC
	CarrierDate        Carrier = "date"
	CarrierDecimal     Carrier = "decimal"
	CarrierFloat       Carrier = "float"
	CarrierInt         Carrier = "int"
)

// FileSchema is what a file's footer says about the contract's columns.
type FileSchema struct {
	File    string
	Rows    int64
	Columns map[string]Carrier // contract columns present in the file
	Extra   []string           // columns the contract does not know: ignored and reported
}

// SchemaError is a file that does not meet its contract; nothing of its
// delivery is loaded.
type SchemaError struct {
	File    string
	Column  string // empty when the whole file is unreadable
	Problem string
}

func (e *SchemaError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Problem)
	}
	return fmt.Sprintf("%s: column %s: %s", e.File, e.Column, e.Problem)
}

// CheckFile reads a Parquet file's footer and checks it against the contract:
// every required column present with a type the contract accepts.
func CheckFile(path string, c Contract) (FileSchema, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileSchema{}, &SchemaError{File: path, Problem: err.Error()}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return FileSchema{}, &SchemaError{File: path, Problem: err.Error()}
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return FileSchema{}, &SchemaError{File: path, Problem: "not a readable Parquet file (truncated or corrupt): " + err.Error()}
	}
	fs := FileSchema{File: path, Rows: pf.NumRows(), Columns: map[string]Carrier{}}
	present := map[string]*parquet.Column{}
	for _, col := range pf.Root().Columns() {
		present[col.Name()] = col
	}
	for _, cc := range c.Columns {
		col, ok := present[cc.Name]
		if !ok {
			if cc.Required {
				return FileSchema{}, &SchemaError{File: path, Column: cc.Name, Problem: fmt.Sprintf("required column is missing (feed %s)", c.Feed)}
			}
			continue
		}
		if !col.Leaf() || col.Repeated() {
			return FileSchema{}, &SchemaError{File: path, Column: cc.Name, Problem: "must be a plain column, not a group or list"}
		}
		carrier := carrierOf(col.Type())
		if !accepts(cc.Type, carrier) {
			return FileSchema{}, &SchemaError{File: path, Column: cc.Name,
				Problem: fmt.Sprintf("Parquet type %s cannot carry contract type %s (accepted: %s)", col.Type(), cc.Type, acceptedText(cc.Type))}
		}
		fs.Columns[cc.Name] = carrier
	}
	for name := range present {
		if _, ok := c.Column(name); !ok {
			fs.Extra = append(fs.Extra, name)
		}
	}
	sort.Strings(fs.Extra)
	return fs, nil
}

func carrierOf(t parquet.Type) Carrier {
	if lt := t.LogicalType(); lt != nil && lt.Value != nil {
		switch v := lt.Value.(type) {
		case *format.StringType, *format.EnumType, *format.JsonType:
			return CarrierString
		case *format.TimestampType:
			if v.IsAdjustedToUTC {
				return CarrierTimestampTZ
			}
			return CarrierTimestamp
		case *format.DateType:
			return CarrierDate
		case *format.DecimalType:
			return CarrierDecimal
		case *format.IntType:
			return CarrierInt
		}
		return Carrier("logical " + lt.String())
	}
	switch t.Kind() {
	case parquet.ByteArray:
		return CarrierString // plain BYTE_ARRAY is read as text
	case parquet.Int32, parquet.Int64:
		return CarrierInt
	case parquet.Float, parquet.Double:
		return CarrierFloat
	case parquet.Int96:
		return CarrierTimestamp // legacy Spark/Impala timestamps
	}
	return Carrier(strings.ToLower(t.Kind().String()))
}

var accepted = map[Type][]Carrier{
	String:    {CarrierString},
	Timestamp: {CarrierTimestamp, CarrierTimestampTZ, CarrierString},
	Date:      {CarrierDate, CarrierString},
	Amount:    {CarrierDecimal, CarrierFloat, CarrierInt},
	Number:    {CarrierDecimal, CarrierFloat, CarrierInt},
}

func accepts(t Type, c Carrier) bool {
	for _, a := range accepted[t] {
		if a == c {
			return true
		}
	}
	return false
}

func acceptedText(t Type) string {
	var parts []string
	for _, a := range accepted[t] {
		parts = append(parts, string(a))
	}
	return strings.Join(parts, ", ")
}
