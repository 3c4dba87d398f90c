// This file validates models before they go live: the query's shape
// checked by DuckDB without running it, then the fixture cases run in a
// scratch store through the real loader.
package models

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"collider/feeds"
	"collider/store"
)

// FeedLoader loads a directory of Parquet files into s as one delivery of
// feed. In production it is the jobs loader, so that fixture rows meet the
// same checks and derived columns as real deliveries; it is a function
// value because jobs runs models and models cannot import jobs.
type FeedLoader func(ctx context.Context, s *store.Store, feed, dir string) error

// Tester validates models and runs their fixtures in a scratch store.
type Tester struct {
	Load FeedLoader
	// Dir is where the scratch store lives; a temporary directory, removed
	// afterwards, when empty.
	Dir string
	Log *slog.Logger
	// Runner runs the fixtures; its clock judges suppressions.
	Runner Runner
	// Keep keeps the scratch store open between Validate calls, until
	// Close: opening one (migrations, regions) costs about half a second.
	// Without it each Validate opens and removes its own.
	Keep bool
	// Store holds the scratch store's limits (MemoryLimit, Threads, Lock);
	// 1GB and 2 threads when empty. The scratch store holds the feeds only,
	// and reads and writes files only in its own directory.
	Store store.Options

	sc *scratch
}

// Close removes a kept scratch store. A Tester is not safe for concurrent use.
func (t *Tester) Close() error {
	if t.sc != nil {
		t.sc.close()
		t.sc = nil
	}
	return nil
}

// CaseResult is the outcome of one fixture case.
type CaseResult struct {
	Model   string
	Case    string
	File    string
	Line    int
	Err     error // nil when the case passes
	Seconds float64
}

// Passed reports whether the case passed.
func (c CaseResult) Passed() bool { return c.Err == nil }

// Verdict says whether a model may go live.
type Verdict struct {
	Model *Model
	// Err is why the model is refused, with file and line; nil when its
	// query has the right shape and every fixture case passes.
	Err   error
	Cases []CaseResult
}

