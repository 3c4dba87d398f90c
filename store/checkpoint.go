// This file folds the write-ahead logs into the database files, and only
// when the disk has room for it.
//
// DuckDB's own automatic checkpoint (at a commit, once the WAL passes 16 MB)
// is turned off at open: a checkpoint that fails for want of space
// invalidates its database — the casebook until it is attached again, the
// feeds file (the main database) until the process restarts — so a full
// disk during an ordinary lead action would stop the server from answering
// reads. A commit that finds no room fails cleanly on its own (the WAL write
// is rolled back), and the store checkpoints at quiet moments instead:
// after each run and when it closes, each time only if the filesystem has
// more room than the checkpoint could need.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// ErrCheckpointPostponed says a checkpoint was not attempted because the
// disk might not hold it; the WAL is kept and replayed at the next open.
var ErrCheckpointPostponed = errors.New("checkpoint postponed")

// checkpointRoom is the free space a checkpoint of a database must find: a
// checkpoint writes the changed row groups anew before it frees the old ones.
// The casebook is small and may be rewritten whole; the feeds file's bulk is
// written during the loads themselves (DuckDB writes large appends straight
// into the file), so a quarter of it bounds what deletes and vacuuming rewrite.
func checkpointRoom(db string, fileSize, walSize int64) uint64 {
	if db == Casebook {
		return uint64(fileSize + 2*walSize + 8<<20)
	}
	return uint64(fileSize/4 + 2*walSize + 16<<20)
}

// Checkpoint folds the casebook's and the feeds' write-ahead logs into their
// files where there is room to, and says which it postponed (an error
// matching ErrCheckpointPostponed) or could not do. Nothing is lost either
// way: an unfolded WAL is replayed at the next open.
func (s *Store) Checkpoint(ctx context.Context) error {
	if s.opts.ReadOnly {
		return nil
	}
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	var errs []error
	for _, db := range []string{Casebook, Feeds} {
		if err := s.checkpoint(ctx, db); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Store) checkpoint(ctx context.Context, db string) error {
	path := filepath.Join(s.opts.Dir, db+".duckdb")
	wal := fileSize(path + ".wal")
	if wal == 0 {
		return nil
	}
	need := checkpointRoom(db, fileSize(path), wal)
	if free, err := FreeSpace(s.opts.Dir); err == nil && free < need {
		return fmt.Errorf("store: %w for %s: it may need %s and %s is free on the filesystem of %s; its write-ahead log (%s) is kept and replayed at the next open",
			ErrCheckpointPostponed, db, HumanBytes(need), HumanBytes(free), s.opts.Dir, HumanBytes(uint64(wal)))
	}
	return s.fold(ctx, db)
}

// fold checkpoints db now. When the disk fills all the same (another
// process took the room), DuckDB invalidates the database: the casebook is
// attached again at once; the feeds file, the main database, cannot be, and
// the store must be opened again (restart the server).
func (s *Store) fold(ctx context.Context, db string) error {
	_, err := s.DB.ExecContext(ctx, "CHECKPOINT "+db)
	if err == nil {
		return nil
	}
	if df := DiskFull(err, s.opts.TempDir); df != nil {
		err = df
		if db == Casebook {
			// DuckDB invalidated the casebook: attach it again, which
			// replays its WAL, so that it answers again at once.
			if rerr := s.reattachCasebook(ctx); rerr != nil {
				return fmt.Errorf("store: checkpoint of %s: %w; attaching it again failed: %v", db, err, rerr)
			}
		}
	}
	if strings.Contains(err.Error(), "other") && strings.Contains(err.Error(), "transaction") {
		// A writer is busy (a lead action, a load): next time.
		return fmt.Errorf("store: %w for %s: a write is in progress", ErrCheckpointPostponed, db)
	}
	return fmt.Errorf("store: checkpoint of %s: %w", db, err)
}

// reattachCasebook detaches the casebook and attaches it again.
func (s *Store) reattachCasebook(ctx context.Context) error {
	if _, err := s.DB.ExecContext(ctx, "DETACH DATABASE IF EXISTS "+Casebook); err != nil {
		return err
	}
	_, err := s.DB.ExecContext(ctx, s.attachCasebook())
	return err
}

// CheckpointOrLog checkpoints and logs what it postponed or could not do;
// for the moments (after a run, at close) when nobody waits for the answer.
func (s *Store) CheckpointOrLog(ctx context.Context, log *slog.Logger) {
	logCheckpoint(ctx, log, s.Checkpoint(ctx))
}

// CheckpointFeedsOrLog is CheckpointOrLog for the feeds file alone: after
// a delivery's load, while the casebook's writers go on.
func (s *Store) CheckpointFeedsOrLog(ctx context.Context, log *slog.Logger) {
	if s.opts.ReadOnly {
		return
	}
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	logCheckpoint(ctx, log, s.checkpoint(ctx, Feeds))
}

func logCheckpoint(ctx context.Context, log *slog.Logger, err error) {
	if err == nil {
		return
	}
	if log == nil {
		log = slog.Default()
	}
	level := slog.LevelError
	if errors.Is(err, ErrCheckpointPostponed) {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, "store checkpoint", "err", err)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
