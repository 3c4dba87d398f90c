// Package feeds holds the data contracts of the Parquet feeds (数据接口): the
// columns each feed must carry, their types and keys, and the check of a
// Parquet file's footer against its contract before anything is loaded.
package feeds

import (
	"fmt"
	"sort"
)

// Type is a contract type: what a column means, whatever Parquet type carries it.
type Type string

const (
	String    Type = "string"
	Timestamp Type = "timestamp" // TIMESTAMP or 'YYYY-MM-DD HH:MM:SS', 'YYYY-MM-DDTHH:MM:SS', 'YYYYMMDDHHMMSS'
	Date      Type = "date"      // DATE or 'YYYY-MM-DD', 'YYYYMMDD'
	Amount    Type = "amount"    // DECIMAL, DOUBLE, INT32/INT64, in yuan
	Number    Type = "number"    // DOUBLE, FLOAT, DECIMAL or integer (coordinates)
)

// Domain narrows a string column to a kind of value the loader checks row by row.
type Domain string

const (
	AnyText       Domain = ""
	PersonID      Domain = "person_id"      // GB 11643-1999, normalized to 18 characters
	RegionCode    Domain = "region_code"    // 6-digit GB/T 2260, resolvable county → city → province
	InstitutionID Domain = "institution_id" // H or P and 11 digits
	Enum          Domain = "enum"
	Latitude      Domain = "latitude"
	Longitude     Domain = "longitude"
)

// Column is one column of a contract.
type Column struct {
	Name     string
	Type     Type
	Required bool
	Domain   Domain
	Values   []string // for Enum
}

// Contract is a feed's data contract (数据接口规范).
type Contract struct {
	Feed    string
	Title   string // Chinese name, as the source calls it
	Source  string // insurance or police
	Key     []string
	Columns []Column
}

// Column returns the named column of the contract.
func (c Contract) Column(name string) (Column, bool) {
	for _, col := range c.Columns {
		if col.Name == name {
			return col, true
		}
	}
	return Column{}, false
}

// Contracts lists every feed, in the order deliveries are loaded: reference
// feeds first, so that a night's settlements meet the night's institutions.
var Contracts = []Contract{
	{
		Feed: "institutions", Title: "定点医药机构", Source: "insurance", Key: []string{"institution_id"},
		Columns: []Column{
			{Name: "institution_id", Type: String, Required: true, Domain: InstitutionID},
			{Name: "name", Type: String, Required: true},
			{Name: "kind", Type: String, Required: true, Domain: Enum, Values: []string{"hospital", "clinic", "pharmacy"}},
			{Name: "region_code", Type: String, Required: true, Domain: RegionCode},
			{Name: "lat", Type: Number, Domain: Latitude},
			{Name: "lon", Type: Number, Domain: Longitude},
		},
	},
	{
		Feed: "residents", Title: "户籍", Source: "police", Key: []string{"person_id"},
		Columns: []Column{
			{Name: "person_id", Type: String, Required: true, Domain: PersonID},
			{Name: "name", Type: String},
			{Name: "hukou_region", Type: String, Required: true, Domain: RegionCode},
			{Name: "birth_date", Type: Date},
		},
	},
	{
		Feed: "civil_status", Title: "生存状态", Source: "police", Key: []string{"person_id"},
		Columns: []Column{
			{Name: "person_id", Type: String, Required: true, Domain: PersonID},
			{Name: "status", Type: String, Required: true, Domain: Enum, Values: []string{"alive", "deceased", "cancelled"}},
			{Name: "death_date", Type: Date}, // required when status is deceased
			{Name: "updated_at", Type: Timestamp},
		},
	},
	{
		Feed: "floating", Title: "流动人口居住登记", Source: "police", Key: []string{"person_id", "region_code", "valid_from"},
		Columns: []Column{
			{Name: "person_id", Type: String, Required: true, Domain: PersonID},
			{Name: "region_code", Type: String, Required: true, Domain: RegionCode},
			{Name: "valid_from", Type: Date, Required: true},
			{Name: "valid_to", Type: Date},
		},
	},
	{
		Feed: "locations", Title: "地理位置", Source: "police", Key: []string{"event_id"},
		Columns: []Column{
			{Name: "event_id", Type: String, Required: true},
			{Name: "person_id", Type: String, Required: true, Domain: PersonID},
			{Name: "kind", Type: String, Required: true, Domain: Enum, Values: []string{"hotel", "rail", "flight", "custody", "abroad"}},
			{Name: "start_time", Type: Timestamp, Required: true},
			{Name: "end_time", Type: Timestamp},
			{Name: "region_code", Type: String, Domain: RegionCode}, // null for abroad
			{Name: "lat", Type: Number, Domain: Latitude},
			{Name: "lon", Type: Number, Domain: Longitude},
		},
	},
	{
		Feed: "settlements", Title: "医保结算", Source: "insurance", Key: []string{"settlement_id"},
		Columns: []Column{
			{Name: "settlement_id", Type: String, Required: true},
			{Name: "person_id", Type: String, Required: true, Domain: PersonID},
			{Name: "person_name", Type: String},
			{Name: "institution_id", Type: String, Required: true, Domain: InstitutionID},
			{Name: "visit_type", Type: String, Required: true, Domain: Enum, Values: []string{"inpatient", "outpatient", "pharmacy"}},
			{Name: "visit_start", Type: Timestamp, Required: true},
			{Name: "visit_end", Type: Timestamp},
			{Name: "settled_at", Type: Timestamp, Required: true},
			{Name: "total_amount", Type: Amount, Required: true},
			{Name: "fund_amount", Type: Amount, Required: true},
			{Name: "insured_region", Type: String, Domain: RegionCode},
		},
	},
}

// Lookup returns the contract of a feed.
func Lookup(feed string) (Contract, error) {
	for _, c := range Contracts {
		if c.Feed == feed {
			return c, nil
		}
	}
	return Contract{}, fmt.Errorf("unknown feed %q (feeds: %s)", feed, Names())
}

// Names lists the feed names in load order.
func Names() []string {
	out := make([]string, len(Contracts))
	for i, c := range Contracts {
		out[i] = c.Feed
	}
	return out
}

// Order returns the position of a feed in load order, or len(Contracts) if unknown.
func Order(feed string) int {
	for i, c := range Contracts {
		if c.Feed == feed {
			return i
		}
	}
	return len(Contracts)
}

// SortByLoadOrder sorts feed names in load order.
func SortByLoadOrder(names []string) {
	sort.SliceStable(names, func(i, j int) bool { return Order(names[i]) < Order(names[j]) })
}
