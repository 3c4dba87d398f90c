package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	cb "collider/casebook"
	"collider/jobs"
	"collider/models"
)

// Models is the catalog of live models and the preview engine.
type Models struct {
	Catalog   *models.Catalog
	Previewer *jobs.Previewer
}

func (s *Server) modelRoutes(v1 *echo.Group) {
	modelers := []cb.Role{cb.RoleProvince, cb.RoleModeler, cb.RoleAdmin}
	v1.GET("/models", s.listModels, allow(modelers...))
	v1.GET("/models/:name", s.getModel, allow(modelers...))
	v1.POST("/models/:name/preview", s.previewModel, allow(cb.RoleProvince, cb.RoleModeler))

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
		return nil, cb.Errorf(cb.ECONFLICT, "this server has no models")
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

func (s *Server) getModel(c echo.Context) error {
	cat, err := s.catalog()
	if err != nil {
		return err
	}
	m, err := cat.Model(c.Param("name"))
	if err != nil {
		return cb.Errorf(cb.ENOTFOUND, "no model %q", c.Param("name"))
	}
	return c.JSON(http.StatusOK, describeModel(m, true))
}

// previewRequest is a draft: other SQL text and/or other parameters.
type previewRequest struct {
	SQL    string            `json:"sql,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	Sample int               `json:"sample,omitempty"`
}

func (s *Server) previewModel(c echo.Context) error {
	if s.Models.Previewer == nil {
		return cb.Errorf(cb.ECONFLICT, "this server has no models")
	}
	var req previewRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if req.Sample < 0 || req.Sample > 100 {
		return cb.Errorf(cb.EINVALID, "sample is 0 to 100")
	}
	name := c.Param("name")
	pr := jobs.PreviewRequest{Model: name, Params: req.Params, Sample: req.Sample}
	if strings.TrimSpace(req.SQL) != "" {
		draft, err := s.Models.Previewer.ParseDraft(name, "draft/"+name+".sql", []byte(req.SQL))
		if err != nil {
			return err
		}
		pr.Draft, pr.SQL = draft, req.SQL
	}
	p, err := s.Models.Previewer.Preview(c.Request().Context(), user(c), pr)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
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
	persons := 0
	for _, it := range items {
		if it.PersonID != "" {
			persons++
		}
	}
	if err := s.auditView(c, "suppressions", persons); err != nil {
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
