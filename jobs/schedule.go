// This file is the schedule (定时任务): cron syntax in China Standard Time,
// nightly at 02:00 by default, starting the same pipeline as the API and the
// command line under the same lock, so runs never overlap.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"collider/domain"

	"github.com/robfig/cron/v3"
)

// DefaultSchedule is nightly at 02:00.
const DefaultSchedule = "0 2 * * *"

// ScheduleZone is where schedules are read: Asia/Shanghai (no daylight saving).
const ScheduleZone = "Asia/Shanghai"

// Schedule starts runs by cron.
type Schedule struct {
	cron     *cron.Cron
	spec     string
	schedule cron.Schedule
}

// parser reads 5-field specs, or 6 fields with seconds first (for tests and
// operators who need them), and descriptors like @daily.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule checks a spec.
func ParseSchedule(spec string) (cron.Schedule, error) {
	s, err := parser.Parse(strings.TrimSpace(spec))
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w (cron: minute hour day-of-month month day-of-week, e.g. %q)", spec, err, DefaultSchedule)
	}
	return s, nil
}

// NewSchedule builds the schedule for p; ctx bounds the runs it starts.
func NewSchedule(ctx context.Context, spec string, p *Pipeline, log *slog.Logger) (*Schedule, error) {
	sched, err := ParseSchedule(spec)
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(ScheduleZone)
	if err != nil {
		return nil, fmt.Errorf("schedule: time zone %s: %w", ScheduleZone, err)
	}
	if log == nil {
		log = slog.Default()
	}
	c := cron.New(cron.WithLocation(loc), cron.WithParser(parser),
		// A panic in a run must not kill the server; the lock already keeps
		// runs from overlapping, so a trigger during a run is skipped.
		cron.WithChain(cron.Recover(cronLogger{log})))
	c.Schedule(sched, cron.FuncJob(func() {
		out, err := p.Run(ctx, "schedule", "cron "+spec)
		var ce *domain.Error
		switch {
		case errors.As(err, &ce) && ce.Code == domain.ECONFLICT:
			log.Warn("scheduled run skipped", "note", ce.Message)
		case err != nil:
			log.Error("scheduled run", "run", out.RunID, "status", out.Status, "err", err)
		default:
			log.Info("scheduled run", "run", out.RunID, "status", out.Status, "batch", out.BatchID)
		}
	}))
	return &Schedule{cron: c, spec: spec, schedule: sched}, nil
}

// Start starts the schedule.
func (s *Schedule) Start() { s.cron.Start() }

// Next is when the schedule fires next.
func (s *Schedule) Next() time.Time {
	if es := s.cron.Entries(); len(es) > 0 && !es[0].Next.IsZero() {
		return es[0].Next
	}
	loc, _ := time.LoadLocation(ScheduleZone)
	return s.schedule.Next(time.Now().In(loc))
}

// Stop stops firing; it does not wait for a running run (the pipeline's Stop
// cancels that).
func (s *Schedule) Stop() { s.cron.Stop() }

// cronLogger sends cron's messages to slog.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug("cron: "+msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}
