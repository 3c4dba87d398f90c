// This file keeps the model lifecycle's records (模型管理): the versions of
// each model as submitted or shipped (model_drafts) and the history of
// submissions, decisions and changes of the live version (model_events).
// What a step means — the preview behind a submission, the checks before
// an approval — is jobs.Workbench's; here each step is one transaction.
package casebook

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"collider/domain"
)

// Draft statuses.
const (
	DraftPending  = "pending"
	DraftApproved = "approved"
	DraftRejected = "rejected"
	DraftShipped  = "shipped" // the version that came with collider
)

// ModelDraft is a version of a model as submitted: another text and/or
// other parameters, with its preview frozen when it was submitted.
type ModelDraft struct {
	ID          int64             `json:"draft_id"`
	Model       string            `json:"model"`
	Version     string            `json:"version"`
	BaseVersion string            `json:"base_version,omitempty"` // the live version when submitted
	Text        string            `json:"sql"`
	File        string            `json:"file"`
	Params      map[string]string `json:"params"`
	TestsFile   string            `json:"tests_file,omitempty"`
	Tests       string            `json:"-"`      // the fixture file: the model's own, not what a reader needs
	Source      string            `json:"source"` // api | cli | file | shipped
	Note        string            `json:"note"`
	Status      string            `json:"status"`
	TestsPassed bool              `json:"tests_passed"`
	// Preview is the frozen preview as JSON, people as tokens; readers get
	// it through jobs.Workbench, which shows it as the reader may see it.
	Preview       json.RawMessage `json:"preview,omitempty"`
	SubmittedBy   string          `json:"submitted_by"`
	SubmittedByID int64           `json:"-"`
	SubmittedAt   time.Time       `json:"submitted_at"`
	DecidedBy     string          `json:"decided_by,omitempty"`
	DecidedAt     *time.Time      `json:"decided_at,omitempty"`
	Decision      string          `json:"decision,omitempty"`
}

// ModelEvent is one step of a model's history.
type ModelEvent struct {
	ID       int64     `json:"event_id"`
	Model    string    `json:"model"`
	Action   string    `json:"action"` // ship | submit | approve | reject | rollback
	Version  string    `json:"version"`
	DraftID  int64     `json:"draft_id,omitempty"`
	UserName string    `json:"user_name"`
	Role     string    `json:"role"`
	At       time.Time `json:"at"`
	Note     string    `json:"note,omitempty"`
	// Live says the event made its version live (an approval, a roll
	// back, a version shipped while the shipped one was live).
	Live bool `json:"live"`
}

const draftColumns = `draft_id, model, version, coalesce(base_version, ''), text, file, params, coalesce(tests_file, ''), coalesce(tests, ''),
	source, note, status, tests_passed, coalesce(preview, ''), submitted_by, coalesce(submitted_by_id, 0), submitted_at,
	coalesce(decided_by, ''), decided_at, coalesce(decision, '')`

func scanDraft(sc interface{ Scan(...any) error }) (ModelDraft, error) {
	var d ModelDraft
	var params, preview string
	var decided sql.NullTime
	if err := sc.Scan(&d.ID, &d.Model, &d.Version, &d.BaseVersion, &d.Text, &d.File, &params, &d.TestsFile, &d.Tests,
		&d.Source, &d.Note, &d.Status, &d.TestsPassed, &preview, &d.SubmittedBy, &d.SubmittedByID, &d.SubmittedAt,
		&d.DecidedBy, &decided, &d.Decision); err != nil {
		return d, err
	}
	if err := json.Unmarshal([]byte(params), &d.Params); err != nil {
		return d, fmt.Errorf("draft %d: params: %w", d.ID, err)
	}
	if preview != "" {
		d.Preview = json.RawMessage(preview)
	}
	d.SubmittedAt = domain.Wall(d.SubmittedAt)
	if decided.Valid {
		t := domain.Wall(decided.Time)
		d.DecidedAt = &t
	}
	return d, nil
}

