// collider run: load what is ready, run the models, publish a batch.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"collider/casebook"
	"collider/jobs"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: collider run --data DIR [--inbox DIR] [--models DIR] [--full]")
		fs.PrintDefaults()
	}
	full := fs.Bool("full", false, "examine every model over every settlement, whatever changed since the last batch")
	cfg, err := parseWithConfig(fs, args, (*Config).serviceFlags)
	if err != nil {
		fmt.Fprintln(stderr, "collider run:", err)
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "collider run:", err)
		return 2
	}
	files, err := dirModels(ctx, cfg.Models, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "collider run:", err)
		return 1
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "collider run:", err)
		return 1
	}
	defer s.Close()
	if err := jobs.MarkInterrupted(ctx, s.DB); err != nil {
		fmt.Fprintln(stderr, "collider run:", err)
		return 1
	}
	cb, sb := newCasebook(s, cfg), newSandbox(s, cfg)
	wb, err := newWorkbench(ctx, s, cfg, cb, sb, slog.Default())
	if err != nil {
		fmt.Fprintln(stderr, "collider run:", err)
		return 1
	}
	p := &jobs.Pipeline{Store: s, Casebook: cb, Catalog: wb.Previewer.Catalog, Inbox: cfg.Inbox, Snapshot: sb.Snapshot}
	p.Full = *full
	out, err := runWithProgress(ctx, p, stderr)
	if out.BatchID > 0 {
		// The changed files of --models DIR: versions for the province to
		// approve, previewed on what this run loaded.
		if err := submitFiles(ctx, wb, cfg.Models, files, stderr); err != nil {
			fmt.Fprintln(stderr, "collider run: models directory:", err)
		}
	}
	printRunSummary(stderr, out)
	for _, f := range out.Failed() {
		fmt.Fprintf(stderr, "collider run: delivery %s/%s failed: %v\n", f.Feed, f.Name, f.Err)
	}
	switch {
	case out.BatchID == 0:
		fmt.Fprintln(stderr, "collider run: no batch published:", err)
		return 1
	case len(out.Failed()) > 0:
		fmt.Fprintln(stdout, out.BatchID)
		return 3
	}
	fmt.Fprintln(stdout, out.BatchID)
	return 0
}

// runWithProgress runs the pipeline; on a terminal a line on standard
// error shows the current step and its progress.
func runWithProgress(ctx context.Context, p *jobs.Pipeline, stderr io.Writer) (jobs.Outcome, error) {
	bar := newBar(stderr, 100, "run")
	if bar == nil {
		return p.Run(ctx, "cli", cliUser().Name)
	}
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				id := p.Running()
				if id == 0 {
					continue
				}
				if r, err := p.Get(ctx, id); err == nil && r.Progress != nil {
					bar.Describe(strings.TrimSpace(r.Progress.Step + " " + r.Progress.Detail))
					if r.Progress.Percent != nil {
						bar.Set(int(*r.Progress.Percent))
					}
				}
			}
		}
	}()
	out, err := p.Run(ctx, "cli", cliUser().Name)
	close(stop)
	bar.Finish()
	return out, err
}

// printRunSummary writes what the run did, for a person at a terminal.
func printRunSummary(w io.Writer, out jobs.Outcome) {
	if len(out.Loads) > 0 {
		printLoadSummary(w, out.Loads)
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "model\tversion\texamined\tflagged\talready issued\tsuppressed\tnew clues\tsettlements")
	ms := append([]casebook.ModelRun(nil), out.Models...)
	sort.Slice(ms, func(i, j int) bool { return ms[i].Model < ms[j].Model })
	for _, m := range ms {
		examined := "in full"
		if m.Scope == "person" {
			examined = fmt.Sprintf("%d persons", m.Persons)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", m.Model, m.Version[:12], examined, m.Flagged, m.AlreadyIssued, m.Suppressed, m.Clues, m.Settlements)
	}
	tw.Flush()
	if out.BatchID > 0 {
		b := out.Batch
		fmt.Fprintf(w, "\nrun %d %s: batch %d published: %d clues, %d persons, %d institutions, %d settlements, fund amount %.2f yuan\n",
			out.RunID, out.Status, b.ID, b.Clues, b.Persons, b.Institutions, b.Settlements, b.FundAmount)
	} else {
		fmt.Fprintf(w, "\nrun %d %s\n", out.RunID, strings.TrimSpace(out.Status))
	}
}
