// collider serve: the API and the schedule together, until SIGTERM/SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"collider/api"
	"collider/jobs"
	"collider/models"
	"collider/store"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf storeFlags
	sf.register(fs)
	inbox := fs.String("inbox", envOr("COLLIDER_INBOX", ""), "inbox the runs load from (env COLLIDER_INBOX)")
	modelsDir := fs.String("models", envOr("COLLIDER_MODELS", ""), "read the models from this directory (env COLLIDER_MODELS)")
	addr := fs.String("addr", envOr("COLLIDER_ADDR", ":8080"), "listen address (env COLLIDER_ADDR)")
	grace := fs.Duration("shutdown-grace", 30*time.Second, "how long a shutdown waits for the running step and requests")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cat, err := liveCatalog(ctx, *modelsDir, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 1
	}
	s, err := sf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 1
	}
	defer s.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 1
	}
	log := slog.Default()
	log.Info("serving", "addr", ln.Addr().String(), "data", sf.data, "inbox", *inbox)
	fmt.Fprintf(stderr, "collider serving on http://%s (data %s)\n", ln.Addr(), sf.data)
	if err := serve(ctx, s, cat, *inbox, ln, *grace, log); err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 1
	}
	return 0
}

// serve runs the API (and the pipeline behind it) on ln until ctx ends, then
// shuts down in order: the running run's step is cancelled and rolled back,
// requests finish, then the store closes (deferred by the caller).
func serve(ctx context.Context, s *store.Store, cat *models.Catalog, inbox string, ln net.Listener, grace time.Duration, log *slog.Logger) error {
	if err := jobs.MarkInterrupted(ctx, s.DB); err != nil {
		return err
	}
	cb := newCasebook(s)
	p := &jobs.Pipeline{Store: s, Casebook: cb, Catalog: cat, Inbox: inbox, Log: log}
	srv := api.New(api.Config{Store: s, Casebook: cb, Runs: &serverRuns{p: p, ctx: ctx}, Models: api.Models{Catalog: cat, Previewer: &jobs.Previewer{Store: s, Catalog: cat}}, Log: log})
	err := srv.Serve(ctx, ln, grace)
	stopCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if serr := p.Stop(stopCtx); serr != nil {
		log.Warn("the running run did not stop in time", "err", serr)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// serverRuns starts runs bound to the server's lifetime, not the request's.
type serverRuns struct {
	p   *jobs.Pipeline
	ctx context.Context
}

func (r *serverRuns) Start(_ context.Context, trigger, by string) (int64, error) {
	return r.p.Start(r.ctx, trigger, by)
}
func (r *serverRuns) List(ctx context.Context, before int64, limit int) ([]jobs.RunRecord, error) {
	return r.p.List(ctx, before, limit)
}
func (r *serverRuns) Get(ctx context.Context, id int64) (jobs.RunRecord, error) {
	return r.p.Get(ctx, id)
}
