// This file is the pipeline (流水线): find complete deliveries → validate →
// load → run every live model → publish the batch → route the leads. Runs
// never overlap, whether started by the schedule, the API or the command
// line: one lock for all of them.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"collider/casebook"
	"collider/domain"
	"collider/models"
	"collider/store"
)

// Pipeline runs the night's work.
type Pipeline struct {
	Store    *store.Store
	Casebook *casebook.Casebook
	Catalog  *models.Catalog // the live models
	Inbox    string          // empty: load nothing, run the models on what is loaded
	Log      *slog.Logger
	Now      func() time.Time // suppression clock for the models; time.Now when nil
	// ProgressEvery is how often a running run logs its progress; 10 s when 0.
	ProgressEvery time.Duration
	// Snapshot, when set, is refreshed after the loads, so that drafts read
	// what the night brought.
	Snapshot *Snapshot
	// Observer is told of runs, steps, deliveries and batches as they
	// happen (the Prometheus series); nil: nobody.
	Observer Observer
	// Full makes every run examine every model over every settlement
	// (collider run --full); otherwise a person-scoped model re-examines
	// only what changed since its last batch (scope.go).
	Full bool

	mu      sync.Mutex
	running *runLog
	cancel  context.CancelFunc
	done    chan struct{}
	// unrecorded are finished runs whose end could not be written (a full
	// disk); they are written before the next run starts, and read from
	// here until then.
	unrecorded []*runLog
}

// Outcome is what a finished run did.
type Outcome struct {
	RunID   int64
	Status  string
	BatchID int64 // 0 when nothing was published
	Batch   casebook.Batch
	Loads   []LoadResult
	Models  []casebook.ModelRun
	Err     error
}

// Failed lists the deliveries that failed to load.
func (o Outcome) Failed() []LoadResult {
	var out []LoadResult
	for _, r := range o.Loads {
		if r.Status == StatusFailed {
			out = append(out, r)
		}
	}
	return out
}

func (p *Pipeline) log() *slog.Logger {
	if p.Log == nil {
		return slog.Default()
	}
	return p.Log
}

// begin takes the run lock, or answers ECONFLICT naming the running run.
func (p *Pipeline) begin(ctx context.Context, trigger, by string) (*runLog, context.Context, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running != nil {
		return nil, nil, domain.Errorf(domain.ECONFLICT, "run %d is still running; runs never overlap", p.running.id)
	}
	if ctx.Err() != nil {
		return nil, nil, domain.Errorf(domain.ECONFLICT, "collider is shutting down; no new run starts")
	}
	for len(p.unrecorded) > 0 {
		if err := p.unrecorded[0].record(ctx); err != nil {
			return nil, nil, fmt.Errorf("the end of run %d is not yet recorded: %w", p.unrecorded[0].id, p.Store.DiskFull(err))
		}
		p.unrecorded = p.unrecorded[1:]
	}
	rl, err := newRunLog(ctx, p.Store.DB, p.log(), p.observer(), trigger, by)
	if err != nil {
		return nil, nil, p.Store.DiskFull(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	p.running, p.cancel, p.done = rl, cancel, make(chan struct{})
	return rl, runCtx, nil
}

func (p *Pipeline) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cancel()
	close(p.done)
	p.running, p.cancel = nil, nil
}

// Run runs the pipeline now and waits for it.
func (p *Pipeline) Run(ctx context.Context, trigger, by string) (Outcome, error) {
	rl, runCtx, err := p.begin(ctx, trigger, by)
	if err != nil {
		return Outcome{}, err
	}
	defer p.end()
	out := p.run(runCtx, rl)
	return out, out.Err
}

// Start runs the pipeline in the background and returns its run id; ctx
// bounds the run (the server's lifetime, not the request's).
func (p *Pipeline) Start(ctx context.Context, trigger, by string) (int64, error) {
	rl, runCtx, err := p.begin(ctx, trigger, by)
	if err != nil {
		return 0, err
	}
	go func() {
		defer p.end()
		defer func() {
			if r := recover(); r != nil {
				p.log().Error("run panicked", "run", rl.id, "panic", r)
				rl.finish(runCtx, RunFailed, nil, fmt.Errorf("panic: %v", r))
			}
		}()
		p.run(runCtx, rl)
	}()
	return rl.id, nil
}

// Stop cancels the running run, if any, and waits for it to roll back its
// current step, at most until ctx ends.
func (p *Pipeline) Stop(ctx context.Context) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Running returns the id of the running run, or 0.
func (p *Pipeline) Running() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running == nil {
		return 0
	}
	return p.running.id
}

