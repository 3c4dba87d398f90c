// collider bench backup: how long a backup of a store takes and how big it
// is, and how long restoring and checking it take: the figures the README
// gives for a Gansu-sized store.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"collider/jobs"
	"collider/store"
)

func benchBackup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "the store to back up (e.g. one collider run loaded a generated province into)")
	dir := fs.String("dir", filepath.Join(os.TempDir(), "collider-bench-backup"), "where the backup file and the restored store go (emptied first; needs about twice the store's size)")
	memoryLimit := fs.String("memory-limit", "8GB", "DuckDB memory limit")
	if err := fs.Parse(args); err != nil || *data == "" {
		fmt.Fprintln(stderr, "usage: collider bench backup --data DIR [--dir WORK] [--memory-limit 8GB]")
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "collider bench backup:", err); return 1 }
	os.RemoveAll(*dir)
	if err := os.MkdirAll(*dir, 0o750); err != nil {
		return fail(err)
	}
	var storeBytes int64
	for _, db := range []string{store.Feeds, store.Casebook} {
		for _, suffix := range []string{".duckdb", ".duckdb.wal"} {
			if fi, err := os.Stat(filepath.Join(*data, db+suffix)); err == nil {
				storeBytes += fi.Size()
			}
		}
	}
	b := &backupBench{stderr: stderr}
	wb, err := b.take(ctx, Config{Data: *data, MemoryLimit: *memoryLimit}, storeBytes, filepath.Join(*dir, jobs.BackupName(time.Now())))
	if err != nil {
		return fail(err)
	}
	if err := b.restore(ctx, wb, filepath.Join(*dir, "restored"), *memoryLimit); err != nil {
		return fail(err)
	}
	b.print(stdout)
	m := wb.Manifest
	fmt.Fprintf(stdout, "store %s: %s in its files; backup %s (%.2fx the store), taken in %.1f s (snapshot and write); %d clues, %d leads, %d lead events, %d audit rows, %d settlements\n",
		*data, store.HumanBytes(uint64(storeBytes)), store.HumanBytes(uint64(wb.Bytes)), float64(wb.Bytes)/float64(max(1, storeBytes)),
		b.steps[0].seconds+b.steps[1].seconds, m.Rows["casebook.clues"], m.Rows["casebook.leads"], m.Rows["casebook.lead_events"], m.Rows["casebook.audit"], m.Rows["feeds.settlements"])
	return 0
}

// backupBench times the steps of a backup and its restore.
type backupBench struct {
	stderr io.Writer
	steps  []backupStep
}

type backupStep struct {
	name    string
	seconds float64
	bytes   int64
	note    string
}

func (b *backupBench) timed(name string, bytes int64, f func() (string, error)) error {
	fmt.Fprintf(b.stderr, "%s …\n", name)
	t0 := time.Now()
	note, err := f()
	b.steps = append(b.steps, backupStep{name, time.Since(t0).Seconds(), bytes, note})
	return err
}

// take snapshots the store of cfg and writes the backup file.
func (b *backupBench) take(ctx context.Context, cfg Config, storeBytes int64, file string) (store.WrittenBackup, error) {
	var wb store.WrittenBackup
	s, err := openStore(ctx, cfg)
	if err != nil {
		return wb, err
	}
	defer s.Close()
	var snap *store.Snapshot
	if err := b.timed("snapshot", storeBytes, func() (string, error) {
		var err error
		snap, err = s.Snapshot(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("COPY FROM DATABASE casebook, feeds: %s", store.HumanBytes(uint64(snap.Manifest.Bytes()))), nil
	}); err != nil {
		return wb, err
	}
	defer snap.Close()
	err = b.timed("write", 0, func() (string, error) {
		var err error
		wb, err = snap.WriteFile(file)
		return file, err
	})
	b.steps[len(b.steps)-1].bytes = wb.Bytes
	return wb, err
}

// restore verifies the backup, restores it into dir and checks the result.
func (b *backupBench) restore(ctx context.Context, wb store.WrittenBackup, dir, memoryLimit string) error {
	open := func() (*os.File, error) { return os.Open(wb.Path) }
	if err := b.timed("verify", wb.Bytes, func() (string, error) {
		f, err := open()
		if err != nil {
			return "", err
		}
		defer f.Close()
		_, err = store.VerifyBackup(f)
		return "every file against its size and SHA-256", err
	}); err != nil {
		return err
	}
	if err := b.timed("restore", wb.Bytes, func() (string, error) {
		f, err := open()
		if err != nil {
			return "", err
		}
		defer f.Close()
		_, err = store.Restore(ctx, f, dir)
		return dir, err
	}); err != nil {
		return err
	}
	return b.timed("check", 0, func() (string, error) {
		r, err := openStore(ctx, Config{Data: dir, MemoryLimit: memoryLimit})
		if err != nil {
			return "", err
		}
		defer r.Close()
		report, err := jobs.Check(ctx, r.DB)
		if err != nil {
			return "", err
		}
		if !report.OK {
			return "", fmt.Errorf("the restored store breaks %d invariants", len(report.Broken()))
		}
		return fmt.Sprintf("all %d invariants hold", len(report.Invariants)), nil
	})
}

func (b *backupBench) print(stdout io.Writer) {
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "step\tseconds\tsize\tMB/s\t")
	for _, st := range b.steps {
		rate := "-"
		if st.bytes > 0 && st.seconds > 0 {
			rate = fmt.Sprintf("%.0f", float64(st.bytes)/(1<<20)/st.seconds)
		}
		size := "-"
		if st.bytes > 0 {
			size = store.HumanBytes(uint64(st.bytes))
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t%s\n", st.name, st.seconds, size, rate, st.note)
	}
	tw.Flush()
}
