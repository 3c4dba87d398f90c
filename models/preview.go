// This file is the preview engine (one for the command line, the API and the
// pages): it runs a draft of a model (another file and/or other parameters)
// against the loaded data without publishing anything, and tells a modeler
// what would change against the live version.
package models

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// PreviewOptions say what to preview.
type PreviewOptions struct {
	// Draft is the model as it would run: a draft file, or the live model
	// itself when only parameters change.
	Draft *Model
	// Params override the draft's defaults (--set).
	Params map[string]string
	// Live is the version running now, compared with its defaults; nil
	// leaves out the difference.
	Live *Model
	// The casebook as the next run would meet it, given as data: a preview
	// runs in a sandbox that reaches no casebook table, and these tables are
	// made only after the draft's query has run, so that it cannot read them.
	//
	// Issued are the model's settlements already issued (left out of the
	// clues, as in a run); Suppressions the active ones; Outcomes the
	// model's settlements already investigated, for the precision (nil:
	// no precision).
	Issued       []string
	Suppressions []Suppression
	Outcomes     []Outcome
	// Sample is how many added and removed settlements to show; 10 when 0.
	Sample int
	// Top is how many clues to show, best score first; 5 when 0.
	Top int
}

// Suppression is an active suppression as a run applies it: a person, an
// institution, or a (model, person) pair.
type Suppression struct {
	Kind          string `json:"kind"`
	Model         string `json:"model,omitempty"`
	PersonID      string `json:"person_id,omitempty"`
	InstitutionID string `json:"institution_id,omitempty"`
}

// Outcome is an investigated settlement: confirmed or dismissed.
type Outcome struct {
	SettlementID string `json:"settlement_id"`
	Outcome      string `json:"outcome"`
}

// Preview is what a modeler needs to decide whether a draft goes live.
type Preview struct {
	Model       string
	Version     string // the draft's
	LiveVersion string // "" without a live version
	Params      Values

	Flagged       int64
	Unmatched     int64
	AlreadyIssued int64
	Suppressed    int64
	Settlements   int64 // in the clues
	Clues         int64
	Persons       int64
	Institutions  int64
	TotalAmount   float64
	FundAmount    float64

	BySeverity []Count // clues and fund amount per severity
	ByReason   []Count // settlements per reason
	ByCity     []Count // clues and fund amount per city (Key: city code, Label: its name)
	TopClues   []Clue

	Diff      *Diff      // nil without a live version
	Precision *Precision // nil without outcomes
	Tests     []CaseResult
	Seconds   float64
}

// Count is one line of a breakdown.
type Count struct {
	Key        string
	Label      string
	Clues      int64
	Rows       int64 // settlements
	FundAmount float64
}

// Diff compares the flagged settlements of the draft with the live version's.
type Diff struct {
	LiveFlagged   int64
	Added         int64 // flagged by the draft only
	Removed       int64 // flagged by the live version only
	Kept          int64
	ReasonChanged int64 // kept, with another reason
	AddedSample   []Flagged
	RemovedSample []Flagged
}

// Flagged is one flagged settlement, for samples.
type Flagged struct {
	SettlementID    string
	PersonID        string
	PersonName      string
	InstitutionID   string
	InstitutionName string
	VisitType       string
	VisitStart      time.Time
	FundAmount      float64
	Reason          string
	Evidence        json.RawMessage
}

// Precision is confirmed / (confirmed + dismissed) among the already
// investigated settlements that each version flags.
type Precision struct {
	Draft, Live PrecisionCounts
}

// PrecisionCounts are the outcomes among one version's flags.
type PrecisionCounts struct {
	Confirmed, Dismissed int64
}

// Value is the precision, or -1 when nothing flagged was investigated.
func (p PrecisionCounts) Value() float64 {
	if p.Confirmed+p.Dismissed == 0 {
		return -1
	}
	return float64(p.Confirmed) / float64(p.Confirmed+p.Dismissed)
}

