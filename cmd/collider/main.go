// Command collider is the one binary of the service: it generates synthetic
// feeds, loads deliveries, runs the models, serves the API and the casebook,
// and (started again as a child) runs drafts in the sandbox. Each subcommand
// lives in its own file; this one dispatches.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	_ "time/tzdata" // Asia/Shanghai for the schedule, also in an image without a zoneinfo database

	"collider/casebook"
	"collider/jobs"
	"collider/store"
)

// command is a subcommand: it parses its own flags and returns the exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"backup":  {"write a consistent copy of the store into one file (through the server while it runs)", cmdBackup},
		"batches": {"list the published batches, oldest first", cmdBatches},
		"check":   {"verify the store's invariants; exit 1 with what is wrong", cmdCheck},
		"bench":   {"measure collider against plain DuckDB on the same files", cmdBench},
		"export":  {"write a batch's clues as csv, xlsx or parquet", cmdExport},
		"health":  {"check the local server's /healthz (the image's health check)", cmdHealth},
		"restore": {"restore a backup into a new or empty data directory", cmdRestore},
		"run":     {"load what is ready, run the models, publish a batch (prints its id)", cmdRun},
		"serve":   {"serve the API and run the pipeline on its schedule", cmdServe},
		"users":   {"add, list and revoke users and their tokens", cmdUsers},
		"client":  {"a city bureau's client: pull leads, post feedback, download", cmdClient},
		"demo":    {"generate a small province, load it and run every model", cmdDemo},
		"gen":     {"write a synthetic province's feeds, with planted fraud and its truth", cmdGen},
		"load":    {"load complete deliveries from an inbox, or one path with --feed", cmdLoad},
		"models":  {"list, show, test and preview the collision models", cmdModels},
		"monitor": {"print the shipped Prometheus alert rules or Grafana dashboard", cmdMonitor},
	}
}

func main() {
	// Before any thread allocates: glibc fixes its arena limit at the
	// first arena it adds (see tuneMalloc).
	tuneMalloc()
	if jobs.IsSandboxChild() {
		jobs.SandboxMain() // a draft's sandbox: this process does nothing else
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "collider: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel(args[0])})))
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: collider <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'collider <command> -h' for its flags.")
}

// logLevel reads COLLIDER_LOG (debug, info, warn, error). The server logs
// its runs, their steps and progress by default (info); commands that print
// tables keep the log quiet (warn).
func logLevel(command string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("COLLIDER_LOG"))); err != nil {
		if command == "serve" {
			return slog.LevelInfo
		}
		return slog.LevelWarn
	}
	return l
}

// openStore opens the store a configuration names, with its limits. The
// store reads files only in the inbox, the drafts' snapshot directory and
// the extra directories given (a delivery loaded by hand).
func openStore(ctx context.Context, cfg Config, files ...string) (*store.Store, error) {
	opts, err := storeOptions(cfg, files...)
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, opts)
}

// storeOptions are the store options a configuration names.
func storeOptions(cfg Config, files ...string) (store.Options, error) {
	if strings.TrimSpace(cfg.Data) == "" {
		return store.Options{}, fmt.Errorf("--data is required (or COLLIDER_DATA, or data: in the config file)")
	}
	files = append(files, snapshotDir(cfg))
	if cfg.Inbox != "" {
		files = append(files, cfg.Inbox)
	}
	return store.Options{Dir: cfg.Data, MemoryLimit: cfg.MemoryLimit, Threads: cfg.Threads, TempDir: cfg.TempDir,
		MaxTempSize: cfg.MaxTempSize, Files: files, WorkerNice: cfg.WorkerNice}, nil
}

// snapshotDir holds the drafts' pseudonymized snapshot.
func snapshotDir(cfg Config) string { return filepath.Join(cfg.Data, "sandbox") }

// newSandbox wires the drafts' snapshot and sandbox over a store.
func newSandbox(s *store.Store, cfg Config) *jobs.Sandbox {
	keyFile := cfg.PseudonymKey
	if keyFile == "" {
		keyFile = filepath.Join(cfg.Data, "pseudonym.key")
	}
	return &jobs.Sandbox{
		Snapshot: &jobs.Snapshot{Store: s, Dir: snapshotDir(cfg), KeyFile: keyFile},
		Limits:   jobs.SandboxLimits{Timeout: cfg.DraftTimeout, MemoryLimit: cfg.DraftMemoryLimit, Threads: cfg.DraftThreads},
		Scratch:  s.Options().TempDir,
	}
}

// parseWithConfig loads the configuration and parses a command's flags over it.
func parseWithConfig(fs *flag.FlagSet, args []string, register func(*Config, *flag.FlagSet)) (Config, error) {
	cfg, err := loadConfig(args)
	if err != nil {
		return cfg, err
	}
	register(&cfg, fs)
	return cfg, fs.Parse(args)
}

// newCasebook returns the casebook over the store, spilling exports to the
// store's temp directory (a container has no /tmp).
func newCasebook(s *store.Store, cfg Config) *casebook.Casebook {
	cb := casebook.New(s.DB)
	cb.TmpDir = s.Options().TempDir
	cb.ReadCacheBytes = int64(cfg.ReadCacheMB) << 20
	if cfg.ReadCacheMB <= 0 {
		cb.ReadCacheBytes = -1
	}
	if cfg.DueDaysHigh > 0 {
		cb.DueDays["high"] = cfg.DueDaysHigh
	}
	if cfg.DueDaysOther > 0 {
		cb.DueDays["medium"], cb.DueDays["low"] = cfg.DueDaysOther, cfg.DueDaysOther
	}
	return cb
}

// envOr reads an environment variable with a default.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
