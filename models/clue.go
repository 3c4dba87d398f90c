// This file reads clues back from a run's clue table into Go, for the few
// places that show them one by one (a preview's top clues).
package models

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Clue (线索) is one (model, person, institution) group of newly flagged
// settlements, as the runner builds it. Amounts are for display; the clue
// table keeps them as DECIMAL(18,2).
type Clue struct {
	No              int64           `json:"clue_no"`
	Model           string          `json:"model"`
	ModelVersion    string          `json:"model_version"`
	Severity        string          `json:"severity"`
	Score           float64         `json:"score"`
	Reasons         []string        `json:"reasons"`
	PersonID        string          `json:"person_id"`
	PersonName      string          `json:"person_name"`
	InstitutionID   string          `json:"institution_id"`
	InstitutionName string          `json:"institution_name"`
	CityCode        string          `json:"city_code"`
	SettlementCount int             `json:"settlement_count"`
	SettlementIDs   []string        `json:"settlement_ids"`
	FirstVisit      time.Time       `json:"first_visit"`
	LastVisit       time.Time       `json:"last_visit"`
	TotalAmount     float64         `json:"total_amount"`
	FundAmount      float64         `json:"fund_amount"`
	Narrative       string          `json:"narrative"`
	Evidence        json.RawMessage `json:"evidence"`
}

// ReadClues reads up to limit clues of a clue table in clue_no order (best
// score first).
func ReadClues(ctx context.Context, conn *sql.Conn, table string, limit int) ([]Clue, error) {
	if !identRe.MatchString(table) {
		return nil, fmt.Errorf("models: table name %q is not an identifier", table)
	}
	rows, err := conn.QueryContext(ctx, fmt.Sprintf(`SELECT clue_no, model, model_version, severity, score, reasons,
		person_id, coalesce(person_name, ''), institution_id, coalesce(institution_name, ''), city_code,
		settlement_count, settlement_ids, first_visit, last_visit,
		CAST(total_amount AS DOUBLE), CAST(fund_amount AS DOUBLE), narrative, evidence
		FROM %s ORDER BY clue_no LIMIT ?`, table), limit)
	if err != nil {
		return nil, fmt.Errorf("read clues: %w", err)
	}
	defer rows.Close()
	var out []Clue
	for rows.Next() {
		var c Clue
		var reasons, ids, evidence string
		if err := rows.Scan(&c.No, &c.Model, &c.ModelVersion, &c.Severity, &c.Score, &reasons,
			&c.PersonID, &c.PersonName, &c.InstitutionID, &c.InstitutionName, &c.CityCode,
			&c.SettlementCount, &ids, &c.FirstVisit, &c.LastVisit,
			&c.TotalAmount, &c.FundAmount, &c.Narrative, &evidence); err != nil {
			return nil, fmt.Errorf("read clues: %w", err)
		}
		c.Reasons = strings.Split(reasons, ";")
		c.SettlementIDs = strings.Split(ids, ";")
		c.Evidence = json.RawMessage(evidence)
		out = append(out, c)
	}
	return out, rows.Err()
}
