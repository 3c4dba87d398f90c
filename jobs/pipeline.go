// This file is the pipeline (流水线): find complete deliveries → validate →
// load → run every live model → publish the batch → route the leads. Runs
// never overlap, whether started by the schedule, the API or the command
// line: one lock for all of them.
package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
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
	out := p.lowered(runCtx, rl)
	return out, out.Err
}

// lowered runs the pipeline on a thread at the store's worker priority: a
// run is batch work and gives way to the people reading the casebook.
func (p *Pipeline) lowered(ctx context.Context, rl *runLog) Outcome {
	var out Outcome
	if err := p.Store.Lowered(func() { out = p.run(ctx, rl) }); err != nil {
		p.log().Error("run panicked", "run", rl.id, "panic", err)
		rl.finish(ctx, RunFailed, nil, err)
		return Outcome{RunID: rl.id, Status: RunFailed, Err: err}
	}
	return out
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
		p.lowered(runCtx, rl)
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
	n := p.startNight(ctx, rl)
	defer n.close()
	defer n.awaitSnapshot() // first, on a panic too: nothing of the run outlives it
	// 1. Discovery and loading; 2. the drafts' snapshot; 3. what each
	// model examines (scope.go), the models, then one join of their flags
	// back to the settlements and the clues, all on one connection: its
	// temp tables are read by publish.
	for _, phase := range []func() *ending{n.load, n.plan, n.snapshot, n.examine, n.runModels, n.makeClues} {
		if end := phase(); end != nil {
			return n.finish(end.status, end.err)
		}
		if ctx.Err() != nil {
			return n.finish(RunInterrupted, ctx.Err())
		}
	}
	// 4. Publish and route, in one transaction, with what each model
	// examined: the next run starts from there.
	n.awaitSnapshot()
	if end := n.publish(); end != nil {
		return n.finish(end.status, end.err)
	}
	n.route()
	if failed := n.out.Failed(); len(failed) > 0 {
		var names []string
		for _, f := range failed {
			names = append(names, f.Feed+"/"+f.Name)
		}
		return n.finish(RunPartial, fmt.Errorf("deliveries failed: %s", strings.Join(names, ", ")))
	}
	return n.finish(RunSucceeded, nil)
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
