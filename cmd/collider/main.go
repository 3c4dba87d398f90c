// Command collider is the one binary of the service: it generates synthetic
// feeds, loads deliveries, runs the models and (in later subcommands) serves
// the casebook. Each subcommand lives in its own file; this one dispatches.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	_ "time/tzdata" // Asia/Shanghai for the schedule, also in an image without a zoneinfo database

	"collider/casebook"
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
	}
}

func main() {
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

// openStore opens the store under --data with the operator's memory limit.
func openStore(ctx context.Context, dataDir, memoryLimit string) (*store.Store, error) {
	return openStoreThreads(ctx, dataDir, memoryLimit, 0)
}

func openStoreThreads(ctx context.Context, dataDir, memoryLimit string, threads int) (*store.Store, error) {
	return store.Open(ctx, store.Options{Dir: dataDir, MemoryLimit: memoryLimit, Threads: threads})
}

// storeFlags are the store settings of the modelers' commands: --data and
// --memory-limit over the environment and the COLLIDER_CONFIG file.
type storeFlags struct {
	data        string
	memoryLimit string
}

func (f *storeFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	cfg, _ := loadConfig(nil)
	fs.StringVar(&f.data, "data", cfg.Data, "data directory: everything the service keeps (env COLLIDER_DATA)")
	fs.StringVar(&f.memoryLimit, "memory-limit", cfg.MemoryLimit, "DuckDB memory limit, e.g. 8GB (default 60% of RAM; env COLLIDER_MEMORY_LIMIT)")
}

func (f *storeFlags) open(ctx context.Context) (*store.Store, error) {
	if strings.TrimSpace(f.data) == "" {
		return nil, fmt.Errorf("--data is required")
	}
	return openStore(ctx, f.data, f.memoryLimit)
}

// openConfigured opens the store a configuration names.
func openConfigured(ctx context.Context, cfg Config) (*store.Store, error) {
	if strings.TrimSpace(cfg.Data) == "" {
		return nil, fmt.Errorf("--data is required (or COLLIDER_DATA, or data: in the config file)")
	}
	return store.Open(ctx, store.Options{Dir: cfg.Data, MemoryLimit: cfg.MemoryLimit, Threads: cfg.Threads, TempDir: cfg.TempDir, MaxTempSize: cfg.MaxTempSize})
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