// List lists runs, newest first.
func (p *Pipeline) List(ctx context.Context, before int64, limit int) ([]RunRecord, error) {
	runs, err := ListRuns(ctx, p.Store.DB, before, limit)
	if err != nil {
		return nil, err
	}
	for i := range runs {
		if err := p.withProgress(ctx, &runs[i]); err != nil {
			return nil, err
		}
	}
	return runs, nil
}

// Count says how many runs there have been.
func (p *Pipeline) Count(ctx context.Context) (int64, error) {
	var n int64
	err := p.Store.DB.QueryRowContext(ctx, "SELECT count(*) FROM casebook.runs").Scan(&n)
	return n, err
}

// Get returns a run with its steps and, while it runs, its progress.
func (p *Pipeline) Get(ctx context.Context, id int64) (RunRecord, error) {
	r, err := GetRun(ctx, p.Store.DB, id)
	if err != nil {
		return r, err
	}
	return r, p.withProgress(ctx, &r)
}

// withProgress adds the live progress to a record that says running. A
// run that finished between the read and now has none: its record is read
// again, so that a running run is never shown without its progress.
func (p *Pipeline) withProgress(ctx context.Context, r *RunRecord) error {
	if r.Status != RunRunning {
		return nil
	}
	p.mu.Lock()
	rl := p.running
	for _, u := range p.unrecorded {
		if u.id == r.ID {
			u.overlay(r)
			p.mu.Unlock()
			return nil
		}
	}
	p.mu.Unlock()
	if rl != nil && rl.id == r.ID {
		r.Progress = rl.progress()
		return nil
	}
	again, err := GetRun(ctx, p.Store.DB, r.ID)
	if err != nil {
		return err
	}
	*r = again
	return nil
}

