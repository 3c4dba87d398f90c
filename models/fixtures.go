// This file reads a model's fixture tests (dbt-style unit tests): small
// cases kept beside the model in NAME.test.yaml, each with rows per feed and
// the settlement ids the model must and must not flag.
//
//	row_defaults:            # column values every row of a feed gets unless it says otherwise
//	  settlements: {settled_at: "2021-12-31 00:00:00", total_amount: 100, fund_amount: 80}
//	defaults:                # rows every case loads (institutions, usually)
//	  institutions:
//	    - {institution_id: P62010200456, name: 某某大药房, kind: pharmacy, region_code: "620102"}
//	cases:
//	  - name: purchase the day after death is flagged
//	    params: {grace_days: 0}          # optional --set overrides
//	    civil_status:                    # any feed: rows, columns as in the contract
//	      - {person_id: 620102195001100115, status: deceased, death_date: 2021-03-02}
//	    settlements:
//	      - {settlement_id: S1, person_id: 620102195001100115, institution_id: P62010200456,
//	         visit_type: pharmacy, visit_start: "2021-03-03 10:00:00"}
//	    flag: {S1: after_death}          # exactly these are flagged, with these reasons
//	    clear: [S2]                      # near-misses: loaded, and not flagged
//	    severity: {S1: high}             # optional: severity of the clue holding S1
//
// Values are written as the deliveries carry them (text for timestamps and
// dates, numbers for amounts and coordinates) into real Parquet files and
// loaded by the real loader, so fixtures meet the same checks as data.
package models

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"collider/feeds"
)

// Suite is a model's fixture file.
type Suite struct {
	File        string
	Text        string                     // the file as read, so that a draft's cases can travel with it
	RowDefaults map[string]map[string]Cell // feed → column → value
	Defaults    map[string][]Row           // feed → rows loaded in every case
	Cases       []Case
}

// Case is one fixture case.
type Case struct {
	Name     string
	Line     int
	Params   map[string]string
	Feeds    map[string][]Row
	Flag     map[string]string // settlement id → expected reason
	Clear    []string
	Severity map[string]string // settlement id → severity of its clue
}

// Row is one fixture row of a feed.
type Row struct {
	Line  int
	Cells map[string]Cell
}

// Cell is one value as written in the fixture; Null for `~` or `null`.
type Cell struct {
	Text string
	Null bool
}

// ParseSuite parses a fixture file; file names it in errors.
func ParseSuite(file string, text []byte) (*Suite, error) {
	fail := func(line int, format string, args ...any) error {
		return &FileError{File: file, Line: line, Err: fmt.Errorf(format, args...)}
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(text)).Decode(&doc); err != nil {
		return nil, fail(yamlErrorLine(err), "%s", cleanYAMLError(err))
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fail(1, "a fixture file is a mapping with cases:")
	}
	s := &Suite{File: file, Text: string(text), RowDefaults: map[string]map[string]Cell{}, Defaults: map[string][]Row{}}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		switch k.Value {
		case "row_defaults":
			if v.Kind != yaml.MappingNode {
				return nil, fail(v.Line, "row_defaults: a mapping of feed → column values")
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				feed := v.Content[j].Value
				row, err := parseRow(feed, v.Content[j+1])
				if err != nil {
					return nil, fail(v.Content[j+1].Line, "row_defaults: %v", err)
				}
				s.RowDefaults[feed] = row.Cells
			}
		case "defaults":
			if v.Kind != yaml.MappingNode {
				return nil, fail(v.Line, "defaults: a mapping of feed → rows")
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				rows, err := parseRows(v.Content[j].Value, v.Content[j+1])
				if err != nil {
					return nil, fail(v.Content[j].Line, "defaults: %v", err)
				}
				s.Defaults[v.Content[j].Value] = rows
			}
		case "cases":
			if v.Kind != yaml.SequenceNode {
				return nil, fail(v.Line, "cases: a list of cases")
			}
			for _, cn := range v.Content {
				c, err := parseCase(cn)
				if err != nil {
					return nil, &FileError{File: file, Line: cn.Line, Err: err}
				}
				s.Cases = append(s.Cases, c)
			}
		default:
			return nil, fail(k.Line, "unknown key %q (row_defaults, defaults, cases)", k.Value)
		}
	}
	if len(s.Cases) == 0 {
		return nil, fail(1, "no cases")
	}
	names := map[string]int{}
	for _, c := range s.Cases {
		if prev, ok := names[c.Name]; ok {
			return nil, fail(c.Line, "case %q repeats the name of the case at line %d", c.Name, prev)
		}
		names[c.Name] = c.Line
	}
	return s, nil
}

