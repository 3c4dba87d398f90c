// collider bench: measurements that compare collider with plain DuckDB on
// the same files in the same run, each phase in its own process so that its
// peak memory is its own.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"collider/jobs"
	"collider/synth"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "load":
			return benchLoad(ctx, args[1:], stdout, stderr)
		case "api":
			return benchAPI(ctx, args[1:], stdout, stderr)
		case "models":
			return benchModels(ctx, args[1:], stdout, stderr)
		case "soak":
			return benchSoak(ctx, args[1:], stdout, stderr)
		case "backup":
			return benchBackup(ctx, args[1:], stdout, stderr)
		case "nightly":
			return benchNightly(ctx, args[1:], stdout, stderr)
		case "scale":
			return benchScale(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, `usage: collider bench load [flags]   the validated load next to a plain CREATE TABLE AS over the same files
       collider bench api [flags]    reads on a synthetic casebook (--clues): one lead at a time, 100 clients with a day's mix idle, during a run and a runaway draft; the pages
       collider bench models --data DIR [--inbox DIR]   every model through collider and as the same SQL by hand
       collider bench soak [--minutes 30]   the server under 100 clients while runs follow each other; figures per minute
       collider bench backup --data DIR     how long a backup of the store takes, how big it is, and its restore
       collider bench nightly [flags]   the year's first run, a night, a night with nothing new and a full recompute, beside the same work by hand
       collider bench scale [flags]     the year's first run at several sizes (63 and 250 million settlements): how time, memory, spill and disk grow`)
	return 2
}

// phaseResult is what one measured phase reports to the parent process.
type phaseResult struct {
	Phase   string  `json:"phase"`
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
	PeakMB  float64 `json:"peak_mb"`
	// Snapshot is what the drafts' pseudonymized snapshot costs after the
	// load (collider only): its first, full build.
	Snapshot float64 `json:"snapshot_seconds,omitempty"`
}

func benchLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", filepath.Join(os.TempDir(), "collider-bench"), "working directory (the generated inbox is kept and reused)")
	settlements := fs.Int64("settlements", 63_000_000, "settlements (Gansu: 63 million)")
	persons := fs.Int64("persons", 25_000_000, "persons: residents and civil-status rows (Gansu: 25 million)")
	locations := fs.Int64("locations", 50_000_000, "location records (50 million)")
	memoryLimit := fs.String("memory-limit", "8GB", "DuckDB memory limit for both phases")
	threads := fs.Int("threads", 0, "DuckDB threads for both phases (default: CPUs)")
	phase := fs.String("phase", "", "internal: run one phase (collider|plain) and print its JSON result")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	inbox := filepath.Join(*dir, fmt.Sprintf("inbox-%d-%d-%d", *settlements, *persons, *locations))
	if *phase != "" {
		res, err := runLoadPhase(ctx, *phase, inbox, filepath.Join(*dir, "phase-"+*phase), *memoryLimit, *threads)
		if err != nil {
			fmt.Fprintln(stderr, "collider bench:", err)
			return 1
		}
		json.NewEncoder(stdout).Encode(res)
		return 0
	}
	if _, err := os.Stat(filepath.Join(inbox, "truth.csv")); err != nil {
		fmt.Fprintf(stderr, "generating %d settlements, %d persons, %d locations into %s\n", *settlements, *persons, *locations, inbox)
		os.RemoveAll(inbox)
		if _, err := generate(ctx, synth.Options{Out: inbox, Seed: 1, Settlements: *settlements, Persons: *persons, Locations: *locations}, stderr); err != nil {
			fmt.Fprintln(stderr, "collider bench:", err)
			return 1
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "collider bench:", err)
		return 1
	}
	var results []phaseResult
	for _, p := range []string{"plain", "collider"} {
		fmt.Fprintf(stderr, "phase %s …\n", p)
		res, err := runPhaseProcess(ctx, self, p, *dir, *settlements, *persons, *locations, *memoryLimit, *threads, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "collider bench:", err)
			return 1
		}
		results = append(results, res)
	}
	plain, coll := results[0], results[1]
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "phase\trows\tseconds\trows/s\tpeak MB\n")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f\t%.0f\n", r.Phase, r.Rows, r.Seconds, float64(r.Rows)/r.Seconds, r.PeakMB)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "ratio collider/plain: %.2fx the time (goal ≤ 1.5x); memory limit %s\n", coll.Seconds/plain.Seconds, *memoryLimit)
	fmt.Fprintf(stdout, "pseudonymized snapshot for the drafts' sandbox: %.1f s after the load, %.2fx the load's time (load and snapshot %.2fx plain)\n",
		coll.Snapshot, coll.Snapshot/coll.Seconds, (coll.Seconds+coll.Snapshot)/plain.Seconds)
	return 0
}

