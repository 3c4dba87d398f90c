package casebook

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"collider/domain"
)

// ModelRun is one model's contribution to a batch: its version and the temp
// tables (on the publishing connection) that hold its new clues.
type ModelRun struct {
	Model         string `json:"model"`
	Version       string `json:"version"`
	Title         string `json:"title,omitempty"`
	SQL           string `json:"-"`
	Params        string `json:"params"` // canonical JSON of the effective parameters
	Flagged       int64  `json:"flagged"`
	AlreadyIssued int64  `json:"already_issued"`
	Suppressed    int64  `json:"suppressed"`
	Clues         int64  `json:"clues"`
	Settlements   int64  `json:"settlements"`
	// Scope is how the run examined the model: "full" (every settlement)
	// or "person" (every settlement of the persons the changes since its
	// last batch can affect, Persons of them); Why says what decided it.
	Scope   string `json:"scope,omitempty"`
	Persons int64  `json:"persons,omitempty"`
	Why     string `json:"why,omitempty"`
	// ClueTable has the casebook's clue columns and clue_no;
	// ClueSettlementTable has (clue_no, model, settlement_id). Both are
	// empty for a model that examined no settlement (a night whose
	// changes reach none).
	ClueTable           string `json:"-"`
	ClueSettlementTable string `json:"-"`
}

// PublishInput is what a run publishes.
type PublishInput struct {
	RunID      int64
	Models     []ModelRun
	Deliveries []int64 // the deliveries loaded when the models ran
	// What the models read, recorded per model in casebook.examined with
	// the batch, so that the next run re-examines only what changed since:
	// the feeds copy's identity, the region table's SHA-256 and the
	// suppressions active by the run's clock. Nothing is recorded when
	// Feeds is empty.
	Feeds        string
	Regions      string
	Suppressions []int64
}

// examinedNothing says the model ran over no settlement and has no clue
// tables: its batch records its version alone.
func (m ModelRun) examinedNothing() bool {
	return m.ClueTable == "" && m.ClueSettlementTable == "" && m.Clues == 0
}

// publishStep is one statement of a model's part of a batch.
type publishStep struct {
	what string
	q    string
	args []any
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$`)

// Publish writes a batch (线索批次) in one transaction on conn, the connection
// that holds the models' temp tables: the clues, the (model, settlement)
// pairs issued, a lead per clue routed to its city with a due date by
// severity, the route events, the model versions and the batch totals. A
// process killed at any moment leaves either the whole batch or nothing.
// A batch with no clues is still published, so the province sees the run.
func (c *Casebook) Publish(ctx context.Context, conn *sql.Conn, in PublishInput) (Batch, error) {
	for _, m := range in.Models {
		if m.examinedNothing() {
			continue
		}
		if !tableName.MatchString(m.ClueTable) || !tableName.MatchString(m.ClueSettlementTable) {
			return Batch{}, fmt.Errorf("publish: bad temp table names for model %s", m.Model)
		}
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return Batch{}, err
	}
	defer tx.Rollback()
	now := c.now()
	var batchID int64
	if err := tx.QueryRowContext(ctx, "SELECT nextval('casebook.batch_ids')").Scan(&batchID); err != nil {
		return Batch{}, err
	}
	exec := func(what, q string, args ...any) error {
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("publish batch %d: %s: %w", batchID, what, err)
		}
		return nil
	}
	for i, m := range in.Models {
		for _, st := range c.modelSteps(m, i, batchID, now) {
			if err := exec(st.what, st.q, st.args...); err != nil {
				return Batch{}, err
			}
		}
	}
	if in.Feeds != "" {
		sup := in.Suppressions
		if sup == nil {
			sup = []int64{}
		}
		supJSON, _ := json.Marshal(sup)
		for _, m := range in.Models {
			var persons any
			if m.Scope != "full" {
				persons = m.Persons
			}
			if err := exec("record what was examined", `INSERT INTO casebook.examined VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				batchID, m.Model, m.Version, m.Scope, persons, in.Feeds, in.Regions, string(supJSON)); err != nil {
				return Batch{}, err
			}
		}
	}
	modelsJSON, _ := json.Marshal(in.Models)
	if in.Deliveries == nil {
		in.Deliveries = []int64{}
	}
	deliveriesJSON, _ := json.Marshal(in.Deliveries)
	var runID any
	if in.RunID > 0 {
		runID = in.RunID
	}
	if err := exec("record batch", `INSERT INTO casebook.batches
		SELECT ?, ?, ?, count(*), count(DISTINCT person_id), count(DISTINCT institution_id), coalesce(sum(settlement_count), 0),
		       coalesce(sum(total_amount), 0), coalesce(sum(fund_amount), 0), ?, ?
		FROM casebook.clues WHERE batch_id = ?`, batchID, runID, domain.DBTime(now), string(modelsJSON), string(deliveriesJSON), batchID); err != nil {
		return Batch{}, err
	}
	if err := c.commitBatch(ctx, tx, batchID); err != nil {
		return Batch{}, fmt.Errorf("publish batch %d: %w", batchID, err)
	}
	return c.Batch(ctx, User{Role: RoleProvince}, batchID)
}