// Preview runs opt.Draft (and opt.Live) on conn and summarizes. Nothing is
// written outside the connection's temp tables.
func (r *Runner) Preview(ctx context.Context, conn *sql.Conn, opt PreviewOptions) (*Preview, error) {
	start := time.Now()
	if opt.Draft == nil {
		return nil, fmt.Errorf("preview: no model")
	}
	if opt.Sample <= 0 {
		opt.Sample = 10
	}
	if opt.Top <= 0 {
		opt.Top = 5
	}
	vals, err := opt.Draft.Values(opt.Params)
	if err != nil {
		return nil, err
	}
	base := "draft_" + opt.Draft.Name
	run := &Run{Model: opt.Draft.Name, Version: Version(opt.Draft, vals), Params: vals, FlagTable: base + "_flagged"}
	if run.Flagged, err = r.Flag(ctx, conn, opt.Draft, vals, run.FlagTable); err != nil {
		return nil, err
	}
	liveTable := ""
	var liveFlagged int64
	if opt.Live != nil {
		liveVals, err := opt.Live.Values(nil)
		if err != nil {
			return nil, err
		}
		if Version(opt.Live, liveVals) == run.Version {
			liveTable, liveFlagged = run.FlagTable, run.Flagged // the draft is the live version
		} else {
			liveTable = "live_" + opt.Live.Name + "_flagged"
			if liveFlagged, err = r.Flag(ctx, conn, opt.Live, liveVals, liveTable); err != nil {
				return nil, fmt.Errorf("preview: live version: %w", err)
			}
		}
	}
	// The casebook's tables, now that no query of the draft's runs any more
	// (its severity rules and narrative, run below, see only the clues).
	if err := casebookTables(ctx, conn, opt); err != nil {
		return nil, err
	}
	if err := r.group(ctx, conn, opt.Draft, vals, run, RunOptions{Exclude: "preview_issued", Suppressions: "preview_suppressions"}, base); err != nil {
		return nil, err
	}
	p := &Preview{
		Model: opt.Draft.Name, Version: run.Version, Params: run.Params,
		Flagged: run.Flagged, Unmatched: run.Unmatched, AlreadyIssued: run.AlreadyIssued,
		Suppressed: run.Suppressed, Settlements: run.Settlements, Clues: run.Clues,
	}
	if err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(DISTINCT person_id), count(DISTINCT institution_id),
		coalesce(CAST(sum(total_amount) AS DOUBLE), 0), coalesce(CAST(sum(fund_amount) AS DOUBLE), 0) FROM %s`, run.ClueTable)).
		Scan(&p.Persons, &p.Institutions, &p.TotalAmount, &p.FundAmount); err != nil {
		return nil, fmt.Errorf("preview: totals: %w", err)
	}
	if p.BySeverity, err = counts(ctx, conn, fmt.Sprintf(`SELECT severity, CASE severity WHEN 'high' THEN '高' WHEN 'medium' THEN '中' ELSE '低' END, count(*), sum(settlement_count), CAST(sum(fund_amount) AS DOUBLE)
		FROM %s GROUP BY severity ORDER BY CASE severity WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END`, run.ClueTable)); err != nil {
		return nil, err
	}
	// The run's rows already carry each flagged settlement's amounts: no
	// second pass over the settlements.
	if p.ByReason, err = counts(ctx, conn, fmt.Sprintf(`SELECT f.reason, f.reason, count(DISTINCT cs.clue_no), count(*), CAST(sum(f.fund_amount) AS DOUBLE)
		FROM %s cs JOIN %s f ON f.settlement_id = cs.settlement_id AND f.model = cs.model
		GROUP BY f.reason ORDER BY count(*) DESC, f.reason`, run.ClueSettlementTable, run.RowTable)); err != nil {
		return nil, err
	}
	for i, c := range p.ByReason {
		p.ByReason[i].Label = opt.Draft.ReasonLabel(c.Key)
	}
	if p.ByCity, err = counts(ctx, conn, fmt.Sprintf(`SELECT c.city_code, coalesce(any_value(g.name), c.city_code), count(*), sum(c.settlement_count), CAST(sum(c.fund_amount) AS DOUBLE)
		FROM %s c LEFT JOIN regions g ON g.code = c.city_code
		GROUP BY c.city_code ORDER BY count(*) DESC, c.city_code`, run.ClueTable)); err != nil {
		return nil, err
	}
	if p.TopClues, err = ReadClues(ctx, conn, run.ClueTable, opt.Top); err != nil {
		return nil, err
	}

	if opt.Live != nil {
		p.LiveVersion = Version(opt.Live, mustValues(opt.Live))
		if p.Diff, err = diff(ctx, conn, run.FlagTable, liveTable, liveFlagged, opt.Sample); err != nil {
			return nil, err
		}
	}
	if opt.Outcomes != nil {
		if p.Precision, err = precision(ctx, conn, run.FlagTable, liveTable); err != nil {
			return nil, err
		}
	}
	p.Seconds = time.Since(start).Seconds()
	return p, nil
}

// casebookTables makes the temp tables preview_issued (model,
// settlement_id), preview_suppressions and preview_outcomes from the data
// the options carry, each list bound as one parameter.
func casebookTables(ctx context.Context, conn *sql.Conn, opt PreviewOptions) error {
	var kinds, smodels, persons, insts, outSettlements, outcomes []string
	for _, su := range opt.Suppressions {
		kinds, smodels = append(kinds, su.Kind), append(smodels, su.Model)
		persons, insts = append(persons, su.PersonID), append(insts, su.InstitutionID)
	}
	for _, o := range opt.Outcomes {
		outSettlements, outcomes = append(outSettlements, o.SettlementID), append(outcomes, o.Outcome)
	}
	steps := []struct {
		sql  string
		args []any
	}{
		{`CREATE OR REPLACE TEMP TABLE preview_issued AS
			SELECT CAST(? AS VARCHAR) AS model, unnest(CAST(? AS VARCHAR[])) AS settlement_id`, []any{opt.Draft.Name, nonNil(opt.Issued)}},
		{`CREATE OR REPLACE TEMP TABLE preview_suppressions AS
			SELECT unnest(CAST(? AS VARCHAR[])) AS kind, nullif(unnest(CAST(? AS VARCHAR[])), '') AS model,
			       nullif(unnest(CAST(? AS VARCHAR[])), '') AS person_id, nullif(unnest(CAST(? AS VARCHAR[])), '') AS institution_id,
			       CAST(NULL AS TIMESTAMP) AS expires_at, CAST(NULL AS TIMESTAMP) AS revoked_at`,
			[]any{nonNil(kinds), nonNil(smodels), nonNil(persons), nonNil(insts)}},
		{`CREATE OR REPLACE TEMP TABLE preview_outcomes AS
			SELECT unnest(CAST(? AS VARCHAR[])) AS settlement_id, unnest(CAST(? AS VARCHAR[])) AS outcome`,
			[]any{nonNil(outSettlements), nonNil(outcomes)}},
	}
	for _, st := range steps {
		if _, err := conn.ExecContext(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("preview: casebook tables: %w", err)
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func mustValues(m *Model) Values {
	v, _ := m.Values(nil)
	return v
}

// diff compares the draft's flags with the live version's.
func diff(ctx context.Context, conn *sql.Conn, draftTable, liveTable string, liveFlagged int64, n int) (*Diff, error) {
	d := &Diff{LiveFlagged: liveFlagged}
	if draftTable == liveTable { // the draft is the live version: nothing added or removed
		d.Kept = liveFlagged
		return d, nil
	}
	if err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT
			count(*) FILTER (WHERE l.settlement_id IS NULL),
			count(*) FILTER (WHERE d.settlement_id IS NULL),
			count(*) FILTER (WHERE d.settlement_id IS NOT NULL AND l.settlement_id IS NOT NULL),
			count(*) FILTER (WHERE d.reason <> l.reason)
		FROM %s d FULL OUTER JOIN %s l ON l.settlement_id = d.settlement_id`, draftTable, liveTable)).
		Scan(&d.Added, &d.Removed, &d.Kept, &d.ReasonChanged); err != nil {
		return nil, fmt.Errorf("preview: diff: %w", err)
	}
	var err error
	if d.AddedSample, err = sample(ctx, conn, draftTable, liveTable, n); err != nil {
		return nil, err
	}
	if d.RemovedSample, err = sample(ctx, conn, liveTable, draftTable, n); err != nil {
		return nil, err
	}
	return d, nil
}

