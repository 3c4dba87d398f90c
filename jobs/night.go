// This file is a run's phases, in the order Pipeline.run takes them: the
// deliveries, the drafts' snapshot, what each model examines, the models,
// the clues, publishing and routing. A night holds what the phases pass
// on; a phase that ends the run says how (an ending), and each records its
// own steps.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"collider/casebook"
	"collider/models"
	"collider/store"
)

// night is one run on its way.
type night struct {
	p            *Pipeline
	ctx          context.Context
	rl           *runLog
	log          *slog.Logger
	out          Outcome
	stopProgress context.CancelFunc

	conn     *sql.Conn
	now      time.Time // one clock for the run: suppressions are judged once
	runner   *models.Runner
	live     []*models.Model
	ex       *examination
	idle     bool // nothing in scope: no settlement any model could flag
	opts     models.RunOptions
	runs     []*models.Run
	closings []func()

	snapshotDone chan struct{} // closed when a refresh beside the models ends
}

// ending is how a phase ends the run.
type ending struct {
	status string
	err    error
}

func failed(err error) *ending { return &ending{RunFailed, err} }

func (p *Pipeline) startNight(ctx context.Context, rl *runLog) *night {
	n := &night{p: p, ctx: ctx, rl: rl, out: Outcome{RunID: rl.id}, log: p.log().With("run", rl.id)}
	n.log.Info("run started", "trigger", rl.trigger)
	p.observer().RunStarted(rl.trigger)
	every := p.ProgressEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	var progressCtx context.Context
	progressCtx, n.stopProgress = context.WithCancel(ctx)
	// The room to spill into, as it is now (a disk freed since is room again).
	if err := p.Store.RefreshSpillLimit(ctx); err != nil {
		n.log.Warn("reading the temp directory's room", "err", err)
	}
	go rl.logProgress(progressCtx, every)
	return n
}

// close lets go of what the phases hold, last taken first.
func (n *night) close() {
	for i := len(n.closings) - 1; i >= 0; i-- {
		n.closings[i]()
	}
	n.stopProgress()
}

// finish records the run's end (or keeps it to record before the next run).
func (n *night) finish(status string, err error) Outcome {
	n.awaitSnapshot() // the run ends with all its steps
	ctx, p, log := n.ctx, n.p, n.log
	if ctx.Err() != nil && status != RunSucceeded && status != RunPartial {
		status = RunInterrupted
	}
	n.out.Status, n.out.Err = status, err
	var batch *int64
	if n.out.BatchID > 0 {
		batch = &n.out.BatchID
	}
	// A quiet moment to fold the logs into the files, where there is
	// room; the run shows as running until it is done.
	p.Store.CheckpointOrLog(context.WithoutCancel(ctx), log)
	store.ReleaseMemory() // what the run's queries freed
	if rerr := n.rl.finish(ctx, status, batch, err); rerr != nil {
		log.Error("the run's end is not recorded; it will be before the next run", "err", p.Store.DiskFull(rerr))
		p.mu.Lock()
		p.unrecorded = append(p.unrecorded, n.rl)
		p.mu.Unlock()
	}
	log.Info("run finished", "status", status, "batch", n.out.BatchID, "err", err)
	return n.out
}

// load discovers the inbox's deliveries and loads the new ones, each in its
// own transaction: a bad one fails alone. The inbox keeps every delivery;
// those seen before are known by their files' stat and cost nothing more.
func (n *night) load() *ending {
	p, ctx, rl := n.p, n.ctx, n.rl
	if p.Inbox == "" {
		return nil
	}
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
		n.log.Debug("delivery skipped", "feed", d.Feed, "delivery", d.Name, "status", StatusSkipped, "note", seen[i].Note)
		n.out.Loads = append(n.out.Loads, seen[i])
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
			return &ending{RunInterrupted, ctx.Err()}
		}
		if end := n.loadOne(d); end != nil {
			return end
		}
	}
	return nil
}

// loadOne loads one delivery as a step of its own.
func (n *night) loadOne(d Delivery) *ending {
	p, ctx, rl := n.p, n.ctx, n.rl
	in, _ := Inspect(d)
	no, start := rl.begin(ctx, "load", d.Feed+"/"+d.Name, WorkUnits(in.Rows))
	l := &Loader{Store: p.Store, Log: n.log, Progress: rl.add}
	res := l.Load(ctx, d)
	n.out.Loads = append(n.out.Loads, res)
	if ctx.Err() == nil { // a load the shutdown cut short is rolled back and tried again, not failed
		p.observer().DeliveryFinished(res)
	}
	status := res.Status
	if status == StatusLoaded {
		status = "succeeded"
	}
	rl.end(ctx, no, start, status, res.Loaded, res.Err)
	if errors.Is(res.Err, store.ErrDiskFull) {
		// Nothing after this would find room either; the delivery was
		// rolled back and is loaded by the next run.
		return failed(fmt.Errorf("load %s/%s: %w", d.Feed, d.Name, res.Err))
	}
	return nil
}

