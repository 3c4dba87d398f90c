// This file is the one preview engine behind `collider models preview`, the
// API and the pages: a draft model (another SQL text and/or other
// parameters) run in the sandbox against the loaded data, publishing
// nothing, compared with the live version. It gathers what the casebook
// says of the model (settlements issued, suppressions, outcomes), has the
// sandbox run the draft, and shows the result as the reader may see it:
// people as tokens for a modeler, turned back into ID numbers and names
// for a reader who may see personal data. Every preview of draft SQL and
// every preview that shows people in clear is audited here.
package jobs

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"collider/casebook"
	"collider/domain"
	"collider/models"
	"collider/store"
)

// FixtureLoader loads a model's fixture rows with the real loader, so that
// fixtures meet the same checks and derived columns as deliveries.
func FixtureLoader(ctx context.Context, s *store.Store, feed, dir string) error {
	d, err := ManualDelivery(feed, dir)
	if err != nil {
		return err
	}
	return (&Loader{Store: s}).Load(ctx, d).Err
}

// NewTester returns the fixture tester wired to the real loader.
func NewTester() *models.Tester { return &models.Tester{Load: FixtureLoader} }

// Previewer runs previews.
type Previewer struct {
	Store    *store.Store
	Casebook *casebook.Casebook
	Catalog  *models.Catalog
	Sandbox  *Sandbox
	// Now is the suppression clock; time.Now when nil.
	Now func() time.Time
}

// PreviewRequest says what to preview.
type PreviewRequest struct {
	Model  string
	Draft  *models.Model     // nil: the live model, with Params
	Params map[string]string // overrides of the draft's defaults
	Sample int
	// SQL is the draft's text as the reader gave it, for the audit.
	SQL string
}

// ParseDraft parses a draft model's text for the model name; its fixture
// tests are the live model's unless the draft brings its own. A name no
// model has yet is a new model's first draft.
func (p *Previewer) ParseDraft(name, file string, text []byte) (*models.Model, error) {
	m, err := models.Parse(file, text)
	if err != nil {
		return nil, domain.Errorf(domain.EINVALID, "%w", err)
	}
	if m.Name != name {
		return nil, domain.Errorf(domain.EINVALID, "%s: the draft is model %q, not %q", file, m.Name, name)
	}
	if live, err := p.Catalog.Model(name); err == nil && m.Tests == nil {
		m.Tests = live.Tests
	}
	return m, nil
}

// draftAndLive are the model a request previews and the live version it is
// compared with (nil for a new model's first draft).
func (p *Previewer) draftAndLive(req PreviewRequest) (draft, live *models.Model, err error) {
	live, err = p.Catalog.Model(req.Model)
	switch {
	case err == nil && req.Draft == nil:
		return live, live, nil
	case err == nil:
		return req.Draft, live, nil
	case req.Draft != nil && req.Draft.Name == req.Model:
		return req.Draft, nil, nil
	}
	return nil, nil, domain.Errorf(domain.ENOTFOUND, "%w", err)
}

// Preview runs the draft in the sandbox against the loaded data and shows
// it as the reader who may see it, audited. The draft's query must have the
// right shape; failing fixtures are reported, not fatal: the modeler is
// still deciding.
func (p *Previewer) Preview(ctx context.Context, who casebook.User, req PreviewRequest) (*models.Preview, error) {
	pv, err := p.run(ctx, req)
	if err != nil {
		return nil, err
	}
	if pv, err = p.Present(ctx, who, pv); err != nil {
		return nil, err
	}
	return pv, p.audit(ctx, who, req, pv)
}

// run runs the draft in the sandbox: the preview as it comes out, people
// as tokens.
func (p *Previewer) run(ctx context.Context, req PreviewRequest) (*models.Preview, error) {
	draft, live, err := p.draftAndLive(req)
	if err != nil {
		return nil, err
	}
	if _, err := draft.Values(req.Params); err != nil {
		return nil, domain.Errorf(domain.EINVALID, "%w", err)
	}
	sreq := sandboxRequest{Draft: TextOf(draft), Params: req.Params, Sample: req.Sample, Now: p.now(), Precision: true}
	if live != nil {
		lt := TextOf(live)
		sreq.Live = &lt
	}
	if err := p.casebookFor(ctx, draft.Name, &sreq); err != nil {
		return nil, err
	}
	return p.Sandbox.run(ctx, sreq)
}

// Present returns a preview as the reader may see it: as it is (people as
// tokens) for a modeler, with ID numbers and names for a reader allowed
// them. The preview given is not changed.
func (p *Previewer) Present(ctx context.Context, who casebook.User, pv *models.Preview) (*models.Preview, error) {
	if who.MasksPersonalData() {
		return pv, nil
	}
	b, err := json.Marshal(pv)
	if err != nil {
		return nil, err
	}
	var c models.Preview
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, p.reidentify(ctx, &c)
}