func parseCase(n *yaml.Node) (Case, error) {
	c := Case{Line: n.Line, Feeds: map[string][]Row{}, Flag: map[string]string{}, Severity: map[string]string{}, Params: map[string]string{}}
	if n.Kind != yaml.MappingNode {
		return c, errors.New("a case is a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "name":
			c.Name = v.Value
		case "params":
			err = scalarMap(v, c.Params)
		case "flag":
			err = scalarMap(v, c.Flag)
		case "severity":
			err = scalarMap(v, c.Severity)
			for id, sev := range c.Severity {
				if sev != "high" && sev != "medium" && sev != "low" {
					err = fmt.Errorf("severity of %s: %q is not high, medium or low", id, sev)
				}
			}
		case "clear":
			if v.Kind != yaml.SequenceNode {
				err = errors.New("clear: a list of settlement ids")
				break
			}
			for _, id := range v.Content {
				c.Clear = append(c.Clear, id.Value)
			}
		default:
			if _, lerr := feeds.Lookup(k.Value); lerr != nil {
				err = fmt.Errorf("unknown key %q: a case has name, params, flag, clear, severity and feeds (%s)",
					k.Value, strings.Join(feeds.Names(), ", "))
				break
			}
			c.Feeds[k.Value], err = parseRows(k.Value, v)
		}
		if err != nil {
			return c, fmt.Errorf("case %q: %w", c.Name, err)
		}
	}
	if c.Name == "" {
		return c, errors.New("a case needs a name saying the behaviour it checks")
	}
	for _, id := range c.Clear {
		if _, ok := c.Flag[id]; ok {
			return c, fmt.Errorf("case %q: %s is both in flag and clear", c.Name, id)
		}
	}
	return c, nil
}

func scalarMap(n *yaml.Node, into map[string]string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i+1].Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: want a single value", n.Content[i].Value)
		}
		into[n.Content[i].Value] = n.Content[i+1].Value
	}
	return nil
}

func parseRows(feed string, n *yaml.Node) ([]Row, error) {
	if _, err := feeds.Lookup(feed); err != nil {
		return nil, err
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: a list of rows", feed)
	}
	var out []Row
	for _, rn := range n.Content {
		r, err := parseRow(feed, rn)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func parseRow(feed string, n *yaml.Node) (Row, error) {
	c, err := feeds.Lookup(feed)
	if err != nil {
		return Row{}, err
	}
	r := Row{Line: n.Line, Cells: map[string]Cell{}}
	if n.Kind != yaml.MappingNode {
		return r, fmt.Errorf("%s row at line %d: a mapping of column: value", feed, n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, ok := c.Column(k.Value); !ok {
			return r, fmt.Errorf("%s row at line %d: no column %q in the %s contract", feed, k.Line, k.Value, feed)
		}
		if v.Kind != yaml.ScalarNode {
			return r, fmt.Errorf("%s row at line %d: %s: want a single value", feed, v.Line, k.Value)
		}
		r.Cells[k.Value] = Cell{Text: v.Value, Null: v.Tag == "!!null"}
	}
	return r, nil
}

// rowsOf returns the rows a case loads into feed (defaults first), with the
// row defaults filled in, and the columns to write.
func (s *Suite) rowsOf(c Case, feed string) ([]Row, []string) {
	rows := append(append([]Row(nil), s.Defaults[feed]...), c.Feeds[feed]...)
	if len(rows) == 0 {
		return nil, nil
	}
	out := make([]Row, len(rows))
	for i, r := range rows {
		cells := map[string]Cell{}
		for k, v := range s.RowDefaults[feed] {
			cells[k] = v
		}
		for k, v := range r.Cells {
			cells[k] = v
		}
		out[i] = Row{Line: r.Line, Cells: cells}
	}
	// Every contract column is written, absent ones as nulls, as a delivery
	// from a fixed export would carry them.
	contract, _ := feeds.Lookup(feed)
	cols := make([]string, len(contract.Columns))
	for i, col := range contract.Columns {
		cols[i] = col.Name
	}
	return out, cols
}

// checkSuite checks a suite against its model: parameters and reasons that
// exist.
func (m *Model) checkSuite() error {
	if m.Tests == nil {
		return nil
	}
	for _, c := range m.Tests.Cases {
		fail := func(format string, args ...any) error {
			return &FileError{File: m.Tests.File, Line: c.Line, Err: fmt.Errorf("case %q: "+format, append([]any{c.Name}, args...)...)}
		}
		if _, err := m.Values(c.Params); err != nil {
			return fail("%v", err)
		}
		ids := make([]string, 0, len(c.Flag))
		for id := range c.Flag {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if !m.HasReason(c.Flag[id]) {
				return fail("flag %s: %q is not one of the model's reasons", id, c.Flag[id])
			}
		}
	}
	return nil
}