// AddDraft records a version of a model and its event (a submission, or
// the shipped version), in one transaction; live says the shipped version
// becomes live. It returns the draft with its id.
func (c *Casebook) AddDraft(ctx context.Context, who User, d ModelDraft, live bool) (ModelDraft, error) {
	params, err := json.Marshal(nonNilParams(d.Params))
	if err != nil {
		return d, err
	}
	d.SubmittedAt, d.SubmittedBy, d.SubmittedByID = c.now(), who.Name, who.ID
	action := "submit"
	if d.Status == DraftShipped {
		action = "ship"
	}
	err = c.inTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `INSERT INTO casebook.model_drafts (draft_id, model, version, base_version, text, file, params,
				tests_file, tests, source, note, status, tests_passed, preview, submitted_by, submitted_by_id, submitted_at)
			VALUES (nextval('casebook.model_draft_ids'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING draft_id`,
			d.Model, d.Version, nullString(d.BaseVersion), d.Text, d.File, string(params), nullString(d.TestsFile), nullString(d.Tests),
			d.Source, d.Note, d.Status, d.TestsPassed, nullString(string(d.Preview)), who.Name, nullID(who.ID), domain.DBTime(d.SubmittedAt)).Scan(&d.ID); err != nil {
			return err
		}
		return c.addModelEvent(ctx, tx, who, d.Model, action, d.Version, d.ID, d.Note, live)
	})
	return d, err
}

