// This file holds a model's parameters: their types, defaults, the values
// a run uses (defaults with --set overrides) and how they are bound.
package models

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/duckdb/duckdb-go/v2"
	"gopkg.in/yaml.v3"
)

// ParamType is the type of a model parameter.
type ParamType string

// Parameter types. Values are bound as int64, float64, string and bool;
// the query casts them where DuckDB needs a type (CAST($grace_days AS INTEGER)).
const (
	Integer ParamType = "integer"
	Number  ParamType = "number"
	String  ParamType = "string"
	Boolean ParamType = "boolean"
)

// Param is one declared parameter with its default.
type Param struct {
	Name        string
	Type        ParamType
	Default     any // int64, float64, string or bool, by Type
	Description string
}

func newParam(py paramYAML) (Param, error) {
	p := Param{Name: py.Name, Type: ParamType(py.Type), Description: strings.TrimSpace(py.Description)}
	if !nameRe.MatchString(p.Name) {
		return p, fmt.Errorf("name %q must be lower snake case", p.Name)
	}
	if strings.HasPrefix(p.Name, reservedParamPrefix) {
		return p, fmt.Errorf("names starting with %q are kept for the runner", reservedParamPrefix)
	}
	switch p.Type {
	case Integer, Number, String, Boolean:
	case "":
		return p, errors.New("type is required (integer, number, string or boolean)")
	default:
		return p, fmt.Errorf("type %q is not one of integer, number, string, boolean", py.Type)
	}
	if py.Default.Kind != yaml.ScalarNode || py.Default.Tag == "!!null" {
		return p, errors.New("default is required")
	}
	v, err := p.Parse(py.Default.Value)
	if err != nil {
		return p, fmt.Errorf("default: %w", err)
	}
	p.Default = v
	if p.Description == "" {
		return p, errors.New("description is required")
	}
	return p, nil
}

// Parse converts a text value (a header default or a --set override) to
// the parameter's type.
func (p Param) Parse(s string) (any, error) {
	s = strings.TrimSpace(s)
	switch p.Type {
	case Integer:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return v, nil
	case Number:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return v, nil
	case Boolean:
		v, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", s)
		}
		return v, nil
	default:
		return s, nil
	}
}

// Values are the effective parameters of a run: every declared parameter,
// its default or an override.
type Values map[string]any

// JSON is the canonical JSON of the values (sorted keys): what the version
// hashes and the casebook records.
func (v Values) JSON() string { return canonicalJSON(v) }

// Values returns the model's defaults with the overrides applied. An
// override of an undeclared parameter or of the wrong type is an error.
func (m *Model) Values(overrides map[string]string) (Values, error) {
	v := Values{}
	for _, p := range m.Params {
		v[p.Name] = p.Default
	}
	names := make([]string, 0, len(overrides))
	for name := range overrides {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p, ok := m.Param(name)
		if !ok {
			return nil, fmt.Errorf("model %s has no parameter %q (parameters: %s)", m.Name, name, strings.Join(m.paramNames(), ", "))
		}
		val, err := p.Parse(overrides[name])
		if err != nil {
			return nil, fmt.Errorf("model %s: parameter %s: %w", m.Name, name, err)
		}
		v[name] = val
	}
	return v, nil
}

func (m *Model) paramNames() []string {
	out := make([]string, len(m.Params))
	for i, p := range m.Params {
		out[i] = p.Name
	}
	return out
}

// ParseSets reads --set key=value arguments into overrides.
func ParseSets(sets []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--set %q: want name=value", s)
		}
		out[k] = v
	}
	return out, nil
}

// statementInfo is what DuckDB tells of a prepared statement without
// running it: the named parameters it uses and its result columns.
type statementInfo struct {
	params  []string
	columns []column
}

type column struct {
	name string
	typ  duckdb.Type
}

// describe prepares query on conn and reports its parameters and columns.
// Preparing binds the query against the schema, so unknown tables and
// columns are found here, with DuckDB's position.
func describe(ctx context.Context, conn *sql.Conn, query string) (statementInfo, error) {
	var info statementInfo
	err := conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("driver connection cannot prepare")
		}
		st, err := pc.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		defer st.Close()
		ds, ok := st.(*duckdb.Stmt)
		if !ok {
			return fmt.Errorf("not a DuckDB statement: %T", st)
		}
		for i := 1; i <= ds.NumInput(); i++ {
			name, err := ds.ParamName(i)
			if err != nil {
				return err
			}
			info.params = append(info.params, name)
		}
		n, err := ds.ColumnCount()
		if err != nil {
			return err
		}
		for i := range n {
			name, err := ds.ColumnName(i)
			if err != nil {
				return err
			}
			typ, err := ds.ColumnType(i)
			if err != nil {
				return err
			}
			info.columns = append(info.columns, column{name: name, typ: typ})
		}
		return nil
	})
	return info, err
}

// bindArgs prepares query to learn the $names it uses and returns them as
// named arguments from vals. A name that vals lacks is an error rather than
// a surprise: duckdb-go binds an unknown name by position.
func bindArgs(ctx context.Context, conn *sql.Conn, query string, vals map[string]any) ([]any, error) {
	info, err := describe(ctx, conn, query)
	if err != nil {
		return nil, err
	}
	args := make([]any, 0, len(info.params))
	for _, name := range info.params {
		v, ok := vals[name]
		if !ok {
			return nil, &unknownParamError{name: name}
		}
		args = append(args, sql.Named(name, v))
	}
	return args, nil
}

type unknownParamError struct{ name string }

func (e *unknownParamError) Error() string {
	return fmt.Sprintf("$%s is not a declared parameter (declare it under params: in the header)", e.name)
}

// oneQuery refuses a model whose text is not exactly one SELECT query, as
// DuckDB's own parser reads it (json_serialize_sql parses and runs
// nothing). It runs before the text is prepared: preparing several
// statements runs every one but the last.
func oneQuery(ctx context.Context, conn *sql.Conn, m *Model) error {
	var doc string
	if err := conn.QueryRowContext(ctx, "SELECT CAST(json_serialize_sql(CAST(? AS VARCHAR)) AS VARCHAR)", "SELECT * FROM ("+m.SQL+"\n) AS model_rows").Scan(&doc); err != nil {
		return fmt.Errorf("model %s: parse: %w", m.Name, err)
	}
	var parsed struct {
		Error      bool              `json:"error"`
		ErrorType  string            `json:"error_type"`
		Statements []json.RawMessage `json:"statements"`
	}
	if err := json.Unmarshal([]byte(doc), &parsed); err != nil {
		return fmt.Errorf("model %s: parse: %w", m.Name, err)
	}
	if parsed.Error && parsed.ErrorType == "parser" {
		return nil // a syntax error: preparing reports it with its line, running nothing
	}
	if parsed.Error || len(parsed.Statements) != 1 {
		return &FileError{File: m.File, Line: m.queryLine,
			Err: errors.New("a model is one SELECT query; other statements (COPY, ATTACH, SET, LOAD, INSTALL, PRAGMA …) and several statements are not allowed")}
	}
	return nil
}

// WithDefaults returns a copy of the model whose defaults are its own with
// the overrides applied: a draft that changes parameters, made live. Its
// version (the text and the effective parameters) is the draft's.
func (m *Model) WithDefaults(overrides map[string]string) (*Model, error) {
	vals, err := m.Values(overrides)
	if err != nil {
		return nil, err
	}
	c := *m
	c.Params = make([]Param, len(m.Params))
	for i, p := range m.Params {
		p.Default = vals[p.Name]
		c.Params[i] = p
	}
	return &c, nil
}