// snapshot brings the drafts' snapshot up to date with the loads. A
// failure is the step's, not the run's: the night's clues do not depend
// on the drafts' copy.
//
// On a night that loaded rows and examines every model by person the models
// are small, and the refresh runs beside them on a connection of its own,
// so that a draft reading the snapshot holds up the refresh, not the
// night's clues; publishing waits for it. (It is not for speed: at Gansu
// scale the two share the cores and the night was 0.5 s shorter.) A run
// with a model in full keeps the two apart, so that they do not share the
// memory limit; a run that loaded nothing refreshes in passing.
func (n *night) snapshot() *ending {
	p, ctx, rl := n.p, n.ctx, n.rl
	if p.Snapshot == nil {
		return nil
	}
	refresh := func() {
		no, start := rl.begin(ctx, "sandbox", "", 0)
		r, err := p.Snapshot.Refresh(ctx)
		if err != nil && ctx.Err() == nil {
			n.log.Error("sandbox snapshot", "err", err)
		}
		rl.end(ctx, no, start, stepStatus(err), r.Rows, err)
	}
	if !n.ex.allByPerson() || !n.loadedRows() {
		refresh() // a night with nothing new has nothing to copy
		return nil
	}
	done := make(chan struct{})
	n.snapshotDone = done
	go func() {
		defer close(done)
		// On a lowered thread of its own, as the run's, and a panic is
		// the step's, not the server's.
		if err := p.Store.Lowered(refresh); err != nil {
			n.log.Error("sandbox snapshot", "err", err)
		}
	}()
	return nil
}

// loadedRows says whether this run loaded a delivery with rows.
func (n *night) loadedRows() bool {
	for _, l := range n.out.Loads {
		if l.Status == StatusLoaded && l.Loaded > 0 {
			return true
		}
	}
	return false
}

// awaitSnapshot waits for a refresh running beside the models.
func (n *night) awaitSnapshot() {
	if n.snapshotDone != nil {
		<-n.snapshotDone
	}
}

// plan works out what each live model examines tonight (scope.go).
func (n *night) plan() *ending {
	p, ctx := n.p, n.ctx
	conn, err := p.Store.DB.Conn(ctx)
	if err != nil {
		return failed(err)
	}
	n.conn = conn
	n.closings = append(n.closings, func() { conn.Close() })
	n.now = p.now()
	n.runner = &models.Runner{Log: n.log, Now: func() time.Time { return n.now }}
	n.live = p.Catalog.Models()
	sort.Slice(n.live, func(i, j int) bool { return n.live[i].Name < n.live[j].Name })
	versions := map[string]string{}
	for _, m := range n.live {
		vals, err := m.Values(nil)
		if err != nil {
			return failed(fmt.Errorf("model %s: %w", m.Name, err))
		}
		versions[m.Name] = models.Version(m, vals)
	}
	ex, err := planExamination(ctx, conn, n.live, versions, p.Full, n.now)
	if err != nil {
		err = p.Store.DiskFull(err)
		no, start := n.rl.begin(ctx, "scope", "", 0)
		n.rl.end(ctx, no, start, "failed", 0, err)
		return failed(err)
	}
	n.ex, ex.log = ex, n.log
	n.closings = append(n.closings, func() { ex.drop(ctx, conn) })
	return nil
}

// examine copies the rows of the persons each model re-examines.
func (n *night) examine() *ending {
	ctx, rl, conn, ex := n.ctx, n.rl, n.conn, n.ex
	no, start := rl.begin(ctx, "scope", "", 0)
	_, err := ex.build(ctx, conn)
	var settlements int64
	if err == nil {
		settlements, err = ex.settlements(ctx, conn)
	}
	if err != nil {
		err = n.p.Store.DiskFull(err) // the copies spill like a model does
		rl.end(ctx, no, start, "failed", 0, err)
		return failed(err)
	}
	// Every model examines by person, and the changes reach no settlement:
	// no model can issue a clue (a verdict depends on its own person's rows,
	// and flags are joined back to the scoped settlements), so the models'
	// queries are not run and the batch is empty. Their steps then count
	// nothing flagged, where a query naming feeds.main.settlements itself
	// could have counted unmatched rows; a query that fails only when it
	// runs fails at the next night that reaches a settlement.
	n.idle = ex.copied && ex.allByPerson() && settlements == 0
	rl.setDetail(ctx, no, ex.describe(settlements))
	rl.end(ctx, no, start, "succeeded", ex.persons, nil)
	n.opts = models.RunOptions{Exclude: "casebook.issued", Prefix: fmt.Sprintf("run%d", rl.id)}
	return nil
}

