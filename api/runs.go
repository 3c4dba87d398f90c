package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	cb "collider/casebook"
	"collider/domain"
	"collider/jobs"
)

// Runs starts and reports pipeline runs (jobs.Pipeline).
type Runs interface {
	// Start begins a run in the background; ECONFLICT names the running one.
	Start(ctx context.Context, trigger, by string) (int64, error)
	List(ctx context.Context, before int64, limit int) ([]jobs.RunRecord, error)
	Get(ctx context.Context, id int64) (jobs.RunRecord, error)
	Count(ctx context.Context) (int64, error)
}

// PipelineRuns is a pipeline's runs as the server starts them: bound to
// ctx, the server's lifetime, not to the request that started them.
func PipelineRuns(ctx context.Context, p *jobs.Pipeline) Runs { return pipelineRuns{p, ctx} }

type pipelineRuns struct {
	*jobs.Pipeline
	ctx context.Context
}

func (r pipelineRuns) Start(_ context.Context, trigger, by string) (int64, error) {
	return r.Pipeline.Start(r.ctx, trigger, by)
}

func (s *Server) runRoutes(v1 *echo.Group) {
	v1.POST("/runs", s.startRun, allow(cb.RoleProvince, cb.RoleAdmin))
	v1.GET("/runs", s.listRuns, allow(cb.RoleProvince, cb.RoleAdmin, cb.RoleModeler))
	v1.GET("/runs/:id", s.getRun, allow(cb.RoleProvince, cb.RoleAdmin, cb.RoleModeler))
}

func (s *Server) runs() (Runs, error) {
	if s.Runs == nil {
		return nil, domain.Errorf(domain.ECONFLICT, "this server has no pipeline (started without an inbox)")
	}
	return s.Runs, nil
}

func (s *Server) startRun(c echo.Context) error {
	r, err := s.runs()
	if err != nil {
		return err
	}
	id, err := r.Start(c.Request().Context(), "api", user(c).Name)
	if err != nil {
		return err
	}
	rec, err := r.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/runs/"+itoa(id))
	return c.JSON(http.StatusAccepted, rec)
}

func (s *Server) listRuns(c echo.Context) error {
	r, err := s.runs()
	if err != nil {
		return err
	}
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	// The page is judged full at domain.PageLimit: ask for exactly that many,
	// or a size the pipeline cuts down would end the paging early.
	items, err := r.List(c.Request().Context(), cursor, domain.PageLimit(limit))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(items, limit, func(r jobs.RunRecord) int64 { return r.ID }))
}

// runOf reads the run the path names.
func (s *Server) runOf(c echo.Context) (jobs.RunRecord, error) {
	r, err := s.runs()
	if err != nil {
		return jobs.RunRecord{}, err
	}
	id, err := pathID(c)
	if err != nil {
		return jobs.RunRecord{}, err
	}
	return r.Get(c.Request().Context(), id)
}

func (s *Server) getRun(c echo.Context) error {
	rec, err := s.runOf(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rec)
}
