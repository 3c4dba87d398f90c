// This file runs a model against the store and groups what it flags into
// clues (线索): one per (model, person, institution), with amounts,
// severity, score and narrative. All of it is set work in DuckDB temp tables
// on one connection, because a run can flag hundreds of thousands of
// settlements; Go only orders the steps and reads the counts.
//
// The steps, each a temp table named PREFIX_MODEL_…:
//
//	_flagged            the model's rows: settlement_id, reason, evidence
//	_rows               joined back to settlements; issued and suppressed marked
//	_clues              the clues, numbered clue_no by score (the casebook's columns)
//	_clue_settlements   (clue_no, model, settlement_id): what the casebook records as issued
package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/duckdb/duckdb-go/v2"
)

// Runner runs models on a connection of the store. Temp tables belong to a
// connection, so every step of one run takes the same *sql.Conn.
type Runner struct {
	Log *slog.Logger
	// Now is the clock suppressions are judged by; time.Now when nil.
	Now func() time.Time
}

// chinaTime is China Standard Time: the store keeps wall-clock times in it,
// and China has no daylight saving, so a fixed zone needs no tz database.
var chinaTime = time.FixedZone("CST", 8*3600)

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

	Seconds float64
}

// Run runs m with its defaults and opt.Params, and groups the new flags into
// clues. The casebook publishes from r.ClueTable and r.ClueSettlementTable.
func (r *Runner) Run(ctx context.Context, conn *sql.Conn, m *Model, opt RunOptions) (*Run, error) {
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
	run := &Run{Model: m.Name, Version: Version(m, vals), Params: vals, FlagTable: base + "_flagged"}
	log := r.log().With("model", m.Name, "version", run.Version[:12])
	if run.Flagged, err = r.Flag(ctx, conn, m, vals, run.FlagTable); err != nil {
		return nil, err
	}
	if err := r.group(ctx, conn, m, vals, run, opt.Exclude, base); err != nil {
		return nil, err
	}
	run.Seconds = time.Since(start).Seconds()
	log.Info("model run", "flagged", run.Flagged, "already_issued", run.AlreadyIssued, "suppressed", run.Suppressed,
		"unmatched", run.Unmatched, "clues", run.Clues, "seconds", run.Seconds)
	return run, nil
}

// identRe is what a temp table or excluded table may be called: the names
// are pasted into SQL (identifiers cannot be bound), so only plain ones pass.
var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$`)

// Flag runs the model's query with vals bound into the temp table `table`
// (settlement_id, reason, evidence) and returns how many rows it flagged.
// A model that flags one settlement twice is an error: one row per
// settlement is its contract.
func (r *Runner) Flag(ctx context.Context, conn *sql.Conn, m *Model, vals Values, table string) (int64, error) {
	if !identRe.MatchString(table) {
		return 0, fmt.Errorf("models: table name %q is not an identifier", table)
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
	return n, nil
}

// group joins the rows of run.FlagTable back to the settlements, marks the
// ones already issued (exclude, optional) and suppressed, and groups the
// rest into clues in temp tables base_rows, base_clues and
// base_clue_settlements; it fills run's counts and table names.
func (r *Runner) group(ctx context.Context, conn *sql.Conn, m *Model, vals Values, run *Run, exclude, base string) error {
	if exclude != "" && !identRe.MatchString(exclude) {
		return fmt.Errorf("models: excluded table %q is not an identifier", exclude)
	}
	if !identRe.MatchString(base) || !identRe.MatchString(run.FlagTable) {
		return fmt.Errorf("models: temp table name %q is not an identifier", base)
	}
	run.RowTable, run.ClueTable, run.ClueSettlementTable = base+"_rows", base+"_clues", base+"_clue_settlements"
	all := map[string]any{}
	for k, v := range vals {
		all[k] = v
	}
	all["collider_model"] = m.Name
	all["collider_version"] = run.Version
	all["collider_now"] = r.now().In(chinaTime).Format("2006-01-02 15:04:05")

	issued := "false"
	if exclude != "" {
		issued = fmt.Sprintf("EXISTS (SELECT 1 FROM %s x WHERE x.model = $collider_model AND x.settlement_id = f.settlement_id)", exclude)
	}
	// A suppression holds from its creation until it expires or is revoked;
	// the clock is bound so that tests and reruns can fix it.
	rows := fmt.Sprintf(`CREATE OR REPLACE TEMP TABLE %s AS
