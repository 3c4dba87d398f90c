// This file turns a feed contract into the SQL that validates and normalizes
// a whole delivery in a few set operations: every row is checked in DuckDB,
// never row by row in Go.
//
// The query is built in layers so that each normalization step is computed
// once per row and referenced by name afterwards:
//
//	raw   read_parquet over the delivery's files (+ region_lookup joins)
//	l1    cleaned text (_s_*), region seats and cities
//	l2    the 17 digits of an ID as a number (_n_*)
//	l2b   their check character and birth date (_chk_*, _ymd_*)
//	l3    typed values (_v_*)
//	rows  one boolean per check (_bad_N) and _bad, their OR
package jobs

import (
	"fmt"
	"strings"

	"collider/feeds"
)

// Reject reason codes.
const (
	ReasonInvalidPersonID      = "invalid_person_id"
	ReasonMissingValue         = "missing_value"
	ReasonBadTimestamp         = "bad_timestamp"
	ReasonBadDate              = "bad_date"
	ReasonBadEnum              = "bad_enum"
	ReasonBadAmount            = "bad_amount"
	ReasonNegativeAmount       = "negative_amount"
	ReasonEndBeforeStart       = "end_before_start"
	ReasonUnknownRegion        = "unknown_region"
	ReasonInvalidInstitutionID = "invalid_institution_id"
	ReasonBadCoordinate        = "bad_coordinate"
	ReasonDuplicateKey         = "duplicate_key"
)

// check is one row-level rule: when Cond holds, the row is rejected and
// (Column, Reason, raw value) recorded.
type check struct {
	Column string
	Reason string
	Cond   string // SQL over the layered columns
}

// plan is the SQL for one delivery of one feed.
type plan struct {
	contract feeds.Contract
	present  map[string]feeds.Carrier
	l1, l2   []string
	l2b      []string
	l3       []string
	joins    []string
	checks   []check
}