func (p *Previewer) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// casebookFor gathers what the casebook says of the model, people as the
// sandbox knows them (tokens).
func (p *Previewer) casebookFor(ctx context.Context, model string, req *sandboxRequest) error {
	db := p.Store.DB
	var err error
	if req.Issued, err = strings1(ctx, db, "SELECT settlement_id FROM casebook.issued WHERE model = ?", model); err != nil {
		return fmt.Errorf("preview: issued: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT s.kind, coalesce(s.model, ''), coalesce(v.token, ''), coalesce(s.institution_id, '')
		FROM casebook.suppressions s LEFT JOIN pseudonyms v ON v.person_id = s.person_id
		WHERE s.revoked_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > ?)
		  AND (s.person_id IS NULL OR v.token IS NOT NULL)`, domain.DBTime(req.Now))
	if err != nil {
		return fmt.Errorf("preview: suppressions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var su models.Suppression
		if err := rows.Scan(&su.Kind, &su.Model, &su.PersonID, &su.InstitutionID); err != nil {
			return err
		}
		req.Suppressions = append(req.Suppressions, su)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	orows, err := db.QueryContext(ctx, `SELECT i.settlement_id, l.outcome FROM casebook.issued i JOIN casebook.leads l ON l.lead_id = i.clue_id
		WHERE i.model = ? AND l.outcome IN ('confirmed', 'dismissed')`, model)
	if err != nil {
		return fmt.Errorf("preview: outcomes: %w", err)
	}
	defer orows.Close()
	req.Outcomes = []models.Outcome{}
	for orows.Next() {
		var o models.Outcome
		if err := orows.Scan(&o.SettlementID, &o.Outcome); err != nil {
			return err
		}
		req.Outcomes = append(req.Outcomes, o)
	}
	return orows.Err()
}

func strings1(ctx context.Context, db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// reidentify turns the tokens of the people a preview shows back into ID
// numbers and names, through the vault, for a reader who may see them.
func (p *Previewer) reidentify(ctx context.Context, pv *models.Preview) error {
	var tokens, settlements []string
	for _, c := range pv.TopClues {
		tokens = append(tokens, c.PersonID)
	}
	if pv.Diff != nil {
		for _, f := range append(append([]models.Flagged{}, pv.Diff.AddedSample...), pv.Diff.RemovedSample...) {
			tokens, settlements = append(tokens, f.PersonID), append(settlements, f.SettlementID)
		}
	}
	if len(tokens) == 0 {
		return nil
	}
	type person struct{ id, name string }
	people := map[string]person{}
	rows, err := p.Store.DB.QueryContext(ctx, `SELECT v.token, v.person_id, coalesce(r.name, '')
		FROM pseudonyms v LEFT JOIN residents r ON r.person_id = v.person_id
		WHERE v.token IN (SELECT unnest(CAST(? AS VARCHAR[])))`, tokens)
	if err != nil {
		return fmt.Errorf("preview: people: %w", err)
	}
	for rows.Next() {
		var tok string
		var pr person
		if err := rows.Scan(&tok, &pr.id, &pr.name); err != nil {
			rows.Close()
			return err
		}
		people[tok] = pr
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	// The name on the settlement itself, where it has one.
	named, err := settlementNames(ctx, p.Store.DB, settlements)
	if err != nil {
		return err
	}
	clear := func(text string) string {
		for tok, pr := range people {
			text = strings.ReplaceAll(text, tok, pr.id)
		}
		return text
	}
	for i, c := range pv.TopClues {
		pr := people[c.PersonID]
		c.Narrative, c.Evidence = clear(c.Narrative), json.RawMessage(clear(string(c.Evidence)))
		c.PersonID, c.PersonName = pr.id, pr.name
		pv.TopClues[i] = c
	}
	if pv.Diff != nil {
		for _, sample := range [][]models.Flagged{pv.Diff.AddedSample, pv.Diff.RemovedSample} {
			for i, f := range sample {
				pr := people[f.PersonID]
				f.Evidence = json.RawMessage(clear(string(f.Evidence)))
				f.PersonID, f.PersonName = pr.id, pr.name
				if n := named[f.SettlementID]; n != "" {
					f.PersonName = n
				}
				sample[i] = f
			}
		}
	}
	return nil
}

func settlementNames(ctx context.Context, db *sql.DB, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.QueryContext(ctx, `SELECT settlement_id, person_name FROM settlements
		WHERE person_name IS NOT NULL AND settlement_id IN (SELECT unnest(CAST(? AS VARCHAR[])))`, ids)
	if err != nil {
		return nil, fmt.Errorf("preview: names: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		out[id] = name
	}
	return out, rows.Err()
}

// shownPeople counts the people a preview shows one by one.
func shownPeople(pv *models.Preview) int {
	shown := len(pv.TopClues)
	if pv.Diff != nil {
		shown += len(pv.Diff.AddedSample) + len(pv.Diff.RemovedSample)
	}
	return shown
}

// audit writes what the preview showed: a draft's SQL whoever ran it (a
// modeler's as "draft": tokens cover what the output shows, and what the
// query was is kept for the province to read), and a clear view of people
// as a "view".
func (p *Previewer) audit(ctx context.Context, who casebook.User, req PreviewRequest, pv *models.Preview) error {
	shown := shownPeople(pv)
	detail := ""
	if req.Draft != nil {
		sum := sha256.Sum256([]byte(req.SQL))
		detail = fmt.Sprintf("draft sha256 %x:\n%s", sum, req.SQL)
	}
	masked := who.MasksPersonalData()
	action := "view"
	if masked {
		action = "draft"
	}
	if req.Draft == nil && (masked || shown == 0) {
		return nil
	}
	return p.Casebook.Audit(context.WithoutCancel(ctx), who, action, "preview "+req.Model, int64(shown), detail)
}
