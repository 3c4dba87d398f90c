// This file keeps the run records (运行记录): every run and each of its steps,
// with rows, seconds and errors, and the live progress of the running one.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"collider/domain"
)

// Run statuses.
const (
	RunRunning     = "running"
	RunSucceeded   = "succeeded"
	RunPartial     = "partial" // published, but some deliveries failed
	RunFailed      = "failed"  // nothing published
	RunInterrupted = "interrupted"
)

// Step is one recorded step of a run.
type Step struct {
	No         int        `json:"step"`
	Name       string     `json:"name"`
	Detail     string     `json:"detail,omitempty"`
	Status     string     `json:"status"`
	Rows       *int64     `json:"rows,omitempty"`
	Seconds    *float64   `json:"seconds,omitempty"`
	Error      string     `json:"error,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// Progress is where a running run is.
type Progress struct {
	Step    string   `json:"step"`
	Detail  string   `json:"detail,omitempty"`
	Done    int64    `json:"rows_done"`
	Total   int64    `json:"rows_total,omitempty"`
	Percent *float64 `json:"percent,omitempty"`
}

// RunRecord is a run as the API shows it.
type RunRecord struct {
	ID         int64      `json:"run_id"`
	Trigger    string     `json:"trigger"`
	StartedBy  string     `json:"started_by,omitempty"`
	Status     string     `json:"status"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	BatchID    *int64     `json:"batch_id,omitempty"`
	Error      string     `json:"error,omitempty"`
	Steps      []Step     `json:"steps,omitempty"`
	Progress   *Progress  `json:"progress,omitempty"`
}

// runLog writes a run's records to the casebook as it goes, each write its
// own small transaction, so that what happened survives whatever follows.
type runLog struct {
	db      *sql.DB
	log     *slog.Logger
	obs     Observer
	id      int64
	trigger string
	mu      sync.Mutex
	step    int
	names   []string // of the steps so far, by number - 1
	prog    Progress
	ended   *runEnd // set when the run has finished
}

func newRunLog(ctx context.Context, db *sql.DB, log *slog.Logger, obs Observer, trigger, by string) (*runLog, error) {
	var id int64
	err := db.QueryRowContext(ctx, `INSERT INTO casebook.runs (run_id, trigger, started_by, status, started_at)
		VALUES (nextval('casebook.run_ids'), ?, ?, 'running', ?) RETURNING run_id`, trigger, by, domain.DBTime(time.Now())).Scan(&id)
	if err != nil {
		return nil, fmt.Errorf("record run: %w", err)
	}
	return &runLog{db: db, log: log.With("run", id), obs: obs, id: id, trigger: trigger}, nil
}

// begin records a step as running and makes it the progress.
func (l *runLog) begin(ctx context.Context, name, detail string, total int64) (int, time.Time) {
	l.mu.Lock()
	l.step++
	no := l.step
	l.names = append(l.names, name)
	l.prog = Progress{Step: name, Detail: detail, Total: total}
	l.mu.Unlock()
	start := time.Now()
	l.db.ExecContext(context.WithoutCancel(ctx), `INSERT INTO casebook.run_steps (run_id, step_no, name, detail, status, started_at)
		VALUES (?, ?, ?, ?, 'running', ?)`, l.id, no, name, nullIfEmpty(detail), domain.DBTime(start))
	l.log.Info("step started", "step", name, "step_no", no, "detail", detail, "rows_total", total)
	l.obs.Progress(*l.progress())
	return no, start
}

// end records a step's outcome.
func (l *runLog) end(ctx context.Context, no int, start time.Time, status string, rows int64, err error) {
	var msg any
	if err != nil {
		msg = err.Error()
	}
	seconds := time.Since(start).Seconds()
	l.db.ExecContext(context.WithoutCancel(ctx), `UPDATE casebook.run_steps SET status = ?, rows = ?, seconds = ?, error = ?, finished_at = ?
		WHERE run_id = ? AND step_no = ?`, status, rows, seconds, msg, domain.DBTime(time.Now()), l.id, no)
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelWarn
	}
	l.mu.Lock()
	name := l.names[no-1]
	l.mu.Unlock()
	l.log.Log(ctx, level, "step finished", "step", name, "step_no", no, "status", status, "rows", rows, "seconds", seconds, "err", err)
	l.obs.StepFinished(name, status, rows, seconds)
}

// setDetail replaces a step's detail once what it did is known.
func (l *runLog) setDetail(ctx context.Context, no int, detail string) {
	l.db.ExecContext(context.WithoutCancel(ctx), "UPDATE casebook.run_steps SET detail = ? WHERE run_id = ? AND step_no = ?", detail, l.id, no)
}

// logProgress writes the running step's progress to the log every period
// until ctx ends, so that a long run shows where it is in the log as well
// as on GET /api/v1/runs/{id}.
func (l *runLog) logProgress(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p := l.progress()
			args := []any{"step", p.Step, "detail", p.Detail, "rows_done", p.Done}
			if p.Percent != nil {
				args = append(args, "rows_total", p.Total, "percent", fmt.Sprintf("%.1f", *p.Percent))
			}
			l.log.Info("run progress", args...)
		}
	}
}

// add advances the current step's progress.
func (l *runLog) add(n int64) {
	l.mu.Lock()
	l.prog.Done += n
	l.mu.Unlock()
	l.obs.Progress(*l.progress())
}

