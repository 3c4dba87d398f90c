// The modelers' pages: every model with its live version and how its
// versions fared, and a model's page with its SQL, parameters, fixture
// results, the preview form (parameters and draft SQL, run in the sandbox)
// and the lifecycle: submit, approve or reject, roll back, history.
package api

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"collider/casebook"
	"collider/domain"
	"collider/jobs"
	"collider/models"
)

type modelRow struct {
	Name, Title, Summary, Version string
	Issued, Confirmed, Dismissed  int64
	Precision                     *float64
	Trend                         string
}

type modelsView struct {
	Models  []modelRow
	Pending []casebook.ModelDraft
	titles  map[string]string
}

func (v modelsView) ModelTitle(n string) string { return titleOf(v.titles, n) }

func versionOf(m *models.Model) string {
	v, _ := m.Values(nil)
	return models.Version(m, v)
}

func (s *Server) modelsPage(c echo.Context) error {
	ctx, u := c.Request().Context(), user(c)
	cat, err := s.catalog()
	if err != nil {
		return err
	}
	stats, err := s.Casebook.VersionStats(ctx, u)
	if err != nil {
		return err
	}
	v := modelsView{titles: s.modelTitles()}
	for _, m := range cat.Models() {
		row := modelRow{Name: m.Name, Title: m.Title, Summary: firstSentence(m.Description), Version: versionOf(m)}
		var trend []bar
		for _, st := range stats {
			if st.Model != m.Name {
				continue
			}
			row.Issued, row.Confirmed, row.Dismissed = row.Issued+st.Issued, row.Confirmed+st.Confirmed, row.Dismissed+st.Dismissed
			if st.Precision != nil {
				trend = append(trend, bar{Label: st.Version[:8], Value: *st.Precision * 100})
			}
		}
		if row.Confirmed+row.Dismissed > 0 {
			p := float64(row.Confirmed) / float64(row.Confirmed+row.Dismissed)
			row.Precision = &p
		}
		row.Trend = sparkline(trend)
		v.Models = append(v.Models, row)
	}
	if s.Models.Workbench != nil {
		if v.Pending, err = s.Models.Workbench.Drafts(ctx, "", casebook.DraftPending, 0, 100); err != nil {
			return err
		}
	}
	return s.render(c, http.StatusOK, "models", "碰撞模型", v)
}

