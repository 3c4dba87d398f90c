// collider backup and collider restore: a consistent copy of the store in
// one file, taken from the files or through the server that holds them,
// and restored only into a new or empty data directory.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"collider/casebook"
	"collider/jobs"
	"collider/store"
)

func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "the backup file to write (written beside it and renamed when whole)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: collider backup --data DIR --out FILE
       collider backup --server URL --token-file F --out FILE    (an admin's token; while serve holds the store)

Writes a consistent copy of everything the store keeps into one file: a
manifest with the schema, the rows of every table and the SHA-256 of every
file, then the files. Prints the file's name on the last line.`)
		fs.PrintDefaults()
	}
	cfg, err := parseWithConfig(fs, args, func(c *Config, fs *flag.FlagSet) {
		c.storeFlags(fs)
		c.remoteFlags(fs)
	})
	if err != nil {
		return 2
	}
	remote := false
	fs.Visit(func(f *flag.Flag) { remote = remote || f.Name == "server" })
	if *out == "" || (!remote && strings.TrimSpace(cfg.Data) == "") {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "collider backup:", err)
		return 1
	}
	var wb store.WrittenBackup
	if remote {
		if wb, err = downloadBackup(ctx, cfg, *out); err != nil {
			return fail(err)
		}
	} else {
		s, err := openStore(ctx, cfg)
		if errors.Is(err, store.ErrInUse) {
			return fail(fmt.Errorf("%w\nwhile the server holds the store, back it up through it: collider backup --server URL --token-file F --out %s", err, *out))
		}
		if err != nil {
			return fail(err)
		}
		defer s.Close()
		start := time.Now()
		wb, err = s.WriteFile(ctx, *out)
		rec := casebook.BackupRecord{Trigger: "cli", StartedBy: cliUser().Name, StartedAt: start, FinishedAt: time.Now(),
			Status: "succeeded", File: wb.Path, Bytes: wb.Bytes, SHA256: wb.SHA256}
		if err != nil {
			rec.Status, rec.Error, rec.File = "failed", err.Error(), ""
		} else {
			rec.Manifest, _ = json.Marshal(wb.Manifest)
		}
		cb := casebook.New(s.DB)
		if _, rerr := cb.RecordBackup(context.WithoutCancel(ctx), rec); rerr != nil {
			fmt.Fprintln(stderr, "collider backup: the backup history:", rerr)
		}
		if err != nil {
			return fail(err)
		}
		// Every person's data is in it: audited like any download.
		var rows int64
		for _, n := range wb.Manifest.Rows {
			rows += n
		}
		if err := cb.Audit(ctx, cliUser(), "download", "backup", rows, fmt.Sprintf("%s, %d bytes, sha256 %s", wb.Path, wb.Bytes, wb.SHA256)); err != nil {
			fmt.Fprintln(stderr, "collider backup: the audit log:", err)
		}
	}
	printManifest(stderr, wb.Manifest)
	fmt.Fprintf(stderr, "%s: %s, sha256 %s\n", wb.Path, store.HumanBytes(uint64(wb.Bytes)), wb.SHA256)
	fmt.Fprintln(stdout, wb.Path)
	return 0
}

// downloadBackup takes a backup through the server: POST /api/v1/backups,
// checked as it streams in (manifest, sizes, checksums) and renamed to path
// only when whole.
func downloadBackup(ctx context.Context, cfg Config, path string) (store.WrittenBackup, error) {
	wb := store.WrittenBackup{Path: path}
	c, err := newAPIClient(cfg, 0) // a backup takes as long as the store is big
	if err != nil {
		return wb, err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return wb, diskFull(err, dir)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	body, err := c.stream(ctx, "POST", "/api/v1/backups")
	if err != nil {
		return wb, err
	}
	defer body.Close()
	h := sha256.New()
	cw := &countWriter{}
	in := io.TeeReader(body, io.MultiWriter(f, h, cw))
	if wb.Manifest, err = store.VerifyBackup(in); err != nil {
		return wb, diskFull(err, dir)
	}
	if _, err := io.Copy(io.Discard, in); err != nil { // the tar's end
		return wb, diskFull(err, dir)
	}
	if err := f.Sync(); err != nil {
		return wb, diskFull(err, dir)
	}
	if err := f.Close(); err != nil {
		return wb, diskFull(err, dir)
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return wb, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return wb, err
	}
	wb.Bytes, wb.SHA256 = cw.n, hex.EncodeToString(h.Sum(nil))
	return wb, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// diskFull names a full disk, and leaves other errors as they are.
func diskFull(err error, dir string) error {
	if df := store.DiskFull(err, dir); df != nil {
		return df
	}
	return err
}

// printManifest says what a backup holds.
func printManifest(w io.Writer, m store.Manifest) {
	fmt.Fprintf(w, "backup of %s taken %s: feeds %s, casebook %s\n", m.DataDir, m.CreatedAt.Format("2006-01-02 15:04:05"), m.Schema.Feeds, m.Schema.Casebook)
	fmt.Fprintf(w, "  %d batches, %d clues, %d leads, %d lead events, %d audit rows, %d users; %d deliveries\n",
		m.Rows["casebook.batches"], m.Rows["casebook.clues"], m.Rows["casebook.leads"], m.Rows["casebook.lead_events"],
		m.Rows["casebook.audit"], m.Rows["casebook.users"], m.Rows["feeds.deliveries"])
	for _, f := range m.Files {
		fmt.Fprintf(w, "  %-16s %10s  sha256 %s\n", f.Name, store.HumanBytes(uint64(f.Size)), f.SHA256)
	}
}

func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the backup file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: collider restore --from FILE --data DIR

Restores a backup into DIR, which must be new or empty (a restore never
writes over a store). Every file is checked against the manifest's size and
SHA-256; a damaged or truncated backup is refused and leaves nothing behind.
The restored store is then opened (a backup of an older collider migrates
forward) and checked: exit 0 when every invariant holds.`)
		fs.PrintDefaults()
	}
	cfg, err := parseWithConfig(fs, args, (*Config).storeFlags)
	if err != nil {
		return 2
	}
	if *from == "" || strings.TrimSpace(cfg.Data) == "" {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "collider restore:", err)
		return 1
	}
	f, err := os.Open(*from)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	m, err := store.Restore(ctx, f, cfg.Data)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", *from, err))
	}
	printManifest(stderr, m)
	s, err := openStore(ctx, cfg)
	if err != nil {
		return fail(fmt.Errorf("the restored store does not open: %w", err))
	}
	defer s.Close()
	report, err := jobs.Check(ctx, s.DB)
	if err != nil {
		return fail(err)
	}
	printCheck(stdout, cfg.Data, report)
	if !report.OK {
		return 1
	}
	return 0
}
