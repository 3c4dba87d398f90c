// Package api is the HTTP face of collider: JSON under /api/v1 with bearer
// tokens, downloads, health and Prometheus metrics, and (later) the pages.
// Handlers are thin: they parse, call the casebook, models or jobs, and
// translate errors in one place.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"collider/casebook"
	"collider/jobs"
	"collider/store"
)

// Server serves the API.
type Server struct {
	Echo     *echo.Echo
	Store    *store.Store
	Casebook *casebook.Casebook
	Ledger   *jobs.Ledger // the delivery ledger
	Runs     Runs         // nil: no pipeline behind this server
	Models   Models       // the live models and the preview engine
	Log      *slog.Logger
	registry *prometheus.Registry
	metrics  *httpMetrics
	http     *http.Server
	pages    templates
	sessions sessions
	fixtures fixtureCache
}

// Config is what New needs.
type Config struct {
	Store    *store.Store
	Casebook *casebook.Casebook
	Runs     Runs
	Models   Models
	Log      *slog.Logger
}

// New builds the server and its routes.
func New(cfg Config) *Server {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{Echo: e, Store: cfg.Store, Casebook: cfg.Casebook, Runs: cfg.Runs, Models: cfg.Models, Log: cfg.Log,
		Ledger: &jobs.Ledger{DB: cfg.Store.DB, Casebook: cfg.Casebook}}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	s.registry = prometheus.NewRegistry()
	s.metrics = newHTTPMetrics(s.registry)
	pages, err := parseTemplates()
	if err != nil {
		panic(err) // embedded, and parsed by every test: a broken template never ships
	}
	s.pages = pages
	e.HTTPErrorHandler = s.handleError
	// Recover first, so a panic anywhere becomes a JSON 500 and a log line.
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.Log.Error("panic", "path", c.Request().URL.Path, "err", err, "stack", string(stack))
		return err
	}}))
	e.Use(s.observe)
	s.routes()
	return s
}

// Serve listens on addr until ctx ends, then shuts down gracefully within grace.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	s.http = &http.Server{
		Handler:           s.Echo,
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: it would cut long downloads; requests are bounded per route.
		IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.http.Shutdown(shutdownCtx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