// runModels runs each live model, a step each: in full, or over the copied
// persons' rows.
func (n *night) runModels() *ending {
	ctx, rl := n.ctx, n.rl
	if !n.ex.allByPerson() {
		// The changes reached so many persons that every model runs in
		// full: not beside a refresh.
		n.awaitSnapshot()
	}
	for _, m := range n.live {
		if ctx.Err() != nil {
			return &ending{RunInterrupted, ctx.Err()}
		}
		no, start := rl.begin(ctx, "model", m.Name, 0)
		var res *models.Run
		run := func() (err error) {
			res, err = n.runner.Start(ctx, n.conn, m, n.opts)
			return err
		}
		var err error
		switch {
		case n.idle:
			res, err = idleRun(m, n.opts)
		case n.ex.models[m.Name].full:
			err = run()
		default:
			err = within(ctx, n.conn, run)
		}
		if err != nil {
			err = n.p.Store.DiskFull(err)
			rl.end(ctx, no, start, "failed", 0, err)
			return failed(fmt.Errorf("model %s: %w", m.Name, err))
		}
		rl.end(ctx, no, start, "succeeded", res.Flagged, nil)
		n.runs = append(n.runs, res)
	}
	return nil
}

// idleRun is a model's run over a scope without settlements: its version
// and parameters, nothing flagged, no tables.
func idleRun(m *models.Model, opt models.RunOptions) (*models.Run, error) {
	vals, err := m.Values(opt.Params)
	if err != nil {
		return nil, err
	}
	return &models.Run{Model: m.Name, Version: models.Version(m, vals), Params: vals}, nil
}

// makeClues joins every model's flags back to the settlements once and
// groups each model's into clues.
func (n *night) makeClues() *ending {
	ctx, rl := n.ctx, n.rl
	detail := fmt.Sprintf("%d models: one join back to settlements, then each model's clues", len(n.runs))
	if n.idle {
		detail = "nothing to group: the changes reach no settlement"
	}
	no, start := rl.begin(ctx, "clues", detail, 0)
	group := func() error { return n.runner.Group(ctx, n.conn, n.opts, n.runs...) }
	var err error
	switch {
	case n.idle: // no model ran a query: nothing to group
	case n.ex.allByPerson():
		err = within(ctx, n.conn, group)
	default:
		err = group()
	}
	if err != nil {
		rl.end(ctx, no, start, "failed", 0, err)
		return failed(err)
	}
	var clues int64
	for i, res := range n.runs {
		m, ms := n.live[i], n.ex.models[n.live[i].Name]
		scope := models.ScopeFull
		var persons int64
		if !ms.full {
			scope, persons = models.ScopePerson, n.ex.persons
		}
		clues += res.Clues
		n.out.Models = append(n.out.Models, casebook.ModelRun{
			Model: m.Name, Version: res.Version, Title: m.Title, SQL: m.Text, Params: res.Params.JSON(),
			Flagged: res.Flagged, AlreadyIssued: res.AlreadyIssued, Suppressed: res.Suppressed,
			Clues: res.Clues, Settlements: res.Settlements, Scope: scope, Persons: persons, Why: ms.why,
			ClueTable: res.ClueTable, ClueSettlementTable: res.ClueSettlementTable,
		})
	}
	rl.end(ctx, no, start, "succeeded", clues, nil)
	return nil
}

// publish publishes the batch, with what each model examined.
func (n *night) publish() *ending {
	p, ctx, rl, ex := n.p, n.ctx, n.rl, n.ex
	no, start := rl.begin(ctx, "publish", "", 0)
	n.log.Info("publishing", "models", len(n.out.Models))
	batch, err := p.Casebook.Publish(ctx, n.conn, casebook.PublishInput{RunID: rl.id, Models: n.out.Models, Deliveries: ex.loaded,
		Feeds: ex.feeds, Regions: ex.regions, Suppressions: ex.active})
	if err != nil {
		err = p.Store.DiskFull(err)
		rl.end(ctx, no, start, "failed", 0, err)
		return failed(err)
	}
	n.out.BatchID, n.out.Batch = batch.ID, batch
	rl.end(ctx, no, start, "succeeded", batch.Clues, nil)
	p.observer().Published(batch, n.out.Models)
	dropTemp(ctx, n.conn)
	return nil
}

// route records how many leads the batch routed to each city
// ("620100:5 620500:3", as the pages read it).
func (n *night) route() {
	p, ctx, rl, batch := n.p, n.ctx, n.rl, n.out.Batch
	no, start := rl.begin(ctx, "route", "", 0)
	byCity, err := p.Casebook.RoutedByCity(ctx, batch.ID)
	rl.end(ctx, no, start, stepStatus(err), batch.Clues, err)
	if err != nil || len(byCity) == 0 {
		return
	}
	var parts []string
	for city, count := range byCity {
		parts = append(parts, fmt.Sprintf("%s:%d", city, count))
	}
	sort.Strings(parts)
	p.Store.DB.ExecContext(context.WithoutCancel(ctx), "UPDATE casebook.run_steps SET detail = ? WHERE run_id = ? AND step_no = ?",
		strings.Join(parts, " "), rl.id, no)
}
