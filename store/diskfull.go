// This file recognizes a full disk in what DuckDB and the operating system
// say, so that an operation that runs out of space fails with an error that
// says so and names where, whichever layer noticed first.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// ErrDiskFull is what every disk-full error matches with errors.Is.
var ErrDiskFull = errors.New("the disk is full")

// DiskFullError is a write that found no room: the file it could not write
// (when known), the directory whose filesystem is full, and how much room
// that filesystem had left when the error was read.
type DiskFullError struct {
	Path  string // the file that could not be written; empty when unknown
	Dir   string // the directory on the full filesystem
	Free  uint64 // bytes available there, measured after the failure
	Spill bool   // DuckDB could not spill to its temp directory
	Err   error  // what the failing layer said
}

func (e *DiskFullError) Error() string {
	where := e.Path
	if where == "" {
		where = e.Dir
	}
	if e.Spill {
		return fmt.Sprintf("the disk is full: DuckDB could not spill to its temp directory %s (%s free there, or max_temp_directory_size reached); free space there or raise the memory limit",
			e.Dir, HumanBytes(e.Free))
	}
	return fmt.Sprintf("the disk is full: could not write %s (%s free on the filesystem of %s); free space there and try again",
		where, HumanBytes(e.Free), e.Dir)
}

// Unwrap lets errors.Is match ErrDiskFull and the original error.
func (e *DiskFullError) Unwrap() []error { return []error{ErrDiskFull, e.Err} }

// quotedPath finds the file a DuckDB IO error names: `Could not write file "PATH": …`.
var quotedPath = regexp.MustCompile(`"(/[^"]+)"`)

// DiskFull returns err as a *DiskFullError when it says that a disk is full
// (ENOSPC or EDQUOT from the operating system, DuckDB's "No space left on
// device", or DuckDB failing to spill within max_temp_directory_size, which
// by default is the room left on the temp directory's disk), and nil for
// any other error. spillDir is DuckDB's temp directory, named when DuckDB
// does not say where it failed to spill.
func DiskFull(err error, spillDir string) *DiskFullError {
	if err == nil {
		return nil
	}
	var df *DiskFullError
	if errors.As(err, &df) {
		return df
	}
	msg := err.Error()
	e := &DiskFullError{Err: err}
	var pe *fs.PathError
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		if errors.As(err, &pe) {
			e.Path = pe.Path
		}
	case strings.Contains(msg, "No space left on device"), strings.Contains(msg, "Disk quota exceeded"):
		if m := quotedPath.FindStringSubmatch(msg); m != nil {
			e.Path = m[1]
		}
	case strings.Contains(msg, "max_temp_directory_size"), strings.Contains(msg, "failed to offload data block"):
		e.Spill, e.Dir = true, spillDir
	default:
		return nil
	}
	if e.Dir == "" && e.Path != "" {
		e.Dir = filepath.Dir(e.Path)
	}
	if e.Dir != "" {
		e.Free, _ = FreeSpace(e.Dir)
	}
	return e
}

// DiskFull is the package's DiskFull with the store's temp directory: it
// returns a *DiskFullError for a disk-full error, and err itself otherwise.
// A failed spill also makes the store read the temp directory's room again
// (see RefreshSpillLimit), so that the next query may spill once there is
// room.
func (s *Store) DiskFull(err error) error {
	df := DiskFull(err, s.opts.TempDir)
	if df == nil {
		return err
	}
	if df.Spill {
		s.RefreshSpillLimit(context.Background())
	}
	return df
}

// RefreshSpillLimit sets DuckDB's max_temp_directory_size to what its
// default means now: 90% of the room on the temp directory's disk, plus
// what the spill files already take. DuckDB reads that room once, when it
// first spills; a server started on a full disk would otherwise never
// spill again after room was freed. A limit the operator set is left alone.
func (s *Store) RefreshSpillLimit(ctx context.Context) error {
	if s.opts.MaxTempSize != "" || s.opts.ReadOnly {
		return nil
	}
	free, err := FreeSpace(s.opts.TempDir)
	if err != nil {
		return err
	}
	var used int64
	if entries, err := os.ReadDir(s.opts.TempDir); err == nil {
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "duckdb_temp") {
				used += fi.Size()
			}
		}
	}
	limit := (uint64(used) + free/10*9) >> 10
	_, err = s.DB.ExecContext(ctx, fmt.Sprintf("SET GLOBAL max_temp_directory_size = '%dKiB'", limit))
	return err
}

// FreeSpace is the room available to this process on the filesystem of dir
// (the nearest existing parent, for a directory not made yet).
func FreeSpace(dir string) (uint64, error) {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			return st.Bavail * uint64(st.Bsize), nil
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, syscall.ENOENT) || parent == dir {
			return 0, err
		}
		dir = parent
	}
}

// HumanBytes writes a size for people: 0 B, 912 KiB, 3.4 GiB.
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v >= 100 {
		return fmt.Sprintf("%.0f %ciB", v, "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