func nonNilParams(p map[string]string) map[string]string {
	if p == nil {
		return map[string]string{}
	}
	return p
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func (c *Casebook) addModelEvent(ctx context.Context, tx *sql.Tx, who User, model, action, version string, draftID int64, note string, live bool) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO casebook.model_events VALUES (nextval('casebook.model_event_ids'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		model, action, version, nullID(draftID), nullID(who.ID), who.Name, string(who.Role), domain.DBTime(c.now()), nullString(note), live)
	return err
}

func (c *Casebook) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := c.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Draft returns one draft.
func (c *Casebook) Draft(ctx context.Context, id int64) (ModelDraft, error) {
	d, err := scanDraft(c.DB.QueryRowContext(ctx, "SELECT "+draftColumns+" FROM casebook.model_drafts WHERE draft_id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, domain.Errorf(domain.ENOTFOUND, "no draft %d", id)
	}
	return d, err
}

// DraftOf returns the newest draft of a model with a given version.
func (c *Casebook) DraftOf(ctx context.Context, model, version string) (ModelDraft, bool, error) {
	d, err := scanDraft(c.DB.QueryRowContext(ctx, "SELECT "+draftColumns+` FROM casebook.model_drafts
		WHERE model = ? AND version = ? ORDER BY draft_id DESC LIMIT 1`, model, version))
	if errors.Is(err, sql.ErrNoRows) {
		return d, false, nil
	}
	return d, err == nil, err
}

// Drafts lists drafts, newest first, before a cursor (0: newest), of one
// model and of one status when given.
func (c *Casebook) Drafts(ctx context.Context, model, status string, before int64, limit int) ([]ModelDraft, error) {
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := c.DB.QueryContext(ctx, "SELECT "+draftColumns+` FROM casebook.model_drafts
		WHERE draft_id < ? AND (? = '' OR model = ?) AND (? = '' OR status = ?) AND status <> 'shipped'
		ORDER BY draft_id DESC LIMIT ?`, before, model, model, status, status, domain.PageLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ModelDraft{}
	for rows.Next() {
		d, err := scanDraft(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DecideDraft approves or rejects a pending draft, in one transaction with
// its event; check runs inside the transaction (the live version must be
// the one the draft was submitted against) and may refuse.
func (c *Casebook) DecideDraft(ctx context.Context, who User, id int64, status, note string, check func(ModelDraft) error) (ModelDraft, error) {
	var out ModelDraft
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		d, err := scanDraft(tx.QueryRowContext(ctx, "SELECT "+draftColumns+" FROM casebook.model_drafts WHERE draft_id = ?", id))
		if errors.Is(err, sql.ErrNoRows) {
			return domain.Errorf(domain.ENOTFOUND, "no draft %d", id)
		}
		if err != nil {
			return err
		}
		if d.Status != DraftPending {
			return domain.Errorf(domain.ECONFLICT, "draft %d is %s, not pending", id, d.Status)
		}
		if err := check(d); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE casebook.model_drafts SET status = ?, decided_by = ?, decided_by_id = ?, decided_at = ?, decision = ?
			WHERE draft_id = ?`, status, who.Name, nullID(who.ID), domain.DBTime(c.now()), nullString(note), id); err != nil {
			return err
		}
		action := map[string]string{DraftApproved: "approve", DraftRejected: "reject"}[status]
		if err := c.addModelEvent(ctx, tx, who, d.Model, action, d.Version, d.ID, note, status == DraftApproved); err != nil {
			return err
		}
		out, err = scanDraft(tx.QueryRowContext(ctx, "SELECT "+draftColumns+" FROM casebook.model_drafts WHERE draft_id = ?", id))
		return err
	})
	return out, err
}

// MakeLive records that a version that was live before is live again (a
// roll back), with the draft that holds its text.
func (c *Casebook) MakeLive(ctx context.Context, who User, model, version string, draftID int64, note string) error {
	return c.inTx(ctx, func(tx *sql.Tx) error {
		return c.addModelEvent(ctx, tx, who, model, "rollback", version, draftID, note, true)
	})
}

// ModelHistory lists a model's events, newest first.
func (c *Casebook) ModelHistory(ctx context.Context, model string, before int64, limit int) ([]ModelEvent, error) {
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := c.DB.QueryContext(ctx, `SELECT event_id, model, action, version, coalesce(draft_id, 0), user_name, role, event_at, coalesce(note, ''), live
		FROM casebook.model_events WHERE model = ? AND event_id < ? ORDER BY event_id DESC LIMIT ?`, model, before, domain.PageLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ModelEvent{}
	for rows.Next() {
		var e ModelEvent
		if err := rows.Scan(&e.ID, &e.Model, &e.Action, &e.Version, &e.DraftID, &e.UserName, &e.Role, &e.At, &e.Note, &e.Live); err != nil {
			return nil, err
		}
		e.At = domain.Wall(e.At)
		out = append(out, e)
	}
	return out, rows.Err()
}

// LiveVersion is the version a model's latest live-making event made
// live, with the draft holding its text; ok is false when none did.
type LiveVersion struct {
	Model   string
	Version string
	DraftID int64
	Action  string // ship | approve | rollback
}

// LiveVersions returns, per model, the version its history made live last.
func (c *Casebook) LiveVersions(ctx context.Context) (map[string]LiveVersion, error) {
	rows, err := c.DB.QueryContext(ctx, `SELECT model, version, coalesce(draft_id, 0), action FROM (
		SELECT *, row_number() OVER (PARTITION BY model ORDER BY event_id DESC) AS n FROM casebook.model_events WHERE live) WHERE n = 1`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]LiveVersion{}
	for rows.Next() {
		var l LiveVersion
		if err := rows.Scan(&l.Model, &l.Version, &l.DraftID, &l.Action); err != nil {
			return nil, err
		}
		out[l.Model] = l
	}
	return out, rows.Err()
}

// WasLive reports the draft holding a version that some event made live.
func (c *Casebook) WasLive(ctx context.Context, model, version string) (int64, bool, error) {
	var id int64
	err := c.DB.QueryRowContext(ctx, `SELECT coalesce(max(draft_id), 0) FROM casebook.model_events
		WHERE model = ? AND version = ? AND live`, model, version).Scan(&id)
	return id, id > 0, err
}
