package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	cb "collider/casebook"
	"collider/domain"
	"collider/jobs"
	"collider/models"
)

// Models is the catalog of live models, the preview engine and the
// workbench (the model lifecycle).
type Models struct {
	Catalog   *models.Catalog
	Previewer *jobs.Previewer
	Workbench *jobs.Workbench
}

func (s *Server) modelRoutes(v1 *echo.Group) {
	modelers := []cb.Role{cb.RoleProvince, cb.RoleModeler, cb.RoleAdmin}
	v1.GET("/models", s.listModels, allow(modelers...))
	v1.GET("/models/:name", s.getModel, allow(modelers...))
	v1.POST("/models/:name/preview", s.previewModel, allow(cb.RoleProvince, cb.RoleModeler))

	// The lifecycle: a modeler (or the province) submits, the province decides.
	v1.POST("/models/:name/drafts", s.submitDraft, allow(cb.RoleProvince, cb.RoleModeler))
	v1.GET("/models/:name/history", s.modelHistory, allow(modelers...))
	v1.POST("/models/:name/rollback", s.rollbackModel, allow(cb.RoleProvince))
	v1.GET("/drafts", s.listDrafts, allow(modelers...))
	v1.GET("/drafts/:id", s.getDraft, allow(modelers...))
	v1.POST("/drafts/:id/approve", s.approveDraft, allow(cb.RoleProvince))
	v1.POST("/drafts/:id/reject", s.rejectDraft, allow(cb.RoleProvince))

	v1.GET("/suppressions", s.listSuppressions, allow(cb.RoleProvince, cb.RoleModeler))
	v1.POST("/suppressions", s.addSuppression, allow(cb.RoleProvince, cb.RoleModeler))
	v1.DELETE("/suppressions/:id", s.revokeSuppression, allow(cb.RoleProvince, cb.RoleModeler))
}

// modelInfo is a model as the API lists it.
type modelInfo struct {
	Name        string          `json:"name"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	File        string          `json:"file"`
	Version     string          `json:"version"` // with its default parameters
	Params      []models.Param  `json:"params"`
	Reasons     []models.Reason `json:"reasons"`
	Severity    models.Severity `json:"severity"`
	SQL         string          `json:"sql,omitempty"`
	Tests       int             `json:"fixture_cases"`
}

func describeModel(m *models.Model, withSQL bool) modelInfo {
	info := modelInfo{Name: m.Name, Title: m.Title, Description: m.Description, File: m.File, Params: m.Params, Reasons: m.Reasons, Severity: m.Severity}
	if v, err := m.Values(nil); err == nil {
		info.Version = models.Version(m, v)
	}
	if withSQL {
		info.SQL = m.Text
	}
	if m.Tests != nil {
		info.Tests = len(m.Tests.Cases)
	}
	return info
}

func (s *Server) catalog() (*models.Catalog, error) {
	if s.Models.Catalog == nil {
		return nil, domain.Errorf(domain.ECONFLICT, "this server has no models")
	}
	return s.Models.Catalog, nil
}

func (s *Server) listModels(c echo.Context) error {
	cat, err := s.catalog()
	if err != nil {
		return err
	}
	out := []modelInfo{}
	for _, m := range cat.Models() {
		out = append(out, describeModel(m, false))
	}
	return c.JSON(http.StatusOK, map[string]any{"items": out})
}

// modelOf finds the live model the path names.
func (s *Server) modelOf(c echo.Context) (*models.Model, error) {
	cat, err := s.catalog()
	if err != nil {
		return nil, err
	}
	m, err := cat.Model(c.Param("name"))
	if err != nil {
		return nil, domain.Errorf(domain.ENOTFOUND, "no model %q", c.Param("name"))
	}
	return m, nil
}

func (s *Server) getModel(c echo.Context) error {
	m, err := s.modelOf(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, describeModel(m, true))
}

// previewRequest is a draft: other SQL text and/or other parameters, and
// the fixture cases it brings (the live model's when it brings none).
type previewRequest struct {
	SQL    string            `json:"sql,omitempty"`
	Tests  string            `json:"tests,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	Sample int               `json:"sample,omitempty"`
}