SELECT f.settlement_id, f.reason, f.evidence, s.person_id, s.person_name, s.institution_id, s.visit_type,
       s.visit_start, s.visit_end, s.total_amount, s.fund_amount,
       %s AS issued,
       EXISTS (SELECT 1 FROM casebook.suppressions p
               WHERE p.revoked_at IS NULL
                 AND (p.expires_at IS NULL OR p.expires_at > CAST($collider_now AS TIMESTAMP))
                 AND ((p.kind = 'person' AND p.person_id = s.person_id)
                   OR (p.kind = 'institution' AND p.institution_id = s.institution_id)
                   OR (p.kind = 'model_person' AND p.model = $collider_model AND p.person_id = s.person_id))) AS suppressed
FROM %s f JOIN settlements s ON s.settlement_id = f.settlement_id`, run.RowTable, issued, run.FlagTable)
	if err := r.exec(ctx, conn, m, "join flagged settlements", rows, all); err != nil {
		return err
	}
	var matched int64
	if err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE issued),
		count(*) FILTER (WHERE NOT issued AND suppressed) FROM %s`, run.RowTable)).Scan(&matched, &run.AlreadyIssued, &run.Suppressed); err != nil {
		return fmt.Errorf("model %s: count rows: %w", m.Name, err)
	}
	run.Unmatched = run.Flagged - matched
	if run.Unmatched > 0 {
		r.log().Warn("model flagged settlements that are not loaded", "model", m.Name, "unmatched", run.Unmatched)
	}

	clues, err := clueSQL(m, run.ClueTable, run.RowTable)
	if err != nil {
		return &FileError{File: m.File, Line: m.rulesLine, Err: err}
	}
	if err := r.exec(ctx, conn, m, "group clues", clues, all); err != nil {
		return err
	}
	links := fmt.Sprintf(`CREATE OR REPLACE TEMP TABLE %s AS
SELECT c.clue_no, c.model, x.settlement_id
FROM %s x JOIN %s c ON c.person_id = x.person_id AND c.institution_id = x.institution_id
WHERE NOT x.issued AND NOT x.suppressed`, run.ClueSettlementTable, run.RowTable, run.ClueTable)
	if err := r.exec(ctx, conn, m, "link clue settlements", links, all); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, fmt.Sprintf("SELECT (SELECT count(*) FROM %s), (SELECT count(*) FROM %s)",
		run.ClueTable, run.ClueSettlementTable)).Scan(&run.Clues, &run.Settlements); err != nil {
		return fmt.Errorf("model %s: count clues: %w", m.Name, err)
	}
	return nil
}