func runPhaseProcess(ctx context.Context, self, phase, dir string, settlements, persons, locations int64, memoryLimit string, threads int, stderr io.Writer) (phaseResult, error) {
	var res phaseResult
	peak, err := runPhaseChild(ctx, self, "phase "+phase, []string{"bench", "load", "--phase", phase, "--dir", dir,
		fmt.Sprint("--settlements=", settlements), fmt.Sprint("--persons=", persons), fmt.Sprint("--locations=", locations),
		"--memory-limit", memoryLimit, fmt.Sprint("--threads=", threads)}, stderr, &res)
	res.PeakMB = peak
	return res, err
}

// runPhaseChild runs one measured phase (named what in errors) as a child
// process of collider itself, so that its peak memory is its own, decodes
// the JSON it prints into res, and returns that peak (MB).
func runPhaseChild(ctx context.Context, self, what string, args []string, stderr io.Writer, res any) (float64, error) {
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(out, res); err != nil {
		return 0, fmt.Errorf("%s: %w: %s", what, err, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) / 1024, nil // KiB on Linux
	}
	return 0, nil
}

// runLoadPhase loads every delivery of the inbox into a fresh store, either
// through collider's validated loader or with a plain CREATE TABLE AS.
func runLoadPhase(ctx context.Context, phase, inbox, work, memoryLimit string, threads int) (phaseResult, error) {
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o750); err != nil {
		return phaseResult{}, err
	}
	defer os.RemoveAll(work)
	ds, errs := jobs.Discover(inbox)
	if len(errs) > 0 {
		return phaseResult{}, errors.Join(errs...)
	}
	res := phaseResult{Phase: phase}
	switch phase {
	case "collider":
		s, err := openStore(ctx, Config{Data: work, MemoryLimit: memoryLimit, Threads: threads}, inbox)
		if err != nil {
			return res, err
		}
		defer s.Close()
		start := time.Now()
		for _, r := range (&jobs.Loader{Store: s}).LoadAll(ctx, ds) {
			if r.Err != nil {
				return res, r.Err
			}
			res.Rows += r.Rows
		}
		if _, err := s.DB.ExecContext(ctx, "CHECKPOINT"); err != nil {
			return res, err
		}
		res.Seconds = time.Since(start).Seconds()
		start = time.Now()
		if _, err := newSandbox(s, Config{Data: work}).Snapshot.Refresh(ctx); err != nil {
			return res, err
		}
		res.Snapshot = time.Since(start).Seconds()
	case "plain":
		connector, err := duckdb.NewConnector(filepath.Join(work, "plain.duckdb"), nil)
		if err != nil {
			return res, err
		}
		db := sql.OpenDB(connector)
		defer db.Close()
		settings := []string{
			fmt.Sprintf("SET memory_limit = '%s'", memoryLimit),
			fmt.Sprintf("SET temp_directory = '%s'", filepath.Join(work, "tmp")),
			"SET preserve_insertion_order = false",
		}
		if threads > 0 {
			settings = append(settings, fmt.Sprintf("SET threads = %d", threads))
		}
		for _, q := range settings {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return res, err
			}
		}
		start := time.Now()
		for i, d := range ds {
			var n int64
			table := fmt.Sprintf("%s_%d", d.Feed, i)
			if _, err := db.ExecContext(ctx, fmt.Sprintf("CREATE TABLE %s AS SELECT * FROM read_parquet(CAST(? AS VARCHAR[]))", table), d.Files); err != nil {
				return res, fmt.Errorf("%s: %w", strings.Join(d.Files, ","), err)
			}
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				return res, err
			}
			res.Rows += n
		}
		if _, err := db.ExecContext(ctx, "CHECKPOINT"); err != nil {
			return res, err
		}
		res.Seconds = time.Since(start).Seconds()
	default:
		return res, fmt.Errorf("unknown phase %q", phase)
	}
	return res, nil
}
