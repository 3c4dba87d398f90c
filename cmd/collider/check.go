// collider check: verify the store's invariants, on its files or through
// the server that holds them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"collider/jobs"
	"collider/store"
)

// Exit codes of collider check.
const (
	checkHolds  = 0 // every invariant holds
	checkBroken = 1 // some invariant is broken: what is wrong is printed
	checkFailed = 2 // the check could not run (flags, the store, the server)
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: collider check --data DIR
       collider check --server URL --token-file F    (an admin's token; while serve holds the store)

Verifies the store's invariants and prints each with what breaks it. Exit
status: 0 when every invariant holds, 1 when one is broken, 2 when the check
could not run.`)
		fs.PrintDefaults()
	}
	remote := false
	cfg, err := parseWithConfig(fs, args, func(c *Config, fs *flag.FlagSet) {
		c.storeFlags(fs)
		c.remoteFlags(fs)
	})
	if err != nil {
		return checkFailed
	}
	fs.Visit(func(f *flag.Flag) { remote = remote || f.Name == "server" })
	fail := func(err error) int {
		fmt.Fprintln(stderr, "collider check:", err)
		return checkFailed
	}
	var report jobs.CheckReport
	var where string
	switch {
	case remote:
		c, err := newAPIClient(cfg, 30*time.Minute)
		if err != nil {
			return fail(err)
		}
		if err := c.do(ctx, "GET", "/api/v1/check", nil, &report); err != nil {
			return fail(err)
		}
		where = cfg.Server
	case strings.TrimSpace(cfg.Data) != "":
		if _, err := os.Stat(filepath.Join(cfg.Data, store.Feeds+".duckdb")); err != nil {
			return fail(fmt.Errorf("no store in %s: %w", cfg.Data, err))
		}
		// Read-only: a check changes nothing, not even a newer migration.
		opts, err := storeOptions(cfg)
		if err != nil {
			return fail(err)
		}
		opts.ReadOnly = true
		s, err := store.Open(ctx, opts)
		if errors.Is(err, store.ErrInUse) {
			return fail(fmt.Errorf("%w\nwhile the server holds the store, check it through the server: collider check --server URL --token-file F", err))
		}
		if err != nil {
			return fail(err)
		}
		defer s.Close()
		if report, err = jobs.Check(ctx, s.DB); err != nil {
			return fail(err)
		}
		sc, err := store.Inspect(ctx, cfg.Data)
		if err != nil {
			return fail(err)
		}
		where = fmt.Sprintf("%s (feeds %s, casebook %s)", cfg.Data, sc.Feeds, sc.Casebook)
	default:
		fs.Usage()
		return checkFailed
	}
	printCheck(stdout, where, report)
	if !report.OK {
		return checkBroken
	}
	return checkHolds
}

// printCheck writes a report: each invariant, ok or broken with examples of
// what breaks it, and a last line that says how the store stands.
func printCheck(w io.Writer, where string, r jobs.CheckReport) {
	fmt.Fprintf(w, "# store %s, checked %s\n", where, r.CheckedAt.Format("2006-01-02 15:04:05"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, inv := range r.Invariants {
		if inv.Violations == 0 {
			fmt.Fprintf(tw, "ok\t%s\t%s\n", inv.Name, inv.Description)
			continue
		}
		fmt.Fprintf(tw, "BROKEN\t%s\t%d violations of: %s\n", inv.Name, inv.Violations, inv.Description)
		for _, ex := range inv.Examples {
			fmt.Fprintf(tw, "\t\t  %s\n", ex)
		}
		if more := inv.Violations - int64(len(inv.Examples)); more > 0 {
			fmt.Fprintf(tw, "\t\t  … and %d more\n", more)
		}
	}
	tw.Flush()
	if broken := r.Broken(); len(broken) > 0 {
		fmt.Fprintf(w, "%d of %d invariants broken\n", len(broken), len(r.Invariants))
		return
	}
	fmt.Fprintf(w, "all %d invariants hold\n", len(r.Invariants))
}
