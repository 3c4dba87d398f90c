package casebook

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"collider/domain"
)

// Batch is a published batch of clues (线索批次). For a city user its totals
// count only that city's clues: no other city's counts leak through them.
type Batch struct {
	ID           int64           `json:"batch_id"`
	RunID        int64           `json:"run_id"`
	PublishedAt  time.Time       `json:"published_at"`
	Clues        int64           `json:"clues"`
	Persons      int64           `json:"persons"`
	Institutions int64           `json:"institutions"`
	Settlements  int64           `json:"settlements"`
	TotalAmount  float64         `json:"total_amount"`
	FundAmount   float64         `json:"fund_amount"`
	Models       json.RawMessage `json:"models"`
	Deliveries   json.RawMessage `json:"deliveries"`
}

const batchTotalsAll = `SELECT b.batch_id, coalesce(b.run_id, 0), b.published_at, b.clues, b.persons, b.institutions, b.settlements,
	CAST(b.total_amount AS DOUBLE), CAST(b.fund_amount AS DOUBLE), b.models, b.deliveries FROM casebook.batches b`

// A city's view of a batch: the same columns, counted over its own leads.
const batchTotalsCity = `SELECT b.batch_id, coalesce(b.run_id, 0), b.published_at,
	count(c.clue_id), count(DISTINCT c.person_id), count(DISTINCT c.institution_id), coalesce(sum(c.settlement_count), 0),
	coalesce(CAST(sum(c.total_amount) AS DOUBLE), 0), coalesce(CAST(sum(c.fund_amount) AS DOUBLE), 0), b.models, b.deliveries
	FROM casebook.batches b
	LEFT JOIN (SELECT c.* FROM casebook.clues c JOIN casebook.leads l ON l.lead_id = c.clue_id WHERE l.city_code = ?) c ON c.batch_id = b.batch_id`

func (c *Casebook) batchQuery(u User, where string) (string, []any) {
	if u.Role == RoleCity {
		return batchTotalsCity + " WHERE " + where + " GROUP BY ALL", []any{u.City}
	}
	return batchTotalsAll + " WHERE " + where, nil
}

func scanBatch(s interface{ Scan(...any) error }, b *Batch) error {
	var models, deliveries string
	if err := s.Scan(&b.ID, &b.RunID, &b.PublishedAt, &b.Clues, &b.Persons, &b.Institutions, &b.Settlements,
		&b.TotalAmount, &b.FundAmount, &models, &deliveries); err != nil {
		return err
	}
	b.Models, b.Deliveries = json.RawMessage(models), json.RawMessage(deliveries)
	b.PublishedAt = domain.Wall(b.PublishedAt)
	return nil
}

// Batches lists batches oldest first, from a cursor.
func (c *Casebook) Batches(ctx context.Context, u User, after int64, limit int) ([]Batch, error) {
	q, args := c.batchQuery(u, "b.batch_id > ?")
	rows, err := c.DB.QueryContext(ctx, q+" ORDER BY b.batch_id LIMIT ?", append(args, after, domain.PageLimit(limit))...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Batch{}
	for rows.Next() {
		var b Batch
		if err := scanBatch(rows, &b); err != nil {
			return nil, err
		}
		out = append(out, scopeBatch(u, b))
	}
	return out, rows.Err()
}

// Batch returns one batch.
func (c *Casebook) Batch(ctx context.Context, u User, id int64) (Batch, error) {
	q, args := c.batchQuery(u, "b.batch_id = ?")
	var b Batch
	err := scanBatch(c.DB.QueryRowContext(ctx, q, append(args, id)...), &b)
	if errors.Is(err, sql.ErrNoRows) {
		return Batch{}, domain.Errorf(domain.ENOTFOUND, "no batch %d", id)
	}
	return scopeBatch(u, b), err
}

// scopeBatch keeps a city's view of a batch free of province-wide counts:
// the models' flagged and clue counts are the whole province's, so a city
// sees which model versions ran and nothing more.
func scopeBatch(u User, b Batch) Batch {
	if u.Role != RoleCity {
		return b
	}
	var ms []struct {
		Model   string `json:"model"`
		Version string `json:"version"`
		Title   string `json:"title,omitempty"`
	}
	json.Unmarshal(b.Models, &ms)
	b.Models, _ = json.Marshal(ms)
	return b
}