func (s *Server) previewModel(c echo.Context) error {
	if s.Models.Previewer == nil {
		return domain.Errorf(domain.ECONFLICT, "this server has no models")
	}
	var req previewRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if req.Sample < 0 || req.Sample > 100 {
		return domain.Errorf(domain.EINVALID, "sample is 0 to 100")
	}
	pr, err := s.draftRequest(c.Param("name"), req)
	if err != nil {
		return err
	}
	p, err := s.Models.Previewer.Preview(c.Request().Context(), user(c), pr)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// draftRequest turns a posted draft into the engine's request.
func (s *Server) draftRequest(name string, req previewRequest) (jobs.PreviewRequest, error) {
	pr := jobs.PreviewRequest{Model: name, Params: req.Params, Sample: req.Sample}
	if strings.TrimSpace(req.SQL) != "" {
		draft, err := s.Models.Previewer.ParseDraft(name, "draft/"+name+".sql", []byte(req.SQL))
		if err != nil {
			return pr, err
		}
		pr.Draft, pr.SQL = draft, req.SQL
	}
	if strings.TrimSpace(req.Tests) != "" {
		if pr.Draft == nil {
			return pr, domain.Errorf(domain.EINVALID, "tests come with a draft's sql")
		}
		suite, err := models.ParseSuite("draft/"+name+models.TestsSuffix, []byte(req.Tests))
		if err != nil {
			return pr, domain.Errorf(domain.EINVALID, "%w", err)
		}
		pr.Draft.Tests = suite
	}
	return pr, nil
}

func (s *Server) workbench() (*jobs.Workbench, error) {
	if s.Models.Workbench == nil {
		return nil, domain.Errorf(domain.ECONFLICT, "this server has no model workbench")
	}
	return s.Models.Workbench, nil
}

// submission is a draft posted for review: a preview request and a note.
type submission struct {
	previewRequest
	Note string `json:"note"`
}

func (s *Server) submitDraft(c echo.Context) error {
	w, err := s.workbench()
	if err != nil {
		return err
	}
	var req submission
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	pr, err := s.draftRequest(c.Param("name"), req.previewRequest)
	if err != nil {
		return err
	}
	d, err := w.Submit(c.Request().Context(), user(c), pr, req.Note, "api")
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/drafts/"+itoa(d.ID))
	return c.JSON(http.StatusCreated, d)
}

func (s *Server) listDrafts(c echo.Context) error {
	w, err := s.workbench()
	if err != nil {
		return err
	}
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	items, err := w.Drafts(c.Request().Context(), c.QueryParam("model"), c.QueryParam("status"), cursor, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(items, limit, func(d cb.ModelDraft) int64 { return d.ID }))
}

func (s *Server) getDraft(c echo.Context) error {
	w, err := s.workbench()
	if err != nil {
		return err
	}
	id, err := pathID(c)
	if err != nil {
		return err
	}
	d, err := w.Draft(c.Request().Context(), user(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// decision is the province's word on a draft.
type decision struct {
	Note   string `json:"note,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) approveDraft(c echo.Context) error { return s.decide(c, true) }
func (s *Server) rejectDraft(c echo.Context) error  { return s.decide(c, false) }

func (s *Server) decide(c echo.Context, approve bool) error {
	w, err := s.workbench()
	if err != nil {
		return err
	}
	id, err := pathID(c)
	if err != nil {
		return err
	}
	var req decision
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	var d jobs.Submission
	if approve {
		d, err = w.Approve(c.Request().Context(), user(c), id, req.Note)
	} else {
		d, err = w.Reject(c.Request().Context(), user(c), id, req.Reason)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// rollbackRequest names the version to make live again.
type rollbackRequest struct {
	Version string `json:"version"`
	Note    string `json:"note"`
}

func (s *Server) rollbackModel(c echo.Context) error {
	w, err := s.workbench()
	if err != nil {
		return err
	}
	var req rollbackRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	ev, err := w.Rollback(c.Request().Context(), user(c), c.Param("name"), req.Version, req.Note)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ev)
}

func (s *Server) modelHistory(c echo.Context) error {
	w, err := s.workbench()
	if err != nil {
		return err
	}
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	items, err := w.History(c.Request().Context(), c.Param("name"), cursor, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(items, limit, func(e cb.ModelEvent) int64 { return e.ID }))
}

func (s *Server) listSuppressions(c echo.Context) error {
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	items, err := s.Casebook.Suppressions(c.Request().Context(), user(c), cursor, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(items, limit, func(x cb.Suppression) int64 { return x.ID }))
}

func (s *Server) addSuppression(c echo.Context) error {
	var in cb.Suppression
	if err := bindJSON(c, &in); err != nil {
		return err
	}
	out, err := s.Casebook.Suppress(c.Request().Context(), user(c), cb.Suppression{Kind: in.Kind, Model: in.Model,
		PersonID: in.PersonID, InstitutionID: in.InstitutionID, Reason: in.Reason, ExpiresAt: in.ExpiresAt})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) revokeSuppression(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	out, err := s.Casebook.RevokeSuppression(c.Request().Context(), user(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}
