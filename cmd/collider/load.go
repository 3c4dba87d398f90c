// collider load: load complete deliveries from an inbox, or one path by hand.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"collider/jobs"
)

func cmdLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	feed := fs.String("feed", "", "load one file or directory given as the argument, as this feed")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: collider load --data DIR (--inbox DIR | --feed NAME PATH)")
		fs.PrintDefaults()
	}
	cfg, err := parseWithConfig(fs, args, func(c *Config, fs *flag.FlagSet) {
		c.storeFlags(fs)
		fs.StringVar(&c.Inbox, "inbox", c.Inbox, "inbox directory: INBOX/<feed>/<delivery>/ with _SUCCESS (env COLLIDER_INBOX)")
	})
	if err != nil {
		fmt.Fprintln(stderr, "collider load:", err)
		return 2
	}
	inbox := &cfg.Inbox
	if *feed != "" {
		cfg.Inbox = "" // --feed PATH is given by hand; the configured inbox is not read
	}
	var ds []jobs.Delivery
	switch {
	case *feed != "" && fs.NArg() == 1 && *inbox == "":
		d, err := jobs.ManualDelivery(*feed, fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, "collider load:", err)
			return 1
		}
		ds = []jobs.Delivery{d}
	case *inbox != "" && *feed == "" && fs.NArg() == 0:
		var errs []error
		ds, errs = jobs.Discover(*inbox)
		for _, err := range errs {
			fmt.Fprintln(stderr, "collider load:", err)
		}
	default:
		fs.Usage()
		return 2
	}
	var byHand []string // the directory of a delivery given by hand
	if *feed != "" {
		dir := ds[0].Path
		if st, err := os.Stat(dir); err == nil && !st.IsDir() {
			dir = filepath.Dir(dir)
		}
		byHand = append(byHand, dir)
	}
	s, err := openStore(ctx, cfg, byHand...)
	if err != nil {
		fmt.Fprintln(stderr, "collider load:", err)
		return 1
	}
	defer s.Close()
	results := loadWithProgress(ctx, &jobs.Loader{Store: s}, ds, stderr)
	printLoadSummary(stdout, results)
	failed := 0
	for _, r := range results {
		if r.Status == jobs.StatusFailed {
			failed++
			fmt.Fprintf(stderr, "collider load: %s/%s failed: %v\n", r.Feed, r.Name, r.Err)
		}
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "collider load: interrupted; the delivery in progress was rolled back")
		return 1
	case failed > 0:
		return 3
	}
	return 0
}

// loadWithProgress loads deliveries with a progress bar on a terminal.
func loadWithProgress(ctx context.Context, l *jobs.Loader, ds []jobs.Delivery, stderr io.Writer) []jobs.LoadResult {
	var total int64
	for _, d := range ds {
		if in, err := jobs.Inspect(d); err == nil {
			total += jobs.WorkUnits(in.Rows)
		}
	}
	bar := newBar(stderr, total, "loading")
	l.Progress = addFunc(bar)
	results := l.LoadAll(ctx, ds)
	if bar != nil {
		bar.Finish()
	}
	return results
}

// printLoadSummary writes one line per delivery.
func printLoadSummary(w io.Writer, results []jobs.LoadResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "feed\tdelivery\tstatus\trows\tloaded\trejected\treplaced\tseconds\tnote")
	for _, r := range results {
		note := r.Note
		if r.Err != nil {
			note = r.Err.Error()
		}
		if len(r.Extra) > 0 {
			note = strings.TrimSpace(note + " extra columns ignored: " + strings.Join(r.Extra, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%.1f\t%s\n", r.Feed, r.Name, r.Status, r.Rows, r.Loaded, r.Rejected, r.Replaced, r.Seconds, note)
	}
	tw.Flush()
}
