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
	"os"
	"runtime/debug"
	"strings"
	"time"

	"collider/api"
	"collider/jobs"
	"collider/metrics"
	"collider/models"
	"collider/store"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := parseWithConfig(fs, args, func(c *Config, fs *flag.FlagSet) {
		c.serviceFlags(fs)
		fs.StringVar(&c.Addr, "addr", c.Addr, "listen address (env COLLIDER_ADDR)")
		fs.StringVar(&c.Schedule, "schedule", c.Schedule, "cron schedule in Asia/Shanghai, 5 fields or 6 with seconds; off to disable (env COLLIDER_SCHEDULE)")
		fs.IntVar(&c.ReadCacheMB, "read-cache-mb", c.ReadCacheMB, "MB of clues and lead events kept in memory for the API and the pages; 0 for none (env COLLIDER_READ_CACHE_MB)")
		fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", c.ShutdownGrace, "how long a shutdown waits for the running step and requests (env COLLIDER_SHUTDOWN_GRACE)")
		c.backupFlags(fs)
	})
	if err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 2
	}
	files, err := dirModels(ctx, cfg.Models, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 1
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 1
	}
	defer s.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 1
	}
	log := slog.Default()
	fmt.Fprintf(stderr, "collider serving on http://%s (data %s, inbox %s, schedule %q %s)\n", ln.Addr(), cfg.Data, orDash(cfg.Inbox), cfg.Schedule, jobs.ScheduleZone)
	if err := serve(ctx, s, cfg, ln, log, files, stderr); err != nil {
		fmt.Fprintln(stderr, "collider serve:", err)
		return 1
	}
	fmt.Fprintln(stderr, "collider stopped")
	return 0
}

// serve runs the API, the schedule and the pipeline behind them on ln until
// ctx ends, then shuts down in order within cfg.ShutdownGrace: the schedule
// stops firing, the running run's current step is cancelled (its
// transaction rolls back), requests finish, and the caller closes the store.
//
// The models are the shipped ones and what the store's history made live;
// files (of --models DIR) that differ become pending versions.
func serve(ctx context.Context, s *store.Store, cfg Config, ln net.Listener, log *slog.Logger, files []*models.Model, stderr io.Writer) error {
	tuneGC()
	if err := jobs.MarkInterrupted(ctx, s.DB); err != nil {
		return err
	}
	cb := newCasebook(s, cfg)
	defer cb.Close() // after the requests: their audit lines are committed before the store closes
	// Every lead in memory before the first request (a million take seconds).
	start := time.Now()
	if err := cb.LoadLeads(ctx); err != nil {
		return err
	}
	log.Info("leads in memory", "seconds", time.Since(start).Seconds())
	go func() { // the newest clues into the read cache, while the first requests come
		if n, err := cb.WarmReadCache(ctx); err != nil && ctx.Err() == nil {
			log.Warn("read cache", "err", err)
		} else {
			log.Info("read cache warmed", "clues", n, "seconds", time.Since(start).Seconds())
		}
	}()
	sb := newSandbox(s, cfg)
	sb.Log, sb.Snapshot.Log = log, log
	wb, err := newWorkbench(ctx, s, cfg, cb, sb, log)
	if err != nil {
		return err
	}
	cat := wb.Previewer.Catalog
	series := metrics.NewPipeline()
	p := &jobs.Pipeline{Store: s, Casebook: cb, Catalog: cat, Inbox: cfg.Inbox, Log: log, Snapshot: sb.Snapshot, Observer: series}
	// Runs live as long as the server, not a request; runCtx ends when the
	// shutdown begins, so that nothing starts a run after it.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	stopSchedule := func() {}
	if sched := strings.TrimSpace(cfg.Schedule); sched != "" && sched != "off" {
		sc, err := jobs.NewSchedule(runCtx, sched, p, log)
		if err != nil {
			return err
		}
		sc.Start()
		stopSchedule = func() { sc.Stop() }
		defer stopSchedule()
		log.Info("schedule", "spec", sched, "zone", jobs.ScheduleZone, "next", sc.Next().Format(time.RFC3339))
	}
	// A store that has no snapshot yet (a new one, or one from before the
	// sandbox) gets it now, not in a modeler's first request; then the
	// changed files of --models DIR are previewed and submitted.
	go func() {
		if _, err := sb.Snapshot.Refresh(runCtx); err != nil && runCtx.Err() == nil {
			log.Error("sandbox snapshot", "err", err)
		}
		if err := submitFiles(runCtx, wb, cfg.Models, files, stderr); err != nil && runCtx.Err() == nil {
			log.Error("models directory", "dir", cfg.Models, "err", err)
		}
	}()
	if spec := strings.TrimSpace(cfg.BackupSchedule); spec != "" && spec != "off" {
		b := &jobs.Backups{Store: s, Casebook: cb, Dir: cfg.backupDir(), Keep: cfg.BackupKeep, Log: log}
		if err := os.MkdirAll(b.Dir, 0o750); err != nil {
			return fmt.Errorf("backup_dir: %w", err)
		}
		bs, err := jobs.NewBackupSchedule(runCtx, spec, b)
		if err != nil {
			return err
		}
		bs.Start()
		defer bs.Stop()
		log.Info("backup schedule", "spec", spec, "zone", jobs.ScheduleZone, "dir", b.Dir, "keep", b.Keep, "next", bs.Next().Format(time.RFC3339))
	}
	srv := api.New(api.Config{Store: s, Casebook: cb, Runs: api.PipelineRuns(runCtx, p), Log: log,
		Models: api.Models{Catalog: cat, Previewer: wb.Previewer, Workbench: wb}})
	srv.Registry().MustRegister(series, metrics.NewState(cb, log))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln, cfg.ShutdownGrace) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// The schedule stops firing and no trigger starts a run any more; then
	// the running run stops: its step rolls back while requests drain.
	log.Info("shutting down", "grace", cfg.ShutdownGrace)
	stopSchedule()
	cancelRuns()
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := p.Stop(stopCtx); err != nil {
		log.Warn("the running run did not stop in time", "err", err)
	}
	err = <-errc
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// tuneMalloc has the C allocator DuckDB uses keep two arenas, not eight a
// core, each holding on to what it freed: the server's RSS crept up run
// after run. MALLOC_ARENA_MAX in the environment wins.
func tuneMalloc() {
	if os.Getenv("MALLOC_ARENA_MAX") == "" {
		store.LimitMallocArenas(2)
	}
}

// tuneGC trades memory for the API's latency: the garbage collector runs a
// fifth as often (GOGC 400: its marking took a tenth of the CPU under a
// hundred clients), and sooner only when the heap nears a fifth of the
// memory (DuckDB's limit is 60 %). GOGC and GOMEMLIMIT in the environment
// win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if m := store.PhysicalMemory(); m > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(m / 5))
	}
}