// precision counts the outcomes among the investigated settlements each
// version flags (preview_outcomes); liveTable is "" without a live version.
func precision(ctx context.Context, conn *sql.Conn, draftTable, liveTable string) (*Precision, error) {
	pr := &Precision{}
	q := `SELECT count(*) FILTER (WHERE o.outcome = 'confirmed'), count(*) FILTER (WHERE o.outcome = 'dismissed')
		FROM %s f JOIN preview_outcomes o ON o.settlement_id = f.settlement_id`
	if err := conn.QueryRowContext(ctx, fmt.Sprintf(q, draftTable)).Scan(&pr.Draft.Confirmed, &pr.Draft.Dismissed); err != nil {
		return nil, fmt.Errorf("preview: precision: %w", err)
	}
	if liveTable != "" {
		if err := conn.QueryRowContext(ctx, fmt.Sprintf(q, liveTable)).Scan(&pr.Live.Confirmed, &pr.Live.Dismissed); err != nil {
			return nil, fmt.Errorf("preview: precision: %w", err)
		}
	}
	return pr, nil
}

func counts(ctx context.Context, conn *sql.Conn, q string) ([]Count, error) {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("preview: %w", err)
	}
	defer rows.Close()
	var out []Count
	for rows.Next() {
		var c Count
		var fund sql.NullFloat64
		if err := rows.Scan(&c.Key, &c.Label, &c.Clues, &c.Rows, &fund); err != nil {
			return nil, fmt.Errorf("preview: %w", err)
		}
		c.FundAmount = fund.Float64
		out = append(out, c)
	}
	return out, rows.Err()
}