// Validate checks each model in one scratch store: the query prepares, uses
// only declared parameters and returns exactly settlement_id, reason,
// evidence; every declared parameter is used; the grouping (severity,
// narrative) runs; and every fixture case passes. The error is for the
// scratch store itself; a model's problems are in its Verdict.
func (t *Tester) Validate(ctx context.Context, ms ...*Model) ([]Verdict, error) {
	sc, err := t.openScratch(ctx)
	if err != nil {
		return nil, err
	}
	if !t.Keep {
		defer t.Close()
	}
	out := make([]Verdict, 0, len(ms))
	for _, m := range ms {
		v := Verdict{Model: m}
		if err := t.checkShape(ctx, sc, m); err != nil {
			v.Err = err
			out = append(out, v)
			continue
		}
		v.Cases = t.runCases(ctx, sc, m)
		for _, c := range v.Cases {
			if c.Err != nil && v.Err == nil {
				v.Err = c.Err
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// Test runs the fixture cases of the models (without refusing anything).
func (t *Tester) Test(ctx context.Context, ms ...*Model) ([]CaseResult, error) {
	verdicts, err := t.Validate(ctx, ms...)
	if err != nil {
		return nil, err
	}
	var out []CaseResult
	for _, v := range verdicts {
		if len(v.Cases) == 0 && v.Err != nil {
			out = append(out, CaseResult{Model: v.Model.Name, Case: "query", File: v.Model.File, Err: v.Err})
		}
		out = append(out, v.Cases...)
	}
	return out, nil
}

func (t *Tester) log() *slog.Logger {
	if t.Log == nil {
		return slog.Default()
	}
	return t.Log
}

// scratch is an empty store for fixtures, with one connection: temp tables
// and the loader's transactions stay apart by using the pool for loading
// and this connection for models.
type scratch struct {
	store   *store.Store
	conn    *sql.Conn
	dir     string
	cleanup func()
}

func (t *Tester) openScratch(ctx context.Context) (*scratch, error) {
	if t.sc != nil {
		return t.sc, nil
	}
	dir := t.Dir
	cleanup := func() {}
	if dir == "" {
		d, err := os.MkdirTemp("", "collider-fixtures-*")
		if err != nil {
			return nil, fmt.Errorf("fixtures: %w", err)
		}
		dir, cleanup = d, func() { os.RemoveAll(d) }
	}
	opts := t.Store
	if opts.MemoryLimit == "" {
		opts.MemoryLimit = "1GB"
	}
	if opts.Threads == 0 {
		opts.Threads = 2
	}
	opts.Dir, opts.Files, opts.FeedsOnly = filepath.Join(dir, "store"), []string{dir}, true
	s, err := store.Open(ctx, opts)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("fixtures: scratch store: %w", err)
	}
	conn, err := s.DB.Conn(ctx)
	if err == nil {
		// Fixture cases suppress nobody; the runner reads an empty table.
		_, err = conn.ExecContext(ctx, `CREATE TEMP TABLE fixture_suppressions (kind VARCHAR, model VARCHAR, person_id VARCHAR,
			institution_id VARCHAR, expires_at TIMESTAMP, revoked_at TIMESTAMP)`)
	}
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		s.Close()
		cleanup()
		return nil, fmt.Errorf("fixtures: %w", err)
	}
	t.sc = &scratch{store: s, conn: conn, dir: dir, cleanup: cleanup}
	return t.sc, nil
}

func (sc *scratch) close() {
	sc.conn.Close()
	sc.store.Close()
	sc.cleanup()
}

// checkShape asks DuckDB to prepare the query and checks what it returns
// and which parameters it uses, then runs the model and its grouping once
// on the empty store, which finds errors in the severity rules and
// narrative templates.
func (t *Tester) checkShape(ctx context.Context, sc *scratch, m *Model) error {
	if err := CheckQuery(ctx, sc.conn, m); err != nil {
		return err
	}
	if err := sc.reset(ctx); err != nil {
		return err
	}
	if _, err := t.Runner.Run(ctx, sc.conn, m, RunOptions{Prefix: "check", Suppressions: "fixture_suppressions"}); err != nil {
		return err
	}
	return nil
}

// WantColumns are the columns a model returns, in order.
var WantColumns = []string{"settlement_id", "reason", "evidence"}

// CheckQuery prepares the model's query on conn (without running it) and
// checks its columns and parameters. Errors name the model file and line.
func CheckQuery(ctx context.Context, conn *sql.Conn, m *Model) error {
	if err := oneQuery(ctx, conn, m); err != nil {
		return err
	}
	stmt := "SELECT * FROM (" + m.SQL + "\n) AS model_rows"
	info, err := describe(ctx, conn, stmt)
	if err != nil {
		return m.locate(ctx, conn, stmt, err)
	}
	var got []string
	for _, c := range info.columns {
		got = append(got, c.name)
	}
	if strings.Join(got, ",") != strings.Join(WantColumns, ",") {
		return &FileError{File: m.File, Line: m.queryLine,
			Err: fmt.Errorf("the query returns (%s); a model returns exactly (settlement_id, reason, evidence)", strings.Join(got, ", "))}
	}
	for _, c := range info.columns {
		if c.typ != duckdb.TYPE_VARCHAR {
			return &FileError{File: m.File, Line: m.queryLine,
				Err: fmt.Errorf("column %s is %s; settlement_id and reason are text and evidence a JSON object (json_object(...))", c.name, typeName(c.typ))}
		}
	}
	used := map[string]bool{}
	for _, p := range info.params {
		if _, ok := m.Param(p); !ok {
			return &FileError{File: m.File, Line: m.lineOf("$" + p), Err: (&unknownParamError{name: p})}
		}
		used[p] = true
	}
	for _, p := range m.Params {
		if used[p.Name] || paramIn(m.Severity.High, p.Name) || paramIn(m.Severity.Medium, p.Name) {
			continue
		}
		inNarrative := false
		for _, n := range m.Narratives {
			inNarrative = inNarrative || strings.Contains(n.Template, "{p."+p.Name+"}")
		}
		if !inNarrative {
			return &FileError{File: m.File, Line: headerParamLine(m, p.Name),
				Err: fmt.Errorf("parameter %s is declared but used nowhere ($%s in the query or severity, {p.%s} in a narrative)", p.Name, p.Name, p.Name)}
		}
	}
	return nil
}

func paramIn(expr, name string) bool {
	return regexp.MustCompile(`\$` + regexp.QuoteMeta(name) + `\b`).MatchString(expr)
}

func headerParamLine(m *Model, name string) int {
	for i, l := range strings.Split(m.Text, "\n") {
		if strings.Contains(l, "name: "+name) {
			return i + 1
		}
	}
	return 1
}

func typeName(t duckdb.Type) string {
	names := map[duckdb.Type]string{
		duckdb.TYPE_BOOLEAN: "BOOLEAN", duckdb.TYPE_INTEGER: "INTEGER", duckdb.TYPE_BIGINT: "BIGINT",
		duckdb.TYPE_DOUBLE: "DOUBLE", duckdb.TYPE_DECIMAL: "DECIMAL", duckdb.TYPE_TIMESTAMP: "TIMESTAMP",
		duckdb.TYPE_DATE: "DATE", duckdb.TYPE_STRUCT: "STRUCT", duckdb.TYPE_MAP: "MAP", duckdb.TYPE_LIST: "LIST",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("DuckDB type %d", t)
}

// reset empties the feed tables, so that each case starts from a fresh
// store without paying for a new one (migrations, regions).
func (sc *scratch) reset(ctx context.Context) error {
	tables := append(feeds.Names(), "rejects", "deliveries")
	for _, tb := range tables {
		if _, err := sc.conn.ExecContext(ctx, "DELETE FROM "+tb); err != nil {
			return fmt.Errorf("fixtures: reset %s: %w", tb, err)
		}
	}
	return nil
}

func (t *Tester) runCases(ctx context.Context, sc *scratch, m *Model) []CaseResult {
	if m.Tests == nil {
		return nil
	}
	var out []CaseResult
	for i, c := range m.Tests.Cases {
		start := time.Now()
		r := CaseResult{Model: m.Name, Case: c.Name, File: m.Tests.File, Line: c.Line}
		if err := t.runCase(ctx, sc, m, c, i); err != nil {
			var fe *FileError
			if errors.As(err, &fe) {
				r.Err = err
			} else {
				r.Err = &FileError{File: m.Tests.File, Line: c.Line, Err: fmt.Errorf("case %q: %w", c.Name, err)}
			}
		}
		r.Seconds = time.Since(start).Seconds()
		t.log().Debug("fixture case", "model", m.Name, "case", c.Name, "passed", r.Err == nil, "seconds", r.Seconds)
		out = append(out, r)
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

func (t *Tester) runCase(ctx context.Context, sc *scratch, m *Model, c Case, n int) error {
	if t.Load == nil {
		return errors.New("fixtures: no loader (Tester.Load)")
	}
	settlementIDs, err := t.loadCase(ctx, sc, m, c, n)
	if err != nil {
		return err
	}
	run, err := t.Runner.Run(ctx, sc.conn, m, RunOptions{Params: c.Params, Prefix: "fixture", Suppressions: "fixture_suppressions"})
	if err != nil {
		return err
	}
	got, err := caseFlags(ctx, sc.conn, run)
	if err != nil {
		return err
	}
	if problems := judgeCase(m, c, settlementIDs, got); len(problems) > 0 {
		return &FileError{File: m.Tests.File, Line: c.Line, Err: fmt.Errorf("case %q: %s", c.Name, strings.Join(problems, "; "))}
	}
	if m.Scope == ScopePerson {
		before := make(map[string]verdict, len(got))
		for id, f := range got {
			before[id] = verdict{reason: f.reason, evidence: f.evidence}
		}
		return t.checkPersonScope(ctx, sc, m, c, n, before)
	}
	return nil
}

// loadCase loads a case's rows into the scratch store through the real
// loader, feed by feed, and returns its settlement IDs; a row the loader
// rejects fails the case at its line.
func (t *Tester) loadCase(ctx context.Context, sc *scratch, m *Model, c Case, n int) (map[string]bool, error) {
	if err := sc.reset(ctx); err != nil {
		return nil, err
	}
	caseDir := filepath.Join(sc.dir, "cases", fmt.Sprintf("%s-%03d", m.Name, n))
	if err := os.RemoveAll(caseDir); err != nil {
		return nil, err
	}
	lineOfRow := map[string][]int{}
	settlementIDs := map[string]bool{}
	for _, feed := range feeds.Names() {
		rows, cols := m.Tests.rowsOf(c, feed)
		if len(rows) == 0 {
			continue
		}
		for _, r := range rows {
			lineOfRow[feed] = append(lineOfRow[feed], r.Line)
			if feed == "settlements" {
				settlementIDs[r.Cells["settlement_id"].Text] = true
			}
		}
		dir := filepath.Join(caseDir, feed)
		if err := writeParquet(ctx, sc.conn, filepath.Join(dir, "part-00000.parquet"), feed, cols, rows); err != nil {
			return nil, err
		}
		if err := t.Load(ctx, sc.store, feed, dir); err != nil {
			return nil, fmt.Errorf("load %s: %w", feed, err)
		}
	}
	return settlementIDs, rejectedRows(ctx, sc.conn, m.Tests.File, lineOfRow)
}

// flagged is what a case's run made of one settlement.
type flagged struct{ reason, kind, severity, narrative, evidence string }

// caseFlags reads a case's run: each flagged settlement with its clue.
func caseFlags(ctx context.Context, conn *sql.Conn, run *Run) (map[string]*flagged, error) {
	got := map[string]*flagged{}
	rows, err := conn.QueryContext(ctx, fmt.Sprintf(`SELECT f.settlement_id, f.reason, coalesce(json_type(f.evidence), 'NULL'),
		coalesce(c.severity, ''), coalesce(c.narrative, ''), coalesce(CAST(f.evidence AS VARCHAR), '')
		FROM %s f LEFT JOIN %s cs ON cs.settlement_id = f.settlement_id LEFT JOIN %s c ON c.clue_no = cs.clue_no`,
		run.FlagTable, run.ClueSettlementTable, run.ClueTable))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var f flagged
		if err := rows.Scan(&id, &f.reason, &f.kind, &f.severity, &f.narrative, &f.evidence); err != nil {
			return nil, err
		}
		got[id] = &f
	}
	return got, rows.Err()
}

// judgeCase holds a case's run to the case: what is flagged and why, what
// stays clear, evidence, narrative and severity.
func judgeCase(m *Model, c Case, settlementIDs map[string]bool, got map[string]*flagged) []string {
	var problems []string
	for _, id := range sortedKeys(c.Flag) {
		if !settlementIDs[id] {
			problems = append(problems, fmt.Sprintf("flag %s: no such settlement in the case", id))
			continue
		}
		f, ok := got[id]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s not flagged, want %s", id, c.Flag[id]))
		case f.reason != c.Flag[id]:
			problems = append(problems, fmt.Sprintf("%s flagged %s, want %s", id, f.reason, c.Flag[id]))
		}
	}
	for _, id := range c.Clear {
		if !settlementIDs[id] {
			problems = append(problems, fmt.Sprintf("clear %s: no such settlement in the case", id))
		}
	}
	for _, id := range sortedKeys(got) {
		f := got[id]
		if _, want := c.Flag[id]; !want {
			problems = append(problems, fmt.Sprintf("%s flagged %s, want it clear", id, f.reason))
			continue
		}
		if !m.HasReason(f.reason) {
			problems = append(problems, fmt.Sprintf("%s: reason %q is not declared in the header", id, f.reason))
		}
		if f.kind != "OBJECT" {
			problems = append(problems, fmt.Sprintf("%s: evidence is %s, want a JSON object", id, f.kind))
		}
		if f.narrative == "" || strings.Contains(f.narrative, "{") {
			problems = append(problems, fmt.Sprintf("%s: narrative %q is empty or unfinished", id, f.narrative))
		}
		for _, key := range missingEvidence(m.narrativeFor(f.reason), f.evidence) {
			problems = append(problems, fmt.Sprintf("%s: the narrative uses {e.%s}, which its evidence lacks", id, key))
		}
		if want, ok := c.Severity[id]; ok && f.severity != want {
			problems = append(problems, fmt.Sprintf("%s: severity %s, want %s", id, f.severity, want))
		}
	}
	return problems
}

// writeParquet writes fixture rows to a Parquet file with DuckDB, typed as
// a delivery would carry them: text for ids, codes, timestamps and dates,
// DOUBLE for amounts and coordinates. Values are bound, never pasted.
func writeParquet(ctx context.Context, conn *sql.Conn, path, feed string, cols []string, rows []Row) error {
	contract, _ := feeds.Lookup(feed)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	defs := make([]string, len(cols))
	marks := make([]string, len(cols))
	for i, name := range cols {
		col, _ := contract.Column(name)
		typ := "VARCHAR"
		if col.Type == feeds.Amount || col.Type == feeds.Number {
			typ = "DOUBLE"
		}
		defs[i] = fmt.Sprintf("%q %s", name, typ)
		marks[i] = "?"
	}
	if _, err := conn.ExecContext(ctx, "CREATE OR REPLACE TEMP TABLE fixture_rows ("+strings.Join(defs, ", ")+")"); err != nil {
		return fmt.Errorf("fixture %s: %w", feed, err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS fixture_rows")
	insert := "INSERT INTO fixture_rows VALUES (" + strings.Join(marks, ", ") + ")"
	for _, r := range rows {
		args := make([]any, len(cols))
		for i, name := range cols {
			if cell, ok := r.Cells[name]; ok && !cell.Null {
				args[i] = cell.Text
			}
		}
		if _, err := conn.ExecContext(ctx, insert, args...); err != nil {
			return fmt.Errorf("fixture %s row at line %d: %w", feed, r.Line, err)
		}
	}
	// COPY takes no parameters; the path is ours (the scratch directory).
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("COPY fixture_rows TO '%s' (FORMAT parquet)", strings.ReplaceAll(path, "'", "''"))); err != nil {
		return fmt.Errorf("fixture %s: write parquet: %w", feed, err)
	}
	return nil
}

// rejectedRows fails a case whose rows the loader rejected: a fixture row
// that never reaches the model would make a near-miss pass for nothing.
func rejectedRows(ctx context.Context, conn *sql.Conn, file string, lineOfRow map[string][]int) error {
	rows, err := conn.QueryContext(ctx, `SELECT d.feed, r.row_number, r.column_name, r.reason, coalesce(r.raw_value, '')
		FROM rejects r JOIN deliveries d ON d.delivery_id = r.delivery_id ORDER BY d.feed, r.row_number, r.column_name`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	first := 0
	for rows.Next() {
		var feed, col, reason, raw string
		var n int
		if err := rows.Scan(&feed, &n, &col, &reason, &raw); err != nil {
			return err
		}
		line := 0
		if n >= 1 && n <= len(lineOfRow[feed]) {
			line = lineOfRow[feed][n-1]
		}
		if first == 0 {
			first = line
		}
		problems = append(problems, fmt.Sprintf("%s row at line %d rejected by the loader: %s %s (%q)", feed, line, col, reason, raw))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return &FileError{File: file, Line: first, Err: errors.New(strings.Join(problems, "; "))}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// missingEvidence lists the {e.KEY} placeholders of a template that the
// evidence object does not hold (a key holding null is there): such a
// narrative would silently read with a gap.
func missingEvidence(tmpl, evidence string) []string {
	var doc map[string]any
	if json.Unmarshal([]byte(evidence), &doc) != nil {
		return nil // reported as not a JSON object
	}
	var out []string
	for _, mm := range placeholderRe.FindAllStringSubmatch(tmpl, -1) {
		key, ok := strings.CutPrefix(strings.TrimSpace(mm[1]), "e.")
		if !ok {
			continue
		}
		var cur any = doc
		for _, part := range strings.Split(key, ".") {
			if cur == nil {
				break // under a null: there, and empty
			}
			obj, isObj := cur.(map[string]any)
			if !isObj {
				out = append(out, key)
				break
			}
			v, has := obj[part]
			if !has {
				out = append(out, key)
				break
			}
			cur = v
		}
	}
	return out
}

// caseResultJSON is a CaseResult on the wire: the error as its text.
type caseResultJSON struct {
	Model   string  `json:"model"`
	Case    string  `json:"case"`
	File    string  `json:"file"`
	Line    int     `json:"line"`
	Passed  bool    `json:"passed"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}

// MarshalJSON writes the case with its error as text.
func (c CaseResult) MarshalJSON() ([]byte, error) {
	w := caseResultJSON{Model: c.Model, Case: c.Case, File: c.File, Line: c.Line, Passed: c.Err == nil, Seconds: c.Seconds}
	if c.Err != nil {
		w.Error = c.Err.Error()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *CaseResult) UnmarshalJSON(b []byte) error {
	var w caseResultJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = CaseResult{Model: w.Model, Case: w.Case, File: w.File, Line: w.Line, Seconds: w.Seconds}
	if w.Error != "" {
		c.Err = errors.New(w.Error)
	}
	return nil
}
