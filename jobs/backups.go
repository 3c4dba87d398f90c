// This file takes the scheduled backups (定时备份): into a directory, the
// newest few kept, each recorded in the casebook's backup history, on a
// cron schedule in China Standard Time beside the runs' schedule.
package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/robfig/cron/v3"

	"collider/casebook"
	"collider/domain"
	"collider/store"
)

// BackupPrefix starts the name of every backup file a schedule writes;
// the time follows, so that names sort oldest first.
const BackupPrefix = "collider-backup-"

// BackupName is the file name of a backup taken at t.
func BackupName(t time.Time) string {
	return BackupPrefix + t.In(domain.ChinaTime).Format("20060102T150405") + ".tar"
}

// Backups takes backups of the store into Dir and keeps the newest Keep.
type Backups struct {
	Store    *store.Store
	Casebook *casebook.Casebook
	Dir      string
	Keep     int
	Log      *slog.Logger
}

// Take writes a backup into Dir, removes the ones beyond Keep, and records
// it (or its failure) in the backup history.
func (b *Backups) Take(ctx context.Context, trigger, by string) (store.WrittenBackup, error) {
	start := time.Now()
	wb, err := b.Store.WriteFile(ctx, filepath.Join(b.Dir, BackupName(start)))
	rec := casebook.BackupRecord{Trigger: trigger, StartedBy: by, StartedAt: start, FinishedAt: time.Now(), Status: "succeeded",
		File: wb.Path, Bytes: wb.Bytes, SHA256: wb.SHA256}
	if err != nil {
		rec.Status, rec.Error, rec.File = "failed", err.Error(), ""
	} else {
		rec.Manifest, _ = json.Marshal(wb.Manifest)
	}
	if _, rerr := b.Casebook.RecordBackup(context.WithoutCancel(ctx), rec); rerr != nil {
		b.log().Error("backup history", "file", wb.Path, "err", rerr)
	}
	if err != nil {
		return wb, err
	}
	removed, err := store.PruneBackups(b.Dir, BackupPrefix, b.Keep)
	if len(removed) > 0 {
		b.log().Info("old backups removed", "dir", b.Dir, "keep", b.Keep, "files", removed)
	}
	if err != nil {
		return wb, fmt.Errorf("backup %s written, but removing old ones failed: %w", wb.Path, err)
	}
	return wb, nil
}

func (b *Backups) log() *slog.Logger {
	if b.Log == nil {
		return slog.Default()
	}
	return b.Log
}

// NewBackupSchedule takes a backup at every time of spec (cron, Asia/Shanghai).
func NewBackupSchedule(ctx context.Context, spec string, b *Backups) (*Schedule, error) {
	sched, err := ParseSchedule(spec)
	if err != nil {
		return nil, fmt.Errorf("backup %w", err)
	}
	loc, err := time.LoadLocation(ScheduleZone)
	if err != nil {
		return nil, fmt.Errorf("backup schedule: time zone %s: %w", ScheduleZone, err)
	}
	log := b.log()
	c := cron.New(cron.WithLocation(loc), cron.WithParser(parser),
		// A backup still being written when the next is due is not doubled.
		cron.WithChain(cron.Recover(cronLogger{log}), cron.SkipIfStillRunning(cronLogger{log})))
	c.Schedule(sched, cron.FuncJob(func() {
		wb, err := b.Take(ctx, "schedule", "cron "+spec)
		if err != nil {
			log.Error("scheduled backup", "err", err)
			return
		}
		log.Info("scheduled backup", "file", wb.Path, "bytes", wb.Bytes, "sha256", wb.SHA256)
	}))
	return &Schedule{cron: c, spec: spec, schedule: sched}, nil
}
