// This file is the one preview engine behind `collider models preview`, the
// API and the pages: a draft model (another SQL text and/or other
// parameters) run against the loaded data, publishing nothing, compared
// with the live version.
package jobs

import (
	"context"
	"database/sql"
	"fmt"

	"collider/casebook"
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
	Store   *store.Store
	Catalog *models.Catalog
}

// PreviewRequest says what to preview.
type PreviewRequest struct {
	Model  string
	Draft  *models.Model     // nil: the live model, with Params
	Params map[string]string // overrides of the draft's defaults
	Sample int
}

// ParseDraft parses a draft model's text for the live model name; its
// fixture tests are the live model's unless the draft brings its own.
func (p *Previewer) ParseDraft(name, file string, text []byte) (*models.Model, error) {
	live, err := p.Catalog.Model(name)
	if err != nil {
		return nil, casebook.Errorf(casebook.ENOTFOUND, "%v", err)
	}
	m, err := models.Parse(file, text)
	if err != nil {
		return nil, casebook.Errorf(casebook.EINVALID, "%v", err)
	}
	if m.Name != live.Name {
		return nil, casebook.Errorf(casebook.EINVALID, "%s: the draft is model %q, not %q", file, m.Name, live.Name)
	}
	if m.Tests == nil {
		m.Tests = live.Tests
	}
	return m, nil
}

// Preview runs the draft against the loaded data. The draft's query must
// have the right shape; failing fixtures are reported, not fatal: the
// modeler is still deciding. Figures are unmasked; mask for the reader.
func (p *Previewer) Preview(ctx context.Context, req PreviewRequest) (*models.Preview, error) {
	live, err := p.Catalog.Model(req.Model)
	if err != nil {
		return nil, casebook.Errorf(casebook.ENOTFOUND, "%v", err)
	}
	draft := req.Draft
	if draft == nil {
		draft = live
	}
	if _, err := draft.Values(req.Params); err != nil {
		return nil, casebook.Errorf(casebook.EINVALID, "%v", err)
	}
	verdicts, err := NewTester().Validate(ctx, draft)
	if err != nil {
		return nil, err
	}
	if v := verdicts[0]; v.Err != nil && len(v.Cases) == 0 {
		return nil, casebook.Errorf(casebook.EINVALID, "%v", v.Err)
	}
	conn, err := p.Store.DB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer dropTemp(context.WithoutCancel(ctx), conn)
	opt := models.PreviewOptions{Draft: draft, Params: req.Params, Live: live, Sample: req.Sample}
	opt.Exclude = "casebook.issued"
	if opt.Outcomes, err = outcomesTable(ctx, conn, live.Name); err != nil {
		return nil, err
	}
	pv, err := (&models.Runner{}).Preview(ctx, conn, opt)
	if err != nil {
		return nil, casebook.Errorf(casebook.EINVALID, "%v", err)
	}
	pv.Tests = verdicts[0].Cases
	return pv, nil
}

// outcomesTable makes a temp table of the model's settlements already
// investigated (confirmed or dismissed), for the preview's precision.
func outcomesTable(ctx context.Context, conn *sql.Conn, model string) (string, error) {
	if _, err := conn.ExecContext(ctx, `CREATE OR REPLACE TEMP TABLE preview_outcomes AS
		SELECT i.settlement_id, l.outcome FROM casebook.issued i JOIN casebook.leads l ON l.lead_id = i.clue_id
		WHERE i.model = ? AND l.outcome IN ('confirmed', 'dismissed')`, model); err != nil {
		return "", fmt.Errorf("preview outcomes: %w", err)
	}
	return "preview_outcomes", nil
}
