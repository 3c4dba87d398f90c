// Package regions is the reference table of China's administrative divisions
// (GB/T 2260) with the point of every code, so that every record that carries
// a region code has a place to measure distances from.
//
// The data is regions.csv from the adcode dataset by Vonng
// (github.com/Vonng/adcode), CC-BY-4.0, codes as of 2016-07-31.
package regions

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
)

//go:embed regions.csv
var regionsCSV []byte

// CSV returns the embedded reference file as shipped.
func CSV() []byte { return regionsCSV }

// Region is one administrative division (行政区划) with the point of its seat.
type Region struct {
	Code     string
	Name     string
	Level    string // province, city or county
	Parent   string
	Province string // province name
	City     string // city name, empty for a province
	Lon, Lat float64
}

// Table holds every division by code.
type Table struct {
	byCode map[string]Region
	codes  []string
}

var (
	loadOnce sync.Once
	shipped  *Table
	loadErr  error
)

// Shipped returns the embedded table, parsed once.
func Shipped() (*Table, error) {
	loadOnce.Do(func() { shipped, loadErr = Parse(regionsCSV) })
	return shipped, loadErr
}

// Parse reads a regions file with the header code,name,level,parent,province,city,lon,lat.
// Rows without a point take the point of their parent.
func Parse(data []byte) (*Table, error) {
	r := csv.NewReader(bytes.NewReader(data))
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("regions: %w", err)
	}
	if len(rows) < 2 || len(rows[0]) != 8 || rows[0][0] != "code" {
		return nil, fmt.Errorf("regions: unexpected header %v", rows[0])
	}
	t := &Table{byCode: make(map[string]Region, len(rows))}
	var noPoint []string
	for i, row := range rows[1:] {
		reg := Region{Code: row[0], Name: row[1], Level: row[2], Parent: row[3], Province: row[4], City: row[5]}
		if !IsCode(reg.Code) {
			return nil, fmt.Errorf("regions: row %d: bad code %q", i+2, reg.Code)
		}
		if row[6] != "" && row[7] != "" {
			if reg.Lon, err = strconv.ParseFloat(row[6], 64); err != nil {
				return nil, fmt.Errorf("regions: row %d: lon: %w", i+2, err)
			}
			if reg.Lat, err = strconv.ParseFloat(row[7], 64); err != nil {
				return nil, fmt.Errorf("regions: row %d: lat: %w", i+2, err)
			}
		} else {
			noPoint = append(noPoint, reg.Code)
		}
		t.byCode[reg.Code] = reg
		t.codes = append(t.codes, reg.Code)
	}
	// Placeholder rows (市辖区, 县) take their parent's point; parents come
	// first in code order, so one pass in order settles chains.
	sort.Strings(noPoint)
	for _, c := range noPoint {
		reg := t.byCode[c]
		if p, ok := t.byCode[reg.Parent]; ok && (p.Lon != 0 || p.Lat != 0) {
			reg.Lon, reg.Lat = p.Lon, p.Lat
			t.byCode[c] = reg
		}
	}
	sort.Strings(t.codes)
	return t, nil
}

// IsCode reports whether s is six digits.
func IsCode(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := 0; i < 6; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// CityOf returns the city (地级) code of a division code: first four digits and 00.
func CityOf(code string) string { return code[:4] + "00" }

// ProvinceOf returns the province code of a division code: first two digits and 0000.
func ProvinceOf(code string) string { return code[:2] + "0000" }

// Lookup finds a code, falling back county → city → province for codes that
// are newer than the table. ok is false when not even the province is known.
func (t *Table) Lookup(code string) (Region, bool) {
	if !IsCode(code) {
		return Region{}, false
	}
	for _, c := range []string{code, CityOf(code), ProvinceOf(code)} {
		if r, ok := t.byCode[c]; ok {
			return r, true
		}
	}
	return Region{}, false
}

// All returns every division in code order.
func (t *Table) All() []Region {
	out := make([]Region, len(t.codes))
	for i, c := range t.codes {
		out[i] = t.byCode[c]
	}
	return out
}

// Counties returns the county-level divisions of a province (or city) code, in code order.
// A city without counties in the table stands for itself.
func (t *Table) Counties(parent string) []Region {
	var out []Region
	prefix := parent[:2]
	if parent[2:] != "0000" {
		prefix = parent[:4]
	}
	for _, c := range t.codes {
		r := t.byCode[c]
		if r.Level == "county" && c[:len(prefix)] == prefix && r.Name != "市辖区" {
			out = append(out, r)
		}
	}
	return out
}

// EarthRadiusKm is the radius the models use for great-circle distances.
const EarthRadiusKm = 6371.0

// DistanceKm is the haversine great-circle distance between two points.
func DistanceKm(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * EarthRadiusKm * math.Asin(math.Min(1, math.Sqrt(a)))
}