// modelSteps are the statements that publish the i-th model's clues in a
// batch: number them, insert them and the settlements they issue, route a
// lead per clue, and record the model version (alone for a model that
// examined nothing).
func (c *Casebook) modelSteps(m ModelRun, i int, batchID int64, now time.Time) []publishStep {
	version := publishStep{"record model version", `INSERT OR IGNORE INTO casebook.model_versions VALUES (?, ?, ?, ?, ?, ?)`,
		[]any{m.Version, m.Model, m.Title, m.SQL, m.Params, domain.DBTime(now)}}
	if m.examinedNothing() {
		return []publishStep{version} // nothing to number, insert or route
	}
	ids := fmt.Sprintf("temp.publish_ids_%d_%d", batchID, i)
	steps := []publishStep{
		{"number clues", fmt.Sprintf(`CREATE TEMP TABLE %s AS
			SELECT clue_no, nextval('casebook.clue_ids') AS clue_id FROM %s ORDER BY clue_no`, ids, m.ClueTable), nil},
		// A follow-up clue names the latest earlier clue of the same
		// (model, person, institution).
		{"insert clues", fmt.Sprintf(`INSERT INTO casebook.clues
			SELECT n.clue_id, ?, c.model, c.model_version, c.severity, c.score, c.reasons, c.person_id, c.person_name,
			       c.institution_id, c.institution_name, c.city_code, c.settlement_count, c.settlement_ids,
			       c.first_visit, c.last_visit, c.total_amount, c.fund_amount, c.narrative, c.evidence,
			       (SELECT max(p.clue_id) FROM casebook.clues p
			        WHERE p.model = c.model AND p.person_id = c.person_id AND p.institution_id = c.institution_id)
			FROM %s c JOIN %s n USING (clue_no)`, m.ClueTable, ids), []any{batchID}},
		{"record issued settlements", fmt.Sprintf(`INSERT INTO casebook.issued
			SELECT s.model, s.settlement_id, n.clue_id FROM %s s JOIN %s n USING (clue_no)`, m.ClueSettlementTable, ids), nil},
		// 线索下发: every clue becomes a lead of its city, due by severity.
		{"route leads", fmt.Sprintf(`INSERT INTO casebook.leads
			SELECT n.clue_id, c.city_code, 'new', NULL, NULL, NULL, ?,
			       CAST(CAST(? AS TIMESTAMP) + to_days(CAST(CASE c.severity WHEN 'high' THEN ? WHEN 'medium' THEN ? ELSE ? END AS INTEGER)) AS DATE),
			       ?, NULL
			FROM %s c JOIN %s n USING (clue_no)`, m.ClueTable, ids),
			[]any{domain.DBTime(now), domain.DBTime(now), c.dueDays("high"), c.dueDays("medium"), c.dueDays("low"), domain.DBTime(now)}},
		{"route events", fmt.Sprintf(`INSERT INTO casebook.lead_events
			SELECT nextval('casebook.event_ids'), n.clue_id, ?, NULL, 'collider', 'system', 'route', NULL, 'new', c.city_code, NULL, NULL, ?
			FROM %s c JOIN %s n USING (clue_no)`, m.ClueTable, ids), []any{domain.DBTime(now), fmt.Sprintf("第 %d 批线索", batchID)}},
		{"drop ids", "DROP TABLE " + ids, nil},
	}
	return append(steps, version)
}

// commitBatch commits a batch's transaction with its leads into memory,
// read in the transaction as memory will hold them.
func (c *Casebook) commitBatch(ctx context.Context, tx *sql.Tx, batchID int64) error {
	added, err := c.readLeads(ctx, tx, batchID)
	if err != nil {
		return fmt.Errorf("read its leads: %w", err)
	}
	return c.commitLeads(tx, func(mem *leadMemory) { mem.appendLeads(added) })
}

// RoutedByCity counts a batch's leads per city, for the run's routing step.
func (c *Casebook) RoutedByCity(ctx context.Context, batchID int64) (map[string]int64, error) {
	rows, err := c.DB.QueryContext(ctx, `SELECT l.city_code, count(*) FROM casebook.clues c JOIN casebook.leads l ON l.lead_id = c.clue_id
		WHERE c.batch_id = ? GROUP BY l.city_code`, batchID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var city string
		var n int64
		if err := rows.Scan(&city, &n); err != nil {
			return nil, err
		}
		out[city] = n
	}
	return out, rows.Err()
}
