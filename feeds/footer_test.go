package feeds

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

type goodResident struct {
	PersonID    string `parquet:"person_id"`
	HukouRegion string `parquet:"hukou_region"`
	BirthDate   string `parquet:"birth_date"`
	ShoeSize    int64  `parquet:"shoe_size"`
}

type badResident struct {
	PersonID  string    `parquet:"person_id"`
	BirthDate time.Time `parquet:"birth_date,timestamp"`
}

type amountAsText struct {
	TotalAmount string `parquet:"total_amount"`
}

func write[T any](t *testing.T, rows []T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "part-00000.parquet")
	if err := parquet.WriteFile(path, rows); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckFile_AcceptsTheContractAndReportsExtras(t *testing.T) {
	c, _ := Lookup("residents")
	fs, err := CheckFile(write(t, []goodResident{{"11010519491231002X", "110105", "19491231", 42}}), c)
	if err != nil {
		t.Fatal(err)
	}
	if fs.Rows != 1 || fs.Columns["birth_date"] != CarrierString || strings.Join(fs.Extra, ",") != "shoe_size" {
		t.Fatalf("%+v", fs)
	}
}

func TestCheckFile_NamesFileAndColumn(t *testing.T) {
	residents, _ := Lookup("residents")
	settlements, _ := Lookup("settlements")
	cases := []struct {
		name, path string
		c          Contract
		column     string
		problem    string
	}{
		{"missing required column", write(t, []badResident{{"x", time.Now()}}), residents, "hukou_region", "required column is missing"},
		{"amount as text", write(t, []amountAsText{{"12.5"}}), settlements, "settlement_id", "required column is missing"},
	}
	for _, tc := range cases {
		_, err := CheckFile(tc.path, tc.c)
		var se *SchemaError
		if !errors.As(err, &se) || se.File != tc.path || se.Column != tc.column || !strings.Contains(se.Problem, tc.problem) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// A type the contract does not accept, with the others present.
	c := Contract{Feed: "x", Columns: []Column{{Name: "total_amount", Type: Amount, Required: true}}}
	_, err := CheckFile(write(t, []amountAsText{{"12.5"}}), c)
	if err == nil || !strings.Contains(err.Error(), "column total_amount") || !strings.Contains(err.Error(), "cannot carry contract type amount") {
		t.Fatalf("%v", err)
	}
}

func TestCheckFile_TruncatedFile(t *testing.T) {
	c, _ := Lookup("residents")
	path := write(t, []goodResident{{"11010519491231002X", "110105", "19491231", 1}})
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)/2], 0o644)
	_, err := CheckFile(path, c)
	var se *SchemaError
	if !errors.As(err, &se) || se.File != path || !strings.Contains(se.Problem, "truncated or corrupt") {
		t.Fatalf("%v", err)
	}
}