func (l *runLog) progress() *Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.prog
	if p.Total > 0 {
		pct := min(100, 100*float64(p.Done)/float64(p.Total))
		p.Percent = &pct
	}
	return &p
}

// finish records how the run ended, and returns an error when that could
// not be written (the pipeline keeps it and writes it later).
func (l *runLog) finish(ctx context.Context, status string, batch *int64, err error) error {
	l.mu.Lock()
	l.ended = &runEnd{status: status, batch: batch, at: time.Now()}
	if err != nil {
		l.ended.err = err.Error()
	}
	l.mu.Unlock()
	l.obs.RunFinished(l.trigger, status)
	return l.record(ctx)
}

// runEnd is how a run ended.
type runEnd struct {
	status string
	batch  *int64
	err    string
	at     time.Time
}

// record writes the run's end, and closes any step whose own end could
// not be written.
func (l *runLog) record(ctx context.Context) error {
	l.mu.Lock()
	e := *l.ended
	l.mu.Unlock()
	var msg any
	if e.err != "" {
		msg = e.err
	}
	ctx = context.WithoutCancel(ctx)
	if _, err := l.db.ExecContext(ctx, `UPDATE casebook.run_steps SET status = 'failed', finished_at = ?,
		error = coalesce(error, 'its end was not recorded: ' || ?) WHERE run_id = ? AND status = 'running'`,
		domain.DBTime(e.at), e.err, l.id); err != nil {
		return err
	}
	_, err := l.db.ExecContext(ctx, `UPDATE casebook.runs SET status = ?, finished_at = ?, batch_id = ?, error = ? WHERE run_id = ?`,
		e.status, domain.DBTime(e.at), e.batch, msg, l.id)
	return err
}

// overlay shows a finished run whose end is not yet written as it ended.
func (l *runLog) overlay(r *RunRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended == nil {
		return
	}
	e := l.ended
	at := e.at.In(domain.ChinaTime)
	r.Status, r.FinishedAt, r.BatchID, r.Error = e.status, &at, e.batch, e.err
}

// MarkInterrupted closes the records of runs a killed process left running.
func MarkInterrupted(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `UPDATE casebook.run_steps SET status = 'interrupted', finished_at = now()
		WHERE status = 'running'`); err != nil {
		return err
	}
	_, err := db.ExecContext(ctx, `UPDATE casebook.runs SET status = 'interrupted', finished_at = now(),
		error = 'the process stopped during the run; its last step was rolled back' WHERE status = 'running'`)
	return err
}

// ListRuns lists runs newest first, before a cursor (0: newest).
func ListRuns(ctx context.Context, db *sql.DB, before int64, limit int) ([]RunRecord, error) {
	limit = domain.PageLimit(limit)
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := db.QueryContext(ctx, `SELECT run_id, trigger, coalesce(started_by, ''), status, started_at, finished_at, batch_id, coalesce(error, '')
		FROM casebook.runs WHERE run_id < ? ORDER BY run_id DESC LIMIT ?`, before, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []RunRecord{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func scanRun(s interface{ Scan(...any) error }) (RunRecord, error) {
	var r RunRecord
	var fin sql.NullTime
	var batch sql.NullInt64
	if err := s.Scan(&r.ID, &r.Trigger, &r.StartedBy, &r.Status, &r.StartedAt, &fin, &batch, &r.Error); err != nil {
		return r, err
	}
	if fin.Valid {
		r.FinishedAt = wall(&fin.Time)
	}
	r.StartedAt = domain.Wall(r.StartedAt)
	if batch.Valid {
		r.BatchID = &batch.Int64
	}
	return r, nil
}

// GetRun returns a run with its steps.
func GetRun(ctx context.Context, db *sql.DB, id int64) (RunRecord, error) {
	r, err := scanRun(db.QueryRowContext(ctx, `SELECT run_id, trigger, coalesce(started_by, ''), status, started_at, finished_at, batch_id, coalesce(error, '')
		FROM casebook.runs WHERE run_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, domain.Errorf(domain.ENOTFOUND, "no run %d", id)
	}
	if err != nil {
		return r, err
	}
	rows, err := db.QueryContext(ctx, `SELECT step_no, name, coalesce(detail, ''), status, rows, seconds, coalesce(error, ''), started_at, finished_at
		FROM casebook.run_steps WHERE run_id = ? ORDER BY step_no`, id)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	r.Steps = []Step{}
	for rows.Next() {
		var st Step
		var n sql.NullInt64
		var sec sql.NullFloat64
		var fin sql.NullTime
		if err := rows.Scan(&st.No, &st.Name, &st.Detail, &st.Status, &n, &sec, &st.Error, &st.StartedAt, &fin); err != nil {
			return r, err
		}
		if n.Valid {
			st.Rows = &n.Int64
		}
		if sec.Valid {
			st.Seconds = &sec.Float64
		}
		if fin.Valid {
			st.FinishedAt = wall(&fin.Time)
		}
		st.StartedAt = domain.Wall(st.StartedAt)
		r.Steps = append(r.Steps, st)
	}
	return r, rows.Err()
}

func wall(t *time.Time) *time.Time {
	w := domain.Wall(*t)
	return &w
}