// clueSQL is the grouping query. Severity rules and narrative templates come
// from the model's header; everything a rule may refer to is a column of r:
// settlement_id, reason, evidence, person_id, person_name, institution_id,
// visit_type, visit_start, visit_end, total_amount, fund_amount, and
// recent_90d (how many of the clue's settlements fall in the 90 days up to
// this one: repeated purchases at one pharmacy).
func clueSQL(m *Model, table, rows string) (string, error) {
	narrative, err := narrativeSQL(m)
	if err != nil {
		return "", err
	}
	rule := func(expr string) string {
		if expr == "" {
			return "false"
		}
		return "(" + expr + ")"
	}
	return fmt.Sprintf(`CREATE OR REPLACE TEMP TABLE %[1]s AS
WITH r AS (
    SELECT x.*,
           count(*) OVER (PARTITION BY person_id, institution_id ORDER BY visit_start
                          RANGE BETWEEN INTERVAL 90 DAYS PRECEDING AND CURRENT ROW) AS recent_90d,
           row_number() OVER (PARTITION BY person_id, institution_id ORDER BY visit_start, settlement_id) AS rn
    FROM %[2]s x
    WHERE NOT x.issued AND NOT x.suppressed
),
g AS (
    SELECT person_id, institution_id,
           max(person_name) AS settlement_name,
           count(*) AS settlement_count,
           -- Ordered aggregates (string_agg … ORDER BY) sort per group and
           -- cost ten times more over hundreds of thousands of clues: the
           -- lists are sorted instead, on the visit's position rn.
           CASE WHEN count(*) = 1 THEN max(settlement_id)
                ELSE regexp_replace(array_to_string(list_sort(list(lpad(CAST(rn AS VARCHAR), 10, '0') || settlement_id)), ';'),
                                    '(^|;)[0-9]{10}', '\1', 'g') END AS settlement_ids,
           array_to_string(list_sort(list_distinct(list(reason))), ';') AS reasons,
           min(visit_start) AS first_visit,
           max(visit_start) AS last_visit,
           CAST(sum(total_amount) AS DECIMAL(18,2)) AS total_amount,
           CAST(sum(fund_amount) AS DECIMAL(18,2)) AS fund_amount,
           CASE WHEN %[3]s THEN 'high' WHEN %[4]s THEN 'medium' ELSE 'low' END AS severity,
           max(CASE WHEN rn = 1 THEN reason END) AS rep_reason,
           max(CASE WHEN rn = 1 THEN CAST(evidence AS VARCHAR) END) AS rep_evidence,
           max(CASE WHEN rn = 1 THEN visit_type END) AS rep_visit_type,
           max(CASE WHEN rn = 1 THEN visit_start END) AS rep_visit_start,
           max(CASE WHEN rn = 1 THEN visit_end END) AS rep_visit_end,
           CAST(to_json(list_sort(list({
               'n': rn, 'settlement_id': settlement_id, 'reason': reason, 'visit_type': visit_type,
               'visit_start': visit_start, 'visit_end': visit_end,
               'total_amount': total_amount, 'fund_amount': fund_amount, 'evidence': evidence}))) AS VARCHAR) AS evidence_list
    FROM r
    GROUP BY person_id, institution_id
),
c AS MATERIALIZED (
    SELECT g.*,
           coalesce(g.settlement_name, res.name) AS person_name,
           coalesce(i.name, '未登记机构') AS institution_name,
           -- 线索下发市州: the institution's city; a province-level or unknown
           -- institution goes to the province (its code's first two digits).
           CASE WHEN i.region_code IS NULL THEN substr(g.institution_id, 2, 2) || '0000'
                WHEN i.region_code LIKE '__0000' THEN i.region_code
                ELSE i.city_code END AS city_code,
           round(CASE g.severity WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END
                 * CAST(g.fund_amount AS DOUBLE) * g.settlement_count, 2) AS score
    FROM g
    LEFT JOIN institutions i ON i.institution_id = g.institution_id
    LEFT JOIN residents res ON res.person_id = g.person_id
),
numbered AS (
    -- Clues are numbered best score first; the sort carries three columns,
    -- not the clues' evidence.
    SELECT person_id, institution_id,
           row_number() OVER (ORDER BY score DESC, person_id, institution_id) AS clue_no
    FROM c
)
SELECT CAST(n.clue_no AS BIGINT) AS clue_no,
       CAST($collider_model AS VARCHAR) AS model,
       CAST($collider_version AS VARCHAR) AS model_version,
       c.severity, c.score, c.reasons, c.person_id, c.person_name, c.institution_id, c.institution_name,
       c.city_code, CAST(c.settlement_count AS INTEGER) AS settlement_count, c.settlement_ids,
       c.first_visit, c.last_visit, c.total_amount, c.fund_amount,
       %[5]s AS narrative,
       c.evidence_list AS evidence
FROM c JOIN numbered n ON n.person_id = c.person_id AND n.institution_id = c.institution_id`, table, rows, rule(m.Severity.High), rule(m.Severity.Medium), narrative), nil
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
