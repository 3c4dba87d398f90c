// This file runs a model against the store and groups what it flags into
// clues (线索): one per (model, person, institution), with amounts,
// severity, score and narrative. All of it is set work in DuckDB temp tables
// on one connection, because a run can flag hundreds of thousands of
// settlements; Go only orders the steps and reads the counts.
//
// A run has two halves: Start runs the model's query, and Group joins the
// flags of one or more models back to the settlements in one pass and
// groups each model's new ones into clues (a pipeline runs every model,
// then groups them all: one join over tens of millions of settlements
// rather than one per model). The steps leave these temp tables, named
// PREFIX_MODEL_…:
//
//	_flagged            the model's rows: settlement_id, reason, evidence
//	_clues              the clues, numbered clue_no by score (the casebook's columns)
//	_clue_settlements   (clue_no, model, settlement_id): what the casebook records as issued
//
// and the shared PREFIX__rows (one model grouped alone: PREFIX_MODEL_rows):
// the flags of every model grouped, joined back to settlements, with issued
// and suppressed marked. The intermediate tables (_r, _g, _lists, _n) are
// dropped when done.
package models

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"collider/domain"

	"github.com/duckdb/duckdb-go/v2"
)

// Runner runs models on a connection of the store. Temp tables belong to a
// connection, so every step of one run takes the same *sql.Conn.
type Runner struct {
	Log *slog.Logger
	// Now is the clock suppressions are judged by; time.Now when nil.
	Now func() time.Time
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// RunOptions are the choices of one run of one model.
type RunOptions struct {
	// Params override the header defaults (--set name=value).
	Params map[string]string
	// Exclude, when set, names a table or view with columns (model,
	// settlement_id) of settlements already issued, e.g. casebook.issued:
	// those of this model are left out, so that a later clue is built only
	// from new settlements.
	Exclude string
	// Prefix of the temp tables; "run" when empty. Two runs of one model on
	// one connection (a preview's draft and live) need different prefixes.
	Prefix string
	// Suppressions names the table of suppressions (the casebook's columns
	// kind, model, person_id, institution_id, expires_at, revoked_at);
	// casebook.suppressions when empty.
	Suppressions string
}

// Run is the outcome of running one model: counts, and the temp tables on
// the connection that hold its rows.
type Run struct {
	Model   string
	Version string
	Params  Values

	Flagged       int64 // rows the model returned
	Unmatched     int64 // of them, settlement ids not in settlements (dropped)
	AlreadyIssued int64 // of the rest, settlements already issued for the model (Exclude)
	Suppressed    int64 // of the rest, settlements under an active suppression
	Settlements   int64 // settlements in the clues
	Clues         int64

	FlagTable           string // settlement_id, reason, evidence
	RowTable            string // the flagged rows joined to settlements, with issued and suppressed
	ClueTable           string // clue_no, model, model_version, severity, score, reasons, person_id, … evidence
	ClueSettlementTable string // clue_no, model, settlement_id

	FlagSeconds float64 // the model's own query
	Seconds     float64 // with joining back, suppressions and grouping

	m    *Model
	base string // PREFIX_MODEL: the names of its temp tables
}

// Run runs m with its defaults and opt.Params, and groups the new flags into
// clues. The casebook publishes from r.ClueTable and r.ClueSettlementTable.
func (r *Runner) Run(ctx context.Context, conn *sql.Conn, m *Model, opt RunOptions) (*Run, error) {
	run, err := r.Start(ctx, conn, m, opt)
	if err != nil {
		return nil, err
	}
	if err := r.Group(ctx, conn, opt, run); err != nil {
		return nil, err
	}
	return run, nil
}

// Start runs m's query with its defaults and opt.Params into run.FlagTable:
// the first half of Run. Group does the rest.
func (r *Runner) Start(ctx context.Context, conn *sql.Conn, m *Model, opt RunOptions) (*Run, error) {
	start := time.Now()
	vals, err := m.Values(opt.Params)
	if err != nil {
		return nil, err
	}
	prefix := opt.Prefix
	if prefix == "" {
		prefix = "run"
	}
	if !identRe.MatchString(prefix) {
		return nil, fmt.Errorf("models: temp table prefix %q is not an identifier", prefix)
	}
	base := prefix + "_" + m.Name
	run := &Run{Model: m.Name, Version: Version(m, vals), Params: vals, FlagTable: base + "_flagged", m: m, base: base}
	if run.Flagged, err = r.Flag(ctx, conn, m, vals, run.FlagTable); err != nil {
		return nil, err
	}
	run.FlagSeconds = time.Since(start).Seconds()
	run.Seconds = run.FlagSeconds
	return run, nil
}

// identRe is what a temp table or excluded table may be called: the names
// are pasted into SQL (identifiers cannot be bound), so only plain ones pass.
var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$`)

// codeRe is what a reason code looks like: an undeclared reason that does
// is named in the error (a typo), any other text is not.
var codeRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// Flag runs the model's query with vals bound into the temp table `table`
// (settlement_id, reason, evidence) and returns how many rows it flagged.
// A model that flags one settlement twice is an error: one row per
// settlement is its contract.
func (r *Runner) Flag(ctx context.Context, conn *sql.Conn, m *Model, vals Values, table string) (int64, error) {
	if !identRe.MatchString(table) {
		return 0, fmt.Errorf("models: table name %q is not an identifier", table)
	}
	if err := oneQuery(ctx, conn, m); err != nil {
		return 0, err
	}
	// The model's text starts on the statement's first line, so DuckDB's
	// LINE n is the file's line n.
	q := fmt.Sprintf(`CREATE OR REPLACE TEMP TABLE %s AS SELECT CAST(settlement_id AS VARCHAR) AS settlement_id, CAST(reason AS VARCHAR) AS reason, CAST(evidence AS JSON) AS evidence FROM (%s
) AS model_rows`, table, m.SQL)
	args, err := bindArgs(ctx, conn, q, vals)
	if err != nil {
		return 0, m.locate(ctx, conn, q, err)
	}
	if _, err := conn.ExecContext(ctx, q, args...); err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("model %s: %w", m.Name, ctx.Err())
		}
		return 0, m.locate(ctx, conn, q, err)
	}
	var n, distinct int64
	var dup sql.NullString
	if err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*), count(DISTINCT settlement_id),
		(SELECT settlement_id FROM %[1]s GROUP BY settlement_id HAVING count(*) > 1 ORDER BY settlement_id LIMIT 1) FROM %[1]s`, table)).Scan(&n, &distinct, &dup); err != nil {
		return 0, fmt.Errorf("model %s: count flagged: %w", m.Name, err)
	}
	if n != distinct {
		return 0, &FileError{File: m.File, Line: m.queryLine,
			Err: fmt.Errorf("the query returns settlement %s more than once (%d rows, %d settlements); return one row per settlement, e.g. ROW_NUMBER() in a subquery", dup.String, n, distinct)}
	}
	// A reason is a code the header declares: it picks the label and the
	// narrative, and it is no channel for other text (a modeler sees
	// personal data masked).
	declared := make([]string, len(m.Reasons))
	for i, rs := range m.Reasons {
		declared[i] = rs.Code
	}
	var stray sql.NullString
	var strays int64
	err = conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*), min(coalesce(reason, '(null)')) FROM %s
		WHERE reason IS NULL OR NOT list_contains(CAST(? AS VARCHAR[]), reason)`, table), declared).Scan(&strays, &stray)
	if err != nil {
		return 0, fmt.Errorf("model %s: check reasons: %w", m.Name, err)
	}
	if strays > 0 {
		// The value is named only when it looks like a code (a typo): any
		// other text may be personal data, and errors reach modelers.
		what := "a value that is not a reason code"
		if codeRe.MatchString(stray.String) || stray.String == "(null)" {
			what = strconv.Quote(stray.String)
		}
		return 0, &FileError{File: m.File, Line: m.queryLine,
			Err: fmt.Errorf("the query returns reason %s in %d rows, which the header's reasons do not declare (%s)", what, strays, strings.Join(declared, ", "))}
	}
	return n, nil
}

// group groups one run that Flag filled (the preview's draft) into clues
// in temp tables base_rows, base_clues and base_clue_settlements.
func (r *Runner) group(ctx context.Context, conn *sql.Conn, m *Model, vals Values, run *Run, opt RunOptions, base string) error {
	run.m, run.Params, run.base = m, vals, base
	return r.Group(ctx, conn, opt, run)
}

// Group joins the flags of runs (each from Start, all on conn) back to the
// settlements in one pass — with each person's household name, marking the
// settlements already issued for their model (opt.Exclude, optional) and
// those under an active suppression — then groups each run's new flags
// into its clues and fills its counts and table names.
func (r *Runner) Group(ctx context.Context, conn *sql.Conn, opt RunOptions, runs ...*Run) error {
	if len(runs) == 0 {
		return nil
	}
	start := time.Now()
	rowTable, err := r.joinFlags(ctx, conn, opt, runs)
	if err != nil {
		return err
	}
	joined := time.Since(start).Seconds() / float64(len(runs)) // the join's share, counted to each run
	counts, err := countRows(ctx, conn, rowTable)
	if err != nil {
		return err
	}
	for _, run := range runs {
		t0 := time.Now()
		c := counts[run.Model]
		run.AlreadyIssued, run.Suppressed = c[1], c[2]
		run.Unmatched = run.Flagged - c[0]
		if run.Unmatched > 0 {
			r.log().Warn("model flagged settlements that are not loaded", "model", run.Model, "unmatched", run.Unmatched)
		}
		if err := r.clues(ctx, conn, run); err != nil {
			return err
		}
		run.Seconds = run.FlagSeconds + joined + time.Since(t0).Seconds()
		r.log().Info("model run", "model", run.Model, "version", run.Version[:12], "flagged", run.Flagged, "already_issued", run.AlreadyIssued,
			"suppressed", run.Suppressed, "unmatched", run.Unmatched, "clues", run.Clues, "seconds", run.Seconds)
	}
	return nil
}

// joinFlags joins every run's flags back to their settlements (and the
// residents' names) in one temp table, marking those already issued and
// those suppressed; it returns the table's name.
func (r *Runner) joinFlags(ctx context.Context, conn *sql.Conn, opt RunOptions, runs []*Run) (string, error) {
	exclude, suppressions := opt.Exclude, opt.Suppressions
	if suppressions == "" {
		suppressions = "casebook.suppressions"
	}
	if exclude != "" && !identRe.MatchString(exclude) {
		return "", fmt.Errorf("models: excluded table %q is not an identifier", exclude)
	}
	if !identRe.MatchString(suppressions) {
		return "", fmt.Errorf("models: suppressions table %q is not an identifier", suppressions)
	}
	rowTable := runs[0].base + "_rows"
	if len(runs) > 1 {
		prefix := opt.Prefix
		if prefix == "" {
			prefix = "run"
		}
		rowTable = prefix + "__rows" // model names start with a letter: no model's table is called so
	}
	if !identRe.MatchString(rowTable) {
		return "", fmt.Errorf("models: temp table name %q is not an identifier", rowTable)
	}
	args := map[string]any{"collider_now": domain.DBTime(r.now())}
	flags := make([]string, len(runs))
	for i, run := range runs {
		if run.m == nil || !identRe.MatchString(run.FlagTable) || !identRe.MatchString(run.base) {
			return "", fmt.Errorf("models: run of %s was not started", run.Model)
		}
		key := fmt.Sprintf("collider_model_%d", i)
		args[key] = run.Model
		flags[i] = fmt.Sprintf("SELECT CAST($%s AS VARCHAR) AS model, settlement_id, reason, evidence FROM %s", key, run.FlagTable)
		run.RowTable, run.ClueTable, run.ClueSettlementTable = rowTable, run.base+"_clues", run.base+"_clue_settlements"
	}
	issued := "false"
	if exclude != "" {
		issued = fmt.Sprintf("f.settlement_id IN (SELECT settlement_id FROM %s x WHERE x.model = f.model)", exclude)
	}
	// A suppression holds from its creation until it expires or is revoked;
	// the clock is bound so that tests and reruns can fix it. Uncorrelated
	// IN lists become hash semi-joins, whatever the number of flags.
	active := `SELECT * FROM ` + suppressions + ` WHERE revoked_at IS NULL
		AND (expires_at IS NULL OR expires_at > CAST($collider_now AS TIMESTAMP))`
	q := fmt.Sprintf(`CREATE OR REPLACE TEMP TABLE %[1]s AS
