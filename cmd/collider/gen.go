// collider gen: write a synthetic Gansu-like province in the delivery layout.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"collider/synth"
)

func cmdGen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt synth.Options
	fs.StringVar(&opt.Out, "out", "", "output directory (an inbox: OUT/<feed>/<delivery>/)")
	fs.Int64Var(&opt.Seed, "seed", 1, "random seed; the same seed writes the same files")
	fs.Int64Var(&opt.Settlements, "settlements", 100_000, "settlements to write (planted cases included)")
	fs.Int64Var(&opt.Persons, "persons", 0, "persons (default settlements × 25/63)")
	fs.Int64Var(&opt.Locations, "locations", 0, "location records (default settlements × 50/63)")
	fs.StringVar(&opt.Delivery, "delivery", "", "delivery directory name (default 0001)")
	fs.Int64Var(&opt.FileRows, "file-rows", 0, "rows per Parquet file (default 4,000,000)")
	fs.BoolVar(&opt.Bad, "bad", false, "also write bad deliveries: wrong schema, corrupt file, bad rows of every reason, one without _SUCCESS")
	night := fs.Int("night", 0, "write night N of the province the other flags describe (generated before with them) instead of the province: the day's deliveries after its year")
	share := fs.Int64("share", 365, "with --night: the night brings 1/share of the year's settlements and police records")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: collider gen --out DIR [--seed N] [--settlements N] [--persons N] [--locations N] [--bad]
       collider gen --out DIR --night N [--share 365] [the province's --seed, --settlements, --persons, --locations]`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if opt.Out == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if *night > 0 {
		start := time.Now()
		sum, err := synth.Night(ctx, synth.NightOptions{Province: opt, Out: opt.Out, Night: *night, Delivery: opt.Delivery, Share: *share})
		if err != nil {
			fmt.Fprintln(stderr, "collider gen:", err)
			return 1
		}
		printNightSummary(stdout, *night, sum, time.Since(start).Seconds())
		return 0
	}
	sum, err := generate(ctx, opt, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "collider gen:", err)
		return 1
	}
	printGenSummary(stdout, sum)
	return 0
}

// generated is a generator run and how long it took.
type generated struct {
	synth.Summary
	Seconds float64
}

// generate runs the generator with a progress bar on a terminal.
func generate(ctx context.Context, opt synth.Options, stderr io.Writer) (generated, error) {
	bar := newBar(stderr, opt.Settlements, "generating")
	if bar != nil {
		opt.Progress = func(done, total int64) { bar.Set64(done) }
	}
	start := time.Now()
	sum, err := synth.Generate(ctx, opt)
	if bar != nil {
		bar.Finish()
	}
	return generated{sum, time.Since(start).Seconds()}, err
}

func printGenSummary(w io.Writer, sum generated) {
	printFeedRows(w, sum.Rows)
	fmt.Fprintf(w, "%d persons, %d institutions; planted %d fraudulent settlements and %d near-misses, listed in %s (%.1f s)\n",
		sum.Persons, sum.Institutions, sum.Planted, sum.NearMisses, filepath.Join(sum.Out, synth.TruthFile), sum.Seconds)
}

func printNightSummary(w io.Writer, night int, sum synth.NightSummary, seconds float64) {
	printFeedRows(w, sum.Rows)
	fmt.Fprintf(w, "night %d: %d late deaths, %d corrected settlements (%.1f s)\n", night, sum.LateDeaths, sum.Corrections, seconds)
}

// printFeedRows prints a table of the rows written per feed, by feed name.
func printFeedRows(w io.Writer, rows map[string]int64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "feed\trows\n")
	for _, f := range slices.Sorted(maps.Keys(rows)) {
		fmt.Fprintf(tw, "%s\t%d\n", f, rows[f])
	}
	tw.Flush()
}