func firstSentence(s string) string {
	if i := strings.IndexAny(s, ".。"); i > 0 && i < 200 {
		return s[:i+1]
	}
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

type modelView struct {
	forms
	Model   *models.Model
	Version string
	Tests   []models.CaseResult
	Preview *models.Preview
	Drafts  []casebook.ModelDraft
	History []casebook.ModelEvent
}

// Value and Error read the preview form.
func (v modelView) Value(field string) string { return v.forms.Value("preview", field) }
func (v modelView) Error(field string) string { return v.forms.Error("preview", field) }

// ReasonLabel is one of the model's reason codes in Chinese.
func (v modelView) ReasonLabel(code string) string { return v.Model.ReasonLabel(code) }

// Precision writes a preview's precision counts.
func (modelView) Precision(p models.PrecisionCounts) string {
	if p.Value() < 0 {
		return "无已核查线索"
	}
	return fmt.Sprintf("%.1f%%（%d/%d）", 100*p.Value(), p.Confirmed, p.Confirmed+p.Dismissed)
}

func (s *Server) modelPage(c echo.Context) error {
	return s.showModel(c, http.StatusOK, nil, nil)
}

func (s *Server) showModel(c echo.Context, status int, fs forms, pv *models.Preview) error {
	ctx := c.Request().Context()
	m, err := s.modelOf(c)
	if err != nil {
		return err
	}
	v := modelView{forms: fs, Model: m, Version: versionOf(m), Preview: pv}
	if v.forms == nil {
		v.forms = forms{}
	}
	if v.Tests, err = s.fixtureResults(ctx, m); err != nil {
		return err
	}
	if wb := s.Models.Workbench; wb != nil {
		if v.Drafts, err = wb.Drafts(ctx, m.Name, "", 0, 50); err != nil {
			return err
		}
		if v.History, err = wb.History(ctx, m.Name, 0, 100); err != nil {
			return err
		}
	}
	return s.render(c, status, "model", m.Title, v)
}

// fixtureCache remembers the fixture results of the live versions: a
// version's cases give the same results every time.
type fixtureCache struct {
	mu      sync.Mutex
	results map[string][]models.CaseResult
}

// fixtureResults runs (once per version) the live model's fixture cases in
// a scratch store of their own.
func (s *Server) fixtureResults(ctx context.Context, m *models.Model) ([]models.CaseResult, error) {
	v := versionOf(m)
	s.fixtures.mu.Lock()
	defer s.fixtures.mu.Unlock()
	if r, ok := s.fixtures.results[v]; ok {
		return r, nil
	}
	verdicts, err := jobs.NewTester().Validate(ctx, m)
	if err != nil {
		return nil, err
	}
	if s.fixtures.results == nil {
		s.fixtures.results = map[string][]models.CaseResult{}
	}
	s.fixtures.results[v] = verdicts[0].Cases
	return verdicts[0].Cases, nil
}

// previewForm reads the preview form into the engine's request; what is
// wrong is said beside its field.
func (s *Server) previewForm(c echo.Context, m *models.Model) (jobs.PreviewRequest, *formState) {
	st := &formState{Values: map[string]string{"sql": c.FormValue("sql"), "note": c.FormValue("note")}, Errors: map[string]string{}}
	req := jobs.PreviewRequest{Model: m.Name, Params: map[string]string{}, Sample: 10}
	for _, p := range m.Params {
		key := "param_" + p.Name
		val := strings.TrimSpace(c.FormValue(key))
		st.Values[key] = val
		if val == "" {
			continue
		}
		if _, err := p.Parse(val); err != nil {
			st.Errors[key] = err.Error()
			continue
		}
		req.Params[p.Name] = val
	}
	if sql := strings.TrimSpace(st.Values["sql"]); sql != "" {
		draft, err := s.Models.Previewer.ParseDraft(m.Name, "draft/"+m.Name+".sql", []byte(sql))
		if err != nil {
			st.Errors["sql"] = domain.ErrorMessage(err)
		}
		req.Draft, req.SQL = draft, sql
	}
	return req, st
}

func (s *Server) modelPreviewPage(c echo.Context) error { return s.modelForm(c, false) }
func (s *Server) modelSubmitPage(c echo.Context) error  { return s.modelForm(c, true) }

// modelForm previews the form's draft, or submits it for approval.
func (s *Server) modelForm(c echo.Context, submit bool) error {
	m, err := s.modelOf(c)
	if err != nil {
		return err
	}
	if s.Models.Previewer == nil {
		return domain.Errorf(domain.ECONFLICT, "this server has no preview engine")
	}
	req, st := s.previewForm(c, m)
	if submit && strings.TrimSpace(st.Values["note"]) == "" {
		st.Errors["note"] = "提交审批须说明草稿改了什么、为什么。"
	}
	if len(st.Errors) > 0 {
		return s.showModel(c, http.StatusBadRequest, forms{"preview": st}, nil)
	}
	ctx, u := c.Request().Context(), user(c)
	if submit {
		if s.Models.Workbench == nil {
			return domain.Errorf(domain.ECONFLICT, "this server has no model workbench")
		}
		d, err := s.Models.Workbench.Submit(ctx, u, req, st.Values["note"], "page")
		if err == nil {
			return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/models/%s#draft-%d", m.Name, d.ID))
		}
		return s.formFailed(c, err, st)
	}
	pv, err := s.Models.Previewer.Preview(ctx, u, req)
	if err != nil {
		return s.formFailed(c, err, st)
	}
	return s.showModel(c, http.StatusOK, forms{"preview": st}, pv)
}

// formFailed shows the model page again with what went wrong, when the
// engine refused the draft (bad SQL, a forbidden capability, a time limit).
func (s *Server) formFailed(c echo.Context, err error, st *formState) error {
	switch domain.ErrorCode(err) {
	case domain.EINVALID, domain.ECONFLICT:
		st.Errors[""] = domain.ErrorMessage(err)
		return s.showModel(c, http.StatusBadRequest, forms{"preview": st}, nil)
	}
	return err
}

func (s *Server) modelRollbackPage(c echo.Context) error {
	if s.Models.Workbench == nil {
		return domain.Errorf(domain.ECONFLICT, "this server has no model workbench")
	}
	name := c.Param("name")
	if _, err := s.Models.Workbench.Rollback(c.Request().Context(), user(c), name, c.FormValue("version"), c.FormValue("note")); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/models/"+name)
}

func (s *Server) draftDecidePage(c echo.Context) error {
	wb := s.Models.Workbench
	if wb == nil {
		return domain.Errorf(domain.ECONFLICT, "this server has no model workbench")
	}
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ctx, u := c.Request().Context(), user(c)
	var d jobs.Submission
	switch c.FormValue("decision") {
	case "approve":
		d, err = wb.Approve(ctx, u, id, c.FormValue("note"))
	case "reject":
		if strings.TrimSpace(c.FormValue("note")) == "" {
			return domain.Errorf(domain.EINVALID, "驳回须填写理由")
		}
		d, err = wb.Reject(ctx, u, id, c.FormValue("note"))
	default:
		return domain.Errorf(domain.EINVALID, "decision is approve or reject")
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/models/%s#draft-%d", d.Model, d.ID))
}

// sparkline draws a small precision trend, one point per version.
func sparkline(points []bar) string {
	if len(points) == 0 {
		return ""
	}
	sort.SliceStable(points, func(i, j int) bool { return false })
	const w, h = 140, 28
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="各版本准确率" xmlns="http://www.w3.org/2000/svg">`, w, h, w, h)
	step := float64(w-10) / float64(max(1, len(points)-1))
	var path []string
	for i, p := range points {
		x, y := 5+float64(i)*step, float64(h-4)-p.Value/100*float64(h-8)
		path = append(path, fmt.Sprintf("%.1f,%.1f", x, y))
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="#1f6fb2"><title>%s %.1f%%</title></circle>`, x, y, p.Label, p.Value)
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#1f6fb2" stroke-width="1.5"/></svg>`, strings.Join(path, " "))
	return b.String()
}