WITH active AS (%[4]s),
flags AS (%[3]s)
SELECT f.model, f.settlement_id, f.reason, f.evidence, s.person_id, s.person_name, s.institution_id, s.visit_type,
       s.visit_start, s.visit_end, s.total_amount, s.fund_amount, res.name AS resident_name,
       %[2]s AS issued,
       (s.person_id IN (SELECT person_id FROM active WHERE kind = 'person')
        OR s.institution_id IN (SELECT institution_id FROM active WHERE kind = 'institution')
        OR s.person_id IN (SELECT person_id FROM active a WHERE a.kind = 'model_person' AND a.model = f.model)) AS suppressed
FROM flags f
JOIN settlements s ON s.settlement_id = f.settlement_id
LEFT JOIN residents res ON res.person_id = s.person_id`, rowTable, issued, strings.Join(flags, "\nUNION ALL "), active)
	bound, err := bindArgs(ctx, conn, q, args)
	if err == nil {
		_, err = conn.ExecContext(ctx, q, bound...)
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("models: join flagged settlements: %w", ctx.Err())
		}
		return "", fmt.Errorf("models: join flagged settlements: %w", err)
	}
	return rowTable, nil
}

// countRows counts, per model, the joined flags, those already issued and
// those suppressed.
func countRows(ctx context.Context, conn *sql.Conn, rowTable string) (map[string][3]int64, error) {
	counts := map[string][3]int64{}
	rows, err := conn.QueryContext(ctx, fmt.Sprintf(`SELECT model, count(*), count(*) FILTER (WHERE issued),
		count(*) FILTER (WHERE NOT issued AND suppressed) FROM %s GROUP BY model`, rowTable))
	if err != nil {
		return nil, fmt.Errorf("models: count rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var model string
		var c [3]int64
		if err := rows.Scan(&model, &c[0], &c[1], &c[2]); err != nil {
			return nil, err
		}
		counts[model] = c
	}
	return counts, rows.Err()
}

// clues groups one run's new, unsuppressed rows of the shared row table
// into its clue tables.
func (r *Runner) clues(ctx context.Context, conn *sql.Conn, run *Run) error {
	m, base := run.m, run.base
	all := map[string]any{}
	for k, v := range run.Params {
		all[k] = v
	}
	all["collider_model"] = m.Name
	all["collider_version"] = run.Version
	steps, err := clueSteps(m, base, run)
	if err != nil {
		return &FileError{File: m.File, Line: m.rulesLine, Err: err}
	}
	for _, st := range steps {
		if err := r.exec(ctx, conn, m, st.what, st.sql, all); err != nil {
			return err
		}
	}
	for _, t := range []string{"_r", "_g", "_lists", "_n"} {
		if _, err := conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+base+t); err != nil {
			return fmt.Errorf("model %s: %w", m.Name, err)
		}
	}
	if err := conn.QueryRowContext(ctx, fmt.Sprintf("SELECT (SELECT count(*) FROM %s), (SELECT count(*) FROM %s)",
		run.ClueTable, run.ClueSettlementTable)).Scan(&run.Clues, &run.Settlements); err != nil {
		return fmt.Errorf("model %s: count clues: %w", m.Name, err)
	}
	return nil
}

type step struct{ what, sql string }

// clueStepsSQL are the statements that group a model's flags into clues
// (steps/clues.sql), each after its `-- step:` line.
//
//go:embed steps/clues.sql
var clueStepsSQL string

var clueStepsTemplate = template.Must(template.New("clues.sql").Option("missingkey=error").Parse(clueStepsSQL))

// clueTables are the names clues.sql is filled in with.
type clueTables struct {
	Ordered, Sums, Lists, Numbers, Rows, Clues, ClueSettlements string
	High, Medium, Narrative                                     string // SQL expressions
}

// clueSteps are the statements that group the new, unsuppressed flags into
// clues (steps/clues.sql), filled in for one model's run.
func clueSteps(m *Model, base string, run *Run) ([]step, error) {
	narrative, err := narrativeSQL(m)
	if err != nil {
		return nil, err
	}
	rule := func(expr string) string {
		if expr == "" {
			return "false"
		}
		return "(" + expr + ")"
	}
	var text strings.Builder
	if err := clueStepsTemplate.Execute(&text, clueTables{Ordered: base + "_r", Sums: base + "_g", Lists: base + "_lists", Numbers: base + "_n",
		Rows: run.RowTable, Clues: run.ClueTable, ClueSettlements: run.ClueSettlementTable,
		High: rule(m.Severity.High), Medium: rule(m.Severity.Medium), Narrative: narrative}); err != nil {
		return nil, err
	}
	var steps []step
	for _, part := range strings.Split(text.String(), "-- step: ")[1:] {
		what, sql, _ := strings.Cut(part, "\n")
		steps = append(steps, step{what: strings.TrimSpace(what), sql: strings.TrimSpace(sql)})
	}
	return steps, nil
}

// exec runs one of the runner's statements with bound parameters; errors
// in the parts the model wrote (severity, narrative) name the model file.
func (r *Runner) exec(ctx context.Context, conn *sql.Conn, m *Model, what, q string, vals map[string]any) error {
	start := time.Now()
	args, err := bindArgs(ctx, conn, q, vals)
	if err == nil {
		_, err = conn.ExecContext(ctx, q, args...)
	}
	r.log().Debug("model step", "model", m.Name, "step", what, "seconds", time.Since(start).Seconds())
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("model %s: %s: %w", m.Name, what, ctx.Err())
		}
		return &FileError{File: m.File, Line: m.rulesLine, Err: fmt.Errorf("%s (check the header's severity and narrative): %w", what, err)}
	}
	return nil
}

var duckLineRe = regexp.MustCompile(`LINE (\d+):`)

// locate turns a DuckDB error about a statement holding the model's text
// (starting on the statement's first line) into a FileError at the file's
// line. DuckDB reports an error's position in characters but renders LINE n
// by counting bytes, so any Chinese before the error shifts the line; the
// statement is prepared again with every non-ASCII character spelled in
// ASCII (newlines kept) to read the true line.
func (m *Model) locate(ctx context.Context, conn *sql.Conn, stmt string, err error) error {
	if !duckLineRe.MatchString(err.Error()) || isASCII(stmt) {
		return m.queryError(err)
	}
	if _, err2 := describe(ctx, conn, asciiSpelled(stmt)); err2 != nil {
		if mm := duckLineRe.FindStringSubmatch(err2.Error()); mm != nil {
			fe := m.queryError(err).(*FileError)
			fe.Line, _ = strconv.Atoi(mm[1])
			return fe
		}
	}
	return m.queryError(err)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// asciiSpelled replaces each non-ASCII character with u and its hex code:
// distinct characters stay distinct, so identifiers still match.
func asciiSpelled(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "u%x", r)
		}
	}
	return b.String()
}

// queryError turns a DuckDB error about the model's query into a FileError
// at the file's line: DuckDB's LINE n, the line of an undeclared $name, or
// the query's first line.
func (m *Model) queryError(err error) error {
	var up *unknownParamError
	if errors.As(err, &up) {
		return &FileError{File: m.File, Line: m.lineOf("$" + up.name), Err: err}
	}
	line := m.queryLine
	msg := err.Error()
	var de *duckdb.Error
	if errors.As(err, &de) {
		msg = de.Msg
	}
	if mm := duckLineRe.FindStringSubmatch(msg); mm != nil {
		if n, _ := strconv.Atoi(mm[1]); n > 0 {
			line = n
		}
	}
	// DuckDB repeats the line with a caret under it; the file:line says it.
	if i := strings.Index(msg, "\n\nLINE "); i >= 0 {
		msg = msg[:i]
	}
	return &FileError{File: m.File, Line: line, Err: &duckError{msg: strings.TrimSpace(msg), err: err}}
}

// duckError is a DuckDB error shortened for a file:line message, still
// unwrapping to the driver's error.
type duckError struct {
	msg string
	err error
}

func (e *duckError) Error() string { return e.msg }
func (e *duckError) Unwrap() error { return e.err }