// run does the work of one run and records it.
func (p *Pipeline) run(ctx context.Context, rl *runLog) Outcome {
	out := Outcome{RunID: rl.id}
	log := p.log().With("run", rl.id)
	log.Info("run started", "trigger", rl.trigger)
	p.observer().RunStarted(rl.trigger)
	every := p.ProgressEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	progressCtx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	// The room to spill into, as it is now (a disk freed since is room again).
	if err := p.Store.RefreshSpillLimit(ctx); err != nil {
		log.Warn("reading the temp directory's room", "err", err)
	}
	go rl.logProgress(progressCtx, every)
	finish := func(status string, err error) Outcome {
		if ctx.Err() != nil && status != RunSucceeded && status != RunPartial {
			status = RunInterrupted
		}
		out.Status, out.Err = status, err
		var batch *int64
		if out.BatchID > 0 {
			batch = &out.BatchID
		}
		// A quiet moment to fold the logs into the files, where there is
		// room; the run shows as running until it is done.
		p.Store.CheckpointOrLog(context.WithoutCancel(ctx), log)
		if rerr := rl.finish(ctx, status, batch, err); rerr != nil {
			log.Error("the run's end is not recorded; it will be before the next run", "err", p.Store.DiskFull(rerr))
			p.mu.Lock()
			p.unrecorded = append(p.unrecorded, rl)
			p.mu.Unlock()
		}
		log.Info("run finished", "status", status, "batch", out.BatchID, "err", err)
		return out
	}

	// 1. Discovery and loading: each delivery in its own transaction; a bad
	// one fails alone. The inbox keeps every delivery; those seen before
	// are known by their files' stat and cost nothing more.
	if p.Inbox != "" {
		no, start := rl.begin(ctx, "discover", p.Inbox, 0)
		ds, errs := Discover(p.Inbox)
		seen, err := (&Loader{Store: p.Store}).SeenBefore(ctx, ds)
		if err != nil {
			errs, seen = append(errs, err), make([]LoadResult, len(ds))
		}
		var fresh []Delivery
		for i, d := range ds {
			if seen[i].Status != StatusSkipped {
				fresh = append(fresh, d)
				continue
			}
			log.Debug("delivery skipped", "feed", d.Feed, "delivery", d.Name, "status", StatusSkipped, "note", seen[i].Note)
			out.Loads = append(out.Loads, seen[i])
			p.observer().DeliveryFinished(seen[i])
		}
		var derr error
		if len(errs) > 0 {
			derr = errors.Join(errs...)
		}
		rl.setDetail(ctx, no, fmt.Sprintf("%s: %d deliveries, %d new", p.Inbox, len(ds), len(fresh)))
		rl.end(ctx, no, start, stepStatus(derr), int64(len(ds)), derr)
		for _, d := range fresh {
			if ctx.Err() != nil {
				return finish(RunInterrupted, ctx.Err())
			}
			in, _ := Inspect(d)
			no, start := rl.begin(ctx, "load", d.Feed+"/"+d.Name, WorkUnits(in.Rows))
			l := &Loader{Store: p.Store, Log: log, Progress: rl.add}
			res := l.Load(ctx, d)
			out.Loads = append(out.Loads, res)
			if ctx.Err() == nil { // a load the shutdown cut short is rolled back and tried again, not failed
				p.observer().DeliveryFinished(res)
			}
			status := res.Status
			if status == StatusLoaded {
				status = "succeeded"
			}
			rl.end(ctx, no, start, status, res.Loaded, res.Err)
			if errors.Is(res.Err, store.ErrDiskFull) {
				// Nothing after this would find room either; the delivery
				// was rolled back and is loaded by the next run.
				return finish(RunFailed, fmt.Errorf("load %s/%s: %w", d.Feed, d.Name, res.Err))
			}
		}
	}
	if ctx.Err() != nil {
		return finish(RunInterrupted, ctx.Err())
	}
	p.refreshSnapshot(ctx, rl, log)
	if ctx.Err() != nil {
		return finish(RunInterrupted, ctx.Err())
	}

	// 2. What each model examines (scope.go), then the models, then one
	// join of their flags back to the settlements and the clues, all on one
	// connection: its temp tables are read by publish.
	conn, err := p.Store.DB.Conn(ctx)
	if err != nil {
		return finish(RunFailed, err)
	}
	defer conn.Close()
	now := p.now() // one clock for the run: suppressions are judged once
	runner := &models.Runner{Log: log, Now: func() time.Time { return now }}
	live := p.Catalog.Models()
	sort.Slice(live, func(i, j int) bool { return live[i].Name < live[j].Name })
	versions := map[string]string{}
	for _, m := range live {
		vals, err := m.Values(nil)
		if err != nil {
			return finish(RunFailed, fmt.Errorf("model %s: %w", m.Name, err))
		}
		versions[m.Name] = models.Version(m, vals)
	}
	no, start := rl.begin(ctx, "scope", "", 0)
	ex, err := planExamination(ctx, conn, live, versions, p.Full, now)
	if err == nil {
		ex.log = log
		defer ex.drop(ctx, conn)
		_, err = ex.build(ctx, conn)
	}
	if err != nil {
		rl.end(ctx, no, start, "failed", 0, err)
		return finish(RunFailed, err)
	}
	settlements, err := ex.settlements(ctx, conn)
	if err != nil {
		rl.end(ctx, no, start, "failed", 0, err)
		return finish(RunFailed, err)
	}
	rl.setDetail(ctx, no, ex.describe(settlements))
	rl.end(ctx, no, start, "succeeded", ex.persons, nil)

	opts := models.RunOptions{Exclude: "casebook.issued", Prefix: fmt.Sprintf("run%d", rl.id)}
	var runs []*models.Run
	for _, m := range live {
		if ctx.Err() != nil {
			return finish(RunInterrupted, ctx.Err())
		}
		no, start := rl.begin(ctx, "model", m.Name, 0)
		var res *models.Run
		run := func() (err error) {
			res, err = runner.Start(ctx, conn, m, opts)
			return err
		}
		if ex.models[m.Name].full {
			err = run()
		} else {
			err = within(ctx, conn, run)
		}
		if err != nil {
			err = p.Store.DiskFull(err)
			rl.end(ctx, no, start, "failed", 0, err)
			return finish(RunFailed, fmt.Errorf("model %s: %w", m.Name, err))
		}
		rl.end(ctx, no, start, "succeeded", res.Flagged, nil)
		runs = append(runs, res)
	}
	if ctx.Err() != nil {
		return finish(RunInterrupted, ctx.Err())
	}
	no, start = rl.begin(ctx, "clues", fmt.Sprintf("%d models: one join back to settlements, then each model's clues", len(runs)), 0)
	group := func() error { return runner.Group(ctx, conn, opts, runs...) }
	if ex.allByPerson() {
		err = within(ctx, conn, group)
	} else {
		err = group()
	}
	if err != nil {
		rl.end(ctx, no, start, "failed", 0, err)
		return finish(RunFailed, err)
	}
	var clues int64
	for i, res := range runs {
		m, ms := live[i], ex.models[live[i].Name]
		scope := models.ScopeFull
		var persons int64
		if !ms.full {
			scope, persons = models.ScopePerson, ex.persons
		}
		clues += res.Clues
		out.Models = append(out.Models, casebook.ModelRun{
			Model: m.Name, Version: res.Version, Title: m.Title, SQL: m.Text, Params: res.Params.JSON(),
			Flagged: res.Flagged, AlreadyIssued: res.AlreadyIssued, Suppressed: res.Suppressed,
			Clues: res.Clues, Settlements: res.Settlements, Scope: scope, Persons: persons, Why: ms.why,
			ClueTable: res.ClueTable, ClueSettlementTable: res.ClueSettlementTable,
		})
	}
	rl.end(ctx, no, start, "succeeded", clues, nil)
	if ctx.Err() != nil {
		return finish(RunInterrupted, ctx.Err())
	}

	// 3. Publish and route, in one transaction, with what each model
	// examined: the next run starts from there.
	no, start = rl.begin(ctx, "publish", "", 0)
	log.Info("publishing", "models", len(out.Models))
	batch, err := p.Casebook.Publish(ctx, conn, casebook.PublishInput{RunID: rl.id, Models: out.Models, Deliveries: ex.loaded,
		Feeds: ex.feeds, Regions: ex.regions, Suppressions: ex.active})
	if err != nil {
		err = p.Store.DiskFull(err)
		rl.end(ctx, no, start, "failed", 0, err)
		return finish(RunFailed, err)
	}
	out.BatchID, out.Batch = batch.ID, batch
	rl.end(ctx, no, start, "succeeded", batch.Clues, nil)
	p.observer().Published(batch, out.Models)
	dropTemp(ctx, conn)

	no, start = rl.begin(ctx, "route", "", 0)
	byCity, err := p.Casebook.RoutedByCity(ctx, batch.ID)
	rl.end(ctx, no, start, stepStatus(err), batch.Clues, err)
	if err == nil && len(byCity) > 0 {
		var parts []string
		for city, n := range byCity {
			parts = append(parts, fmt.Sprintf("%s:%d", city, n)) // city code:leads, as the page reads them
		}
		sort.Strings(parts)
		p.Store.DB.ExecContext(context.WithoutCancel(ctx), "UPDATE casebook.run_steps SET detail = ? WHERE run_id = ? AND step_no = ?",
			strings.Join(parts, " "), rl.id, no)
	}
	if len(out.Failed()) > 0 {
		var names []string
		for _, f := range out.Failed() {
			names = append(names, f.Feed+"/"+f.Name)
		}
		return finish(RunPartial, fmt.Errorf("deliveries failed: %s", strings.Join(names, ", ")))
	}
	return finish(RunSucceeded, nil)
}

// refreshSnapshot brings the drafts' snapshot up to date with the loads. A
// failure is the step's, not the run's: the night's clues do not depend
// on the drafts' copy.
func (p *Pipeline) refreshSnapshot(ctx context.Context, rl *runLog, log *slog.Logger) {
	if p.Snapshot == nil {
		return
	}
	no, start := rl.begin(ctx, "sandbox", "", 0)
	r, err := p.Snapshot.Refresh(ctx)
	if err != nil && ctx.Err() == nil {
		log.Error("sandbox snapshot", "err", err)
	}
	rl.end(ctx, no, start, stepStatus(err), r.Rows, err)
}

func (p *Pipeline) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func stepStatus(err error) string {
	if err != nil {
		return "failed"
	}
	return "succeeded"
}

// dropTemp frees the run's temp tables before the connection goes back to the pool.
func dropTemp(ctx context.Context, conn *sql.Conn) {
	rows, err := conn.QueryContext(ctx, "SELECT table_name FROM duckdb_tables() WHERE temporary")
	if err != nil {
		return
	}
	var names []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		conn.ExecContext(ctx, "DROP TABLE IF EXISTS temp."+q(n))
	}
}
