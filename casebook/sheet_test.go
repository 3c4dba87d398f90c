package casebook

import "testing"

// The XLSX export's headings follow the CSV's columns one for one.
func TestExportSheet_OneHeadingPerColumn(t *testing.T) {
	if len(exportSheet) != len(ExportColumns) {
		t.Fatalf("%d headings for %d columns", len(exportSheet), len(ExportColumns))
	}
}
