// This file finds deliveries (数据交付) in the inbox and identifies them.
package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"collider/feeds"
)

// SuccessMarker is the file that marks a delivery complete (the Hadoop/Spark convention).
const SuccessMarker = "_SUCCESS"

// Delivery is one complete directory INBOX/<feed>/<name>/ of Parquet files,
// or a file or directory given by hand with --feed.
type Delivery struct {
	Feed  string
	Name  string
	Path  string   // the directory (or the single file given by hand)
	Files []string // *.parquet, sorted: a later file's rows win over an earlier one's
}

// Discover lists the complete deliveries of an inbox, in load order: feeds
// in contract order (reference feeds first), deliveries by name. Directories
// without _SUCCESS are not read. Directories that are not feeds are returned
// as errors, so an operator sees a misplaced delivery instead of losing it.
func Discover(inbox string) ([]Delivery, []error) {
	entries, err := os.ReadDir(inbox)
	if err != nil {
		return nil, []error{fmt.Errorf("inbox %s: %w", inbox, err)}
	}
	var out []Delivery
	var errs []error
	var feedDirs []string
	for _, e := range entries {
		if !isDir(filepath.Join(inbox, e.Name())) {
			continue
		}
		if _, err := feeds.Lookup(e.Name()); err != nil {
			errs = append(errs, fmt.Errorf("inbox %s: directory %s is not a feed (feeds: %s)", inbox, e.Name(), strings.Join(feeds.Names(), ", ")))
			continue
		}
		feedDirs = append(feedDirs, e.Name())
	}
	feeds.SortByLoadOrder(feedDirs)
	for _, feed := range feedDirs {
		dir := filepath.Join(inbox, feed)
		subs, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var names []string
		for _, s := range subs {
			if isDir(filepath.Join(dir, s.Name())) {
				names = append(names, s.Name())
			}
		}
		sort.Strings(names)
		for _, name := range names {
			path := filepath.Join(dir, name)
			if _, err := os.Stat(filepath.Join(path, SuccessMarker)); err != nil {
				continue // still arriving
			}
			files, err := parquetFiles(path)
			if err != nil {
				errs = append(errs, err)
			}
			out = append(out, Delivery{Feed: feed, Name: name, Path: path, Files: files})
		}
	}
	return out, errs
}

// isDir follows symbolic links: an operator may link a feed or a delivery
// into the inbox rather than copy it.
func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// ManualDelivery makes a delivery of a single Parquet file or a directory of
// them, given by hand; no _SUCCESS is needed.
func ManualDelivery(feed, path string) (Delivery, error) {
	if _, err := feeds.Lookup(feed); err != nil {
		return Delivery{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return Delivery{}, err
	}
	d := Delivery{Feed: feed, Name: filepath.Base(path), Path: path}
	if st.IsDir() {
		d.Files, err = parquetFiles(path)
		return d, err
	}
	d.Files = []string{path}
	return d, nil
}

func parquetFiles(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.parquet"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

// Hash is the SHA-256 over the delivery's files (name and content, in order):
// the delivery's identity, so that the same delivery is never loaded twice.
func (d Delivery) Hash() (string, int64, error) {
	if len(d.Files) == 0 {
		return "", 0, errors.New("no *.parquet files")
	}
	h := sha256.New()
	var total int64
	for _, f := range d.Files {
		fh, err := os.Open(f)
		if err != nil {
			return "", 0, err
		}
		fmt.Fprintf(h, "%s\x00", filepath.Base(f))
		n, err := io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", 0, fmt.Errorf("%s: %w", f, err)
		}
		total += n
	}
	return hex.EncodeToString(h.Sum(nil)), total, nil
}

// Stat is a quick identity of the delivery's files as the file system
// describes them: the name, size, modification time and inode of each.
// The same stat means the same files, unchanged since they were hashed,
// without reading them again (the inbox keeps a year of deliveries, and
// hashing them all every night would cost more than the night's work).
func (d Delivery) Stat() (string, error) {
	if len(d.Files) == 0 {
		return "", errors.New("no *.parquet files")
	}
	h := sha256.New()
	for _, f := range d.Files {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		var ino uint64
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			ino = sys.Ino
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%d\n", filepath.Base(f), st.Size(), st.ModTime().UnixNano(), ino)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