func q(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// parseTimestamp reads the accepted text layouts, choosing the layout by
// length and separator so that each value is parsed once.
func parseTimestamp(s string) string {
	return fmt.Sprintf(`CASE
		WHEN length(%[1]s) = 14 THEN try_strptime(%[1]s, '%%Y%%m%%d%%H%%M%%S')
		WHEN substr(%[1]s, 11, 1) = 'T' THEN try_strptime(%[1]s, '%%Y-%%m-%%dT%%H:%%M:%%S')
		ELSE try_strptime(%[1]s, '%%Y-%%m-%%d %%H:%%M:%%S') END`, s)
}

// parseDate reads the accepted date layouts.
func parseDate(s string) string {
	return fmt.Sprintf(`CAST(CASE WHEN length(%[1]s) = 8 THEN try_strptime(%[1]s, '%%Y%%m%%d')
		ELSE try_strptime(%[1]s, '%%Y-%%m-%%d') END AS DATE)`, s)
}

// newPlan builds the layered SQL for a contract and the carriers the files use.
func newPlan(c feeds.Contract, present map[string]feeds.Carrier) *plan {
	p := &plan{contract: c, present: present}
	for _, col := range c.Columns {
		p.addColumn(col)
	}
	p.addFeedChecks()
	return p
}

func (p *plan) addColumn(col feeds.Column) {
	name := col.Name
	s, v := q("_s_"+name), q("_v_"+name)
	carrier, ok := p.present[name]
	if !ok {
		// An optional column no file carries: NULL all the way, and no seat
		// for a region nobody gave.
		p.l1 = append(p.l1, "NULL AS "+s)
		if col.Domain == feeds.RegionCode {
			p.l1 = append(p.l1, "CAST(NULL AS DOUBLE) AS "+q("_seat_lat_"+name), "CAST(NULL AS DOUBLE) AS "+q("_seat_lon_"+name),
				"CAST(NULL AS VARCHAR) AS "+q("_city_"+name))
		}
		p.l3 = append(p.l3, fmt.Sprintf("CAST(NULL AS %s) AS %s", sqlType(col), v))
		return
	}
	raw := "raw." + q(name)
	if carrier == feeds.CarrierString {
		p.l1 = append(p.l1, fmt.Sprintf("clean_text(CAST(%s AS VARCHAR)) AS %s", raw, s))
	} else {
		p.l1 = append(p.l1, fmt.Sprintf("%s AS %s", raw, s))
	}
	parseFail := func(reason string) {
		p.checks = append(p.checks, check{name, reason, fmt.Sprintf("%s IS NOT NULL AND %s IS NULL", s, v)})
	}
	switch col.Type {
	case feeds.String:
		switch col.Domain {
		case feeds.PersonID:
			// The 17 digits as a number, then its check character and birth
			// date by integer arithmetic: far cheaper than substrings and
			// date parsing over tens of millions of rows. A valid
			// 18-character ID is its own normal form.
			p.l1[len(p.l1)-1] = fmt.Sprintf("person_id_clean(CAST(%s AS VARCHAR)) AS %s", raw, s)
			n, chk, ymd := q("_n_"+name), q("_chk_"+name), q("_ymd_"+name)
			p.l2 = append(p.l2, fmt.Sprintf("person_id_digits(%s) AS %s", s, n))
			p.l2b = append(p.l2b, fmt.Sprintf("person_id_check(%s) AS %s", n, chk), fmt.Sprintf("%s // 1000 %% 100000000 AS %s", n, ymd))
			p.l3 = append(p.l3, fmt.Sprintf(`CASE WHEN %[2]s IS NOT NULL AND is_yyyymmdd(%[5]s)
				AND (length(%[1]s) = 15 OR ends_with(%[1]s, %[4]s))
				THEN CASE WHEN length(%[1]s) = 18 THEN %[1]s ELSE lpad(CAST(%[2]s AS VARCHAR), 17, '0') || %[4]s END END AS %[3]s`, s, n, v, chk, ymd))
			parseFail(ReasonInvalidPersonID)
		case feeds.Enum:
			p.l3 = append(p.l3, fmt.Sprintf("CASE WHEN lower(%s) IN (%s) THEN lower(%s) END AS %s", s, sqlList(col.Values), s, v))
			parseFail(ReasonBadEnum)
		case feeds.InstitutionID:
			p.l3 = append(p.l3, fmt.Sprintf("CASE WHEN regexp_full_match(%[1]s, '[HPhp][0-9]{11}') THEN upper(%[1]s) END AS %[2]s", s, v))
			parseFail(ReasonInvalidInstitutionID)
		case feeds.RegionCode:
			alias := q("_rl_" + name)
			p.joins = append(p.joins, fmt.Sprintf("LEFT JOIN region_lookup %s ON %s.code = clean_text(CAST(%s AS VARCHAR))", alias, alias, raw))
			p.l1 = append(p.l1,
				fmt.Sprintf("%s.code IS NOT NULL AS %s", alias, q("_known_"+name)),
				fmt.Sprintf("%s.city_code AS %s", alias, q("_city_"+name)),
				fmt.Sprintf("%s.lat AS %s", alias, q("_seat_lat_"+name)),
				fmt.Sprintf("%s.lon AS %s", alias, q("_seat_lon_"+name)))
			p.l3 = append(p.l3, fmt.Sprintf("CASE WHEN %s THEN %s END AS %s", q("_known_"+name), s, v))
			parseFail(ReasonUnknownRegion)
		default:
			p.l3 = append(p.l3, fmt.Sprintf("%s AS %s", s, v))
		}
	case feeds.Timestamp:
		switch carrier {
		case feeds.CarrierString:
			p.l3 = append(p.l3, fmt.Sprintf("%s AS %s", parseTimestamp(s), v))
		case feeds.CarrierTimestampTZ:
			// An instant: shown as China Standard Time wall clock, like every time here.
			p.l3 = append(p.l3, fmt.Sprintf("timezone('Asia/Shanghai', %s) AS %s", s, v))
		default:
			p.l3 = append(p.l3, fmt.Sprintf("CAST(%s AS TIMESTAMP) AS %s", s, v))
		}
		parseFail(ReasonBadTimestamp)
	case feeds.Date:
		if carrier == feeds.CarrierString {
			p.l3 = append(p.l3, fmt.Sprintf("%s AS %s", parseDate(s), v))
		} else {
			p.l3 = append(p.l3, fmt.Sprintf("CAST(%s AS DATE) AS %s", s, v))
		}
		parseFail(ReasonBadDate)
	case feeds.Amount:
		p.l3 = append(p.l3, fmt.Sprintf("try_cast(%s AS DECIMAL(18,2)) AS %s", s, v))
		parseFail(ReasonBadAmount)
		p.checks = append(p.checks, check{name, ReasonNegativeAmount, v + " < 0"})
	case feeds.Number:
		p.l3 = append(p.l3, fmt.Sprintf("try_cast(%s AS DOUBLE) AS %s", s, v))
		bound := 180
		if col.Domain == feeds.Latitude {
			bound = 90
		}
		p.checks = append(p.checks, check{name, ReasonBadCoordinate,
			// DuckDB orders NaN above every number, so the bound catches it
			// too (and isnan per value costs more than the comparison).
			fmt.Sprintf("%[1]s IS NOT NULL AND abs(%[1]s) > %[2]d", v, bound)})
	}
	if col.Required {
		p.checks = append(p.checks, check{name, ReasonMissingValue, s + " IS NULL"})
	}
}

// addFeedChecks adds the rules that involve more than one column.
func (p *plan) addFeedChecks() {
	v := func(c string) string { return q("_v_" + c) }
	endBefore := func(end, start string) {
		p.checks = append(p.checks, check{end, ReasonEndBeforeStart, fmt.Sprintf("%s < %s", v(end), v(start))})
	}
	switch p.contract.Feed {
	case "settlements":
		endBefore("visit_end", "visit_start")
	case "locations":
		endBefore("end_time", "start_time")
		// A point record needs a point: a region or coordinates.
		p.checks = append(p.checks, check{"region_code", ReasonMissingValue, fmt.Sprintf(
			"%s IN ('hotel', 'rail', 'flight') AND %s IS NULL AND %s IS NULL AND (%s IS NULL OR %s IS NULL)",
			v("kind"), q("_s_region_code"), v("region_code"), v("lat"), v("lon"))})
	case "floating":
		endBefore("valid_to", "valid_from")
	case "civil_status":
		p.checks = append(p.checks, check{"death_date", ReasonMissingValue, fmt.Sprintf(
			"%s = 'deceased' AND %s IS NULL", v("status"), q("_s_death_date"))})
	}
}

// source is the FROM clause reading the delivery's files; its one parameter
// is the list of file paths.
func (p *plan) source() string {
	return "read_parquet(CAST(? AS VARCHAR[]), file_row_number = true, filename = true, union_by_name = true) raw"
}

// rows is the layered query with one boolean per check (_bad_N) and _bad, their OR.
func (p *plan) rows() string {
	var b strings.Builder
	b.WriteString("SELECT *, (false")
	for i := range p.checks {
		fmt.Fprintf(&b, " OR _bad_%d", i)
	}
	b.WriteString(") AS _bad\nFROM (SELECT *")
	for i, c := range p.checks {
		fmt.Fprintf(&b, ",\n  coalesce(%s, false) AS _bad_%d", c.Cond, i)
	}
	b.WriteString("\nFROM (" + p.typed() + ") typed) checked")
	return b.String()
}

// insertAll inserts every row of a file into the feed table, typed, a bad
// row with a negative source_row. Its parameters: the delivery id, the
// source_row before the file's first row, and the file (a one-element list).
func (p *plan) insertAll() string {
	cols, exprs := p.targetColumns()
	cols = append(cols, "source_row")
	exprs = append(exprs, "CASE WHEN _bad THEN -1 ELSE 1 END * (CAST(? AS BIGINT) + _row)")
	return fmt.Sprintf("INSERT INTO %s (%s)\nSELECT %s\nFROM (%s) r",
		q(p.contract.Feed), strings.Join(cols, ", "), strings.Join(exprs, ",\n  "), p.rows())
}

// rejectedCells is the list of a row's bad cells (column, reason, raw value
// as text), with NULL for each check the row passes.
func (p *plan) rejectedCells() string {
	if len(p.checks) == 0 {
		return "NULL"
	}
	cells := make([]string, len(p.checks))
	for i, ch := range p.checks {
		raw := "CAST(NULL AS VARCHAR)"
		if _, ok := p.present[ch.Column]; ok {
			raw = "CAST(" + q(ch.Column) + " AS VARCHAR)"
		}
		cells[i] = fmt.Sprintf("CASE WHEN _bad_%d THEN {'column': %s, 'reason': %s, 'raw': %s} END", i, sqlList([]string{ch.Column}), sqlList([]string{ch.Reason}), raw)
	}
	return "[" + strings.Join(cells, ", ") + "]"
}

// typed is the layered query up to the typed values, without the checks.
func (p *plan) typed() string {
	var b strings.Builder
	layer := func(exprs []string) {
		b.WriteString("SELECT *")
		for _, e := range exprs {
			b.WriteString(",\n  " + e)
		}
		b.WriteString("\nFROM ")
	}
	layer(p.l3)
	b.WriteString("(")
	layer(p.l2b)
	b.WriteString("(")
	layer(p.l2)
	b.WriteString("(SELECT raw.*, raw.file_row_number + 1 AS _row")
	for _, e := range p.l1 {
		b.WriteString(",\n  " + e)
	}
	b.WriteString("\nFROM " + p.source())
	for _, j := range p.joins {
		b.WriteString("\n" + j)
	}
	b.WriteString(") l1) l2) l2b")
	return b.String()
}

// targetColumns are the feed table's columns and the expressions that fill
// them from the typed rows (the delivery id is the last, bound parameter).
func (p *plan) targetColumns() (cols, exprs []string) {
	for _, c := range p.contract.Columns {
		cols = append(cols, q(c.Name))
		exprs = append(exprs, q("_v_"+c.Name))
	}
	point := func(prefix, region string) (string, string) {
		given := fmt.Sprintf("%s IS NOT NULL AND %s IS NOT NULL", q("_v_lat"), q("_v_lon"))
		return fmt.Sprintf("CASE WHEN %s THEN %s ELSE %s END", given, q("_v_lat"), q("_seat_lat_"+region)),
			fmt.Sprintf("CASE WHEN %s THEN %s ELSE %s END", given, q("_v_lon"), q("_seat_lon_"+region))
	}
	switch p.contract.Feed {
	case "institutions":
		lat, lon := point("point", "region_code")
		cols = append(cols, "city_code", "point_lat", "point_lon")
		exprs = append(exprs, q("_city_region_code"), lat, lon)
	case "residents":
		cols = append(cols, "hukou_city", "hukou_lat", "hukou_lon")
		exprs = append(exprs, q("_city_hukou_region"), q("_seat_lat_hukou_region"), q("_seat_lon_hukou_region"))
		cols, exprs = personFacts(cols, exprs)
	case "floating":
		cols = append(cols, "city_code")
		exprs = append(exprs, q("_city_region_code"))
	case "settlements":
		cols, exprs = personFacts(cols, exprs)
	case "locations":
		lat, lon := point("point", "region_code")
		cols = append(cols, "city_code", "point_lat", "point_lon")
		exprs = append(exprs, q("_city_region_code"), lat, lon)
	}
	cols = append(cols, "delivery_id")
	exprs = append(exprs, "CAST(? AS BIGINT)")
	return cols, exprs
}

// personFacts adds what the person's ID says as columns of their own (the
// region of the ID, the birth year, the sex), from the 17 digits already
// computed as a number: the sandbox's pseudonymized people keep them, so
// models read them here too (sql/0006_feeds.sql).
func personFacts(cols, exprs []string) ([]string, []string) {
	n := q("_n_person_id")
	return append(cols, "id_region", "birth_year", "sex"),
		append(exprs,
			fmt.Sprintf("lpad(CAST(%s // 100000000000 AS VARCHAR), 6, '0')", n),
			fmt.Sprintf("CAST(%s // 10000000 %% 10000 AS INTEGER)", n),
			fmt.Sprintf("CASE WHEN %s %% 2 = 1 THEN 'M' ELSE 'F' END", n))
}

func sqlType(c feeds.Column) string {
	switch c.Type {
	case feeds.Timestamp:
		return "TIMESTAMP"
	case feeds.Date:
		return "DATE"
	case feeds.Amount:
		return "DECIMAL(18,2)"
	case feeds.Number:
		return "DOUBLE"
	}
	return "VARCHAR"
}

func sqlList(values []string) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	return strings.Join(parts, ", ")
}