// sample lists settlements flagged in table a but not in b, largest fund
// amount first.
func sample(ctx context.Context, conn *sql.Conn, a, b string, n int) ([]Flagged, error) {
	rows, err := conn.QueryContext(ctx, fmt.Sprintf(`SELECT f.settlement_id, s.person_id, coalesce(s.person_name, r.name, ''), s.institution_id,
			coalesce(i.name, ''), s.visit_type, s.visit_start, CAST(s.fund_amount AS DOUBLE), f.reason, CAST(f.evidence AS VARCHAR)
		FROM %s f JOIN settlements s ON s.settlement_id = f.settlement_id
		LEFT JOIN institutions i ON i.institution_id = s.institution_id
		LEFT JOIN residents r ON r.person_id = s.person_id
		WHERE NOT EXISTS (SELECT 1 FROM %s o WHERE o.settlement_id = f.settlement_id)
		ORDER BY s.fund_amount DESC, f.settlement_id LIMIT ?`, a, b), n)
	if err != nil {
		return nil, fmt.Errorf("preview: sample: %w", err)
	}
	defer rows.Close()
	var out []Flagged
	for rows.Next() {
		var f Flagged
		var ev string
		if err := rows.Scan(&f.SettlementID, &f.PersonID, &f.PersonName, &f.InstitutionID, &f.InstitutionName,
			&f.VisitType, &f.VisitStart, &f.FundAmount, &f.Reason, &ev); err != nil {
			return nil, fmt.Errorf("preview: sample: %w", err)
		}
		f.Evidence = json.RawMessage(ev)
		out = append(out, f)
	}
	return out, rows.Err()
}
