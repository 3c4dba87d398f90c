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

	"collider/personid"
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
	// Exclude, optional, is the table of settlements already issued
	// (model, settlement_id), as for a run: then the clue figures are what
	// the next run would issue.
	Exclude string
	// Outcomes, optional, names a table or view (settlement_id, outcome) of
	// the model's settlements already investigated, outcome confirmed or
	// dismissed: the preview then reports precision on them.
	Outcomes string
	// Sample is how many added and removed settlements to show; 10 when 0.
	Sample int
	// Top is how many clues to show, best score first; 5 when 0.
	Top int
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

// Masked returns the preview as the modeler role sees it.
func (p *Preview) Masked() *Preview {
	q := *p
	q.TopClues = make([]Clue, len(p.TopClues))
	for i, c := range p.TopClues {
		q.TopClues[i] = c.Masked()
	}
	if p.Diff != nil {
		d := *p.Diff
		d.AddedSample, d.RemovedSample = maskFlagged(p.Diff.AddedSample), maskFlagged(p.Diff.RemovedSample)
		q.Diff = &d
	}
	return &q
}

func maskFlagged(in []Flagged) []Flagged {
	out := make([]Flagged, len(in))
	for i, f := range in {
		f.Evidence = json.RawMessage(maskPerson(string(f.Evidence), f.PersonID, f.PersonName))
		f.PersonID, f.PersonName = personid.Mask(f.PersonID), personid.MaskName(f.PersonName)
		out[i] = f
	}
	return out
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
	if opt.Outcomes != "" && !identRe.MatchString(opt.Outcomes) {
		return nil, fmt.Errorf("preview: outcomes table %q is not an identifier", opt.Outcomes)
	}
	run, err := r.Run(ctx, conn, opt.Draft, RunOptions{Params: opt.Params, Exclude: opt.Exclude, Prefix: "draft"})
	if err != nil {
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
	if p.ByReason, err = counts(ctx, conn, fmt.Sprintf(`SELECT f.reason, f.reason, count(DISTINCT cs.clue_no), count(*), CAST(sum(s.fund_amount) AS DOUBLE)
		FROM %s cs JOIN %s f ON f.settlement_id = cs.settlement_id JOIN settlements s ON s.settlement_id = cs.settlement_id
		GROUP BY f.reason ORDER BY count(*) DESC, f.reason`, run.ClueSettlementTable, run.FlagTable)); err != nil {
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

	liveTable := ""
	if opt.Live != nil {
		liveVals, err := opt.Live.Values(nil)
		if err != nil {
			return nil, err
		}
		p.LiveVersion = Version(opt.Live, liveVals)
		liveTable = "live_" + opt.Live.Name + "_flagged"
		d := &Diff{}
		if d.LiveFlagged, err = r.Flag(ctx, conn, opt.Live, liveVals, liveTable); err != nil {
			return nil, fmt.Errorf("preview: live version: %w", err)
		}
		if err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT
				count(*) FILTER (WHERE l.settlement_id IS NULL),
				count(*) FILTER (WHERE d.settlement_id IS NULL),
				count(*) FILTER (WHERE d.settlement_id IS NOT NULL AND l.settlement_id IS NOT NULL),
				count(*) FILTER (WHERE d.reason <> l.reason)
			FROM %s d FULL OUTER JOIN %s l ON l.settlement_id = d.settlement_id`, run.FlagTable, liveTable)).
			Scan(&d.Added, &d.Removed, &d.Kept, &d.ReasonChanged); err != nil {
			return nil, fmt.Errorf("preview: diff: %w", err)
		}
		if d.AddedSample, err = sample(ctx, conn, run.FlagTable, liveTable, opt.Sample); err != nil {
			return nil, err
		}
		if d.RemovedSample, err = sample(ctx, conn, liveTable, run.FlagTable, opt.Sample); err != nil {
			return nil, err
		}
		p.Diff = d
	}

	if opt.Outcomes != "" {
		pr := &Precision{}
		q := `SELECT count(*) FILTER (WHERE o.outcome = 'confirmed'), count(*) FILTER (WHERE o.outcome = 'dismissed')
			FROM %s f JOIN %s o ON o.settlement_id = f.settlement_id`
		if err := conn.QueryRowContext(ctx, fmt.Sprintf(q, run.FlagTable, opt.Outcomes)).Scan(&pr.Draft.Confirmed, &pr.Draft.Dismissed); err != nil {
			return nil, fmt.Errorf("preview: precision: %w", err)
		}
		if liveTable != "" {
			if err := conn.QueryRowContext(ctx, fmt.Sprintf(q, liveTable, opt.Outcomes)).Scan(&pr.Live.Confirmed, &pr.Live.Dismissed); err != nil {
				return nil, fmt.Errorf("preview: precision: %w", err)
			}
		}
		p.Precision = pr
	}
	p.Seconds = time.Since(start).Seconds()
	return p, nil
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
