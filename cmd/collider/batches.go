// collider batches and collider export: the published batches, for scripts.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"collider/casebook"
	"collider/store"
)

// cliUser is who the command line acts as: the province, on the operator's
// own machine, audited like anyone else.
func cliUser() casebook.User {
	name := "collider-cli"
	if u := os.Getenv("USER"); u != "" {
		name += ":" + u
	}
	return casebook.User{Name: name, Role: casebook.RoleProvince}
}

func cmdBatches(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("batches", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := parseWithConfig(fs, args, (*Config).storeFlags)
	if err != nil {
		return 2
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "collider batches:", err)
		return 1
	}
	defer s.Close()
	cb := casebook.New(s.DB)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "# batch\tpublished\trun\tclues\tpersons\tinstitutions\tsettlements\tfund_amount")
	var after int64
	for {
		bs, err := cb.Batches(ctx, cliUser(), after, 1000)
		if err != nil {
			fmt.Fprintln(stderr, "collider batches:", err)
			return 1
		}
		for _, b := range bs {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%.2f\n", b.ID, b.PublishedAt.Format("2006-01-02T15:04:05"), b.RunID,
				b.Clues, b.Persons, b.Institutions, b.Settlements, b.FundAmount)
			after = b.ID
		}
		if len(bs) < 1000 {
			break
		}
	}
	tw.Flush()
	return 0
}

func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	batch := fs.Int64("batch", 0, "batch id (see collider batches)")
	format := fs.String("format", "csv", "csv, xlsx or parquet")
	out := fs.String("out", "", "output file (- for standard output)")
	model := fs.String("model", "", "only this model's clues")
	city := fs.String("city", "", "only this city's clues")
	severity := fs.String("severity", "", "only this severity")
	cfg, err := parseWithConfig(fs, args, (*Config).storeFlags)
	if err != nil {
		return 2
	}
	if *batch <= 0 || *out == "" {
		fmt.Fprintln(stderr, "usage: collider export --data DIR --batch ID --format csv|xlsx|parquet --out FILE")
		return 2
	}
	if _, err := casebook.ContentType(*format); err != nil {
		fmt.Fprintln(stderr, "collider export:", err)
		return 2
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "collider export:", err)
		return 1
	}
	defer s.Close()
	cb := casebook.New(s.DB)
	cb.TmpDir = s.Options().TempDir
	if _, err := cb.Batch(ctx, cliUser(), *batch); err != nil {
		fmt.Fprintln(stderr, "collider export:", err)
		return 1
	}
	var w io.Writer = stdout
	var tmp *os.File
	if *out != "-" {
		// Write beside the target and rename, so a failed export leaves no half file.
		tmp, err = os.CreateTemp(filepath.Dir(*out), ".export-*")
		if err != nil {
			fmt.Fprintln(stderr, "collider export:", err)
			return 1
		}
		defer os.Remove(tmp.Name())
		w = tmp
	}
	n, err := cb.Export(ctx, cliUser(), casebook.ClueFilter{Batch: *batch, Model: *model, City: *city, Severity: *severity}, *format, w)
	if err == nil && tmp != nil {
		if err = tmp.Close(); err == nil {
			err = os.Rename(tmp.Name(), *out)
		}
	}
	if err != nil {
		if df := store.DiskFull(err, filepath.Dir(*out)); df != nil && tmp != nil {
			df.Path = *out // not the temporary name it was written under
			err = df
		}
		fmt.Fprintln(stderr, "collider export:", err)
		return 1
	}
	if *out != "-" {
		fmt.Fprintf(stderr, "%d clues written to %s\n", n, *out)
	}
	return 0
}
