package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"collider/store/storetest"
)

func TestDiskFull_RecognizesWhatEachLayerSays(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		err      error
		path     string
		spill    bool
		diskFull bool
	}{
		{"a WAL that cannot grow", errors.New(`TransactionContext Error: Failed to commit: Could not write file "` + dir + `/casebook.duckdb.wal": No space left on device`), dir + "/casebook.duckdb.wal", false, true},
		{"an optimistic write into the file", errors.New(`IO Error: Could not write file "` + dir + `/feeds.duckdb": No space left on device`), dir + "/feeds.duckdb", false, true},
		{"a spill beyond max_temp_directory_size", errors.New("Out of Memory Error: failed to offload data block of size 128.0 KiB (896.0 KiB/921.5 KiB used).\nThis limit was set by the 'max_temp_directory_size' setting."), "", true, true},
		{"a Go write", &fs.PathError{Op: "write", Path: dir + "/out.csv", Err: syscall.ENOSPC}, dir + "/out.csv", false, true},
		{"a quota", fmt.Errorf("export: %w", &fs.PathError{Op: "write", Path: dir + "/q", Err: syscall.EDQUOT}), dir + "/q", false, true},
		{"a constraint", errors.New("Constraint Error: duplicate key"), "", false, false},
		{"a plain out of memory", errors.New("Out of Memory Error: could not allocate block of size 256.0 KiB (1.0 GiB/1.0 GiB used)"), "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df := DiskFull(tc.err, dir+"/tmp")
			if (df != nil) != tc.diskFull {
				t.Fatalf("DiskFull(%v) = %v", tc.err, df)
			}
			if df == nil {
				return
			}
			if df.Path != tc.path || df.Spill != tc.spill || !errors.Is(df, ErrDiskFull) || !errors.Is(df, tc.err) {
				t.Fatalf("%+v", df)
			}
			msg := df.Error()
			if !strings.HasPrefix(msg, "the disk is full") || (tc.path != "" && !strings.Contains(msg, tc.path)) || (tc.spill && !strings.Contains(msg, dir+"/tmp")) {
				t.Fatalf("message %q does not say the disk is full and where", msg)
			}
		})
	}
}

// On a full disk a commit fails cleanly and says where, reads go on, a
// checkpoint is postponed rather than attempted (an attempt that fails
// invalidates the database), and once room is freed everything proceeds
// with nothing lost.
func TestCheckpoint_FullDiskPostponesAndCommitsFailCleanly(t *testing.T) {
	ctx := context.Background()
	mnt := storetest.MountTmpfs(t, "128m")
	data := filepath.Join(mnt, "data")
	s, err := Open(ctx, Options{Dir: data, MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	audit := func(id int) error {
		_, err := s.DB.ExecContext(ctx, "INSERT INTO casebook.audit VALUES (?, now(), 1, 'test', 'admin', 'view', repeat('x', 4000), 1, NULL)", id)
		return err
	}
	if err := audit(1); err != nil {
		t.Fatal(err)
	}
	free := storetest.Fill(t, mnt, 0)
	err = audit(2)
	if !errors.Is(s.DiskFull(err), ErrDiskFull) || !strings.Contains(s.DiskFull(err).Error(), filepath.Join(data, "casebook.duckdb.wal")) {
		t.Fatalf("a commit on a full disk: %v", err)
	}
	t.Log(s.DiskFull(err))
	if err := s.Checkpoint(ctx); !errors.Is(err, ErrCheckpointPostponed) {
		t.Fatalf("checkpoint on a full disk: %v, want postponed", err)
	}
	var n int
	if err := s.DB.QueryRowContext(ctx, "SELECT count(*) FROM casebook.audit").Scan(&n); err != nil || n != 1 {
		t.Fatalf("read on a full disk: %d %v", n, err)
	}
	free()
	if err := audit(3); err != nil {
		t.Fatalf("after freeing: %v", err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatalf("checkpoint with room: %v", err)
	}
	if size := fileSize(filepath.Join(data, "casebook.duckdb.wal")); size != 0 {
		t.Fatalf("the casebook WAL holds %d bytes after a checkpoint", size)
	}
	s.Close()
	s, err = Open(ctx, Options{Dir: data, MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	var ids string
	s.DB.QueryRowContext(ctx, "SELECT string_agg(audit_id, ',' ORDER BY audit_id) FROM casebook.audit").Scan(&ids)
	if ids != "1,3" {
		t.Fatalf("audit ids %s after reopening, want 1,3", ids)
	}
}

// When the disk fills during a checkpoint of the casebook all the same,
// DuckDB invalidates it; the store attaches it again at once, so that it
// answers reads and, once room is freed, writes.
func TestCheckpoint_CasebookInvalidatedByAFullDiskIsAttachedAgain(t *testing.T) {
	ctx := context.Background()
	mnt := storetest.MountTmpfs(t, "128m")
	s, err := Open(ctx, Options{Dir: filepath.Join(mnt, "data"), MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.DB.ExecContext(ctx, "INSERT INTO casebook.audit SELECT i, now(), 1, 'test', 'admin', 'view', repeat('x', 200) || i, 1, NULL FROM range(20000) t(i)"); err != nil {
		t.Fatal(err)
	}
	free := storetest.Fill(t, mnt, 0)
	err = s.fold(ctx, Casebook) // what the room check exists to avoid
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a checkpoint on a full disk: %v", err)
	}
	var n int
	if err := s.DB.QueryRowContext(ctx, "SELECT count(*) FROM casebook.audit").Scan(&n); err != nil || n != 20000 {
		t.Fatalf("read after the failed checkpoint: %d %v", n, err)
	}
	free()
	if _, err := s.DB.ExecContext(ctx, "INSERT INTO casebook.audit VALUES (-1, now(), 1, 'test', 'admin', 'view', 'after', 1, NULL)"); err != nil {
		t.Fatalf("write after freeing: %v", err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

// fingerprint lists every file under dir with its size, mode, time and hash.
func fingerprint(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %s", strings.TrimPrefix(path, dir), fi.Mode(), fi.Size(), fi.ModTime().Format("15:04:05.000000000"))
		if d.Type().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			fmt.Fprintf(&b, " %s", hex.EncodeToString(h.Sum(nil)))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A store written by a newer collider is refused with a message naming
// both versions, and not one of its files changes: no byte, no time, no
// new log or temp directory.
func TestOpen_NewerStoreIsRefusedAndUntouched(t *testing.T) {
	ctx := context.Background()
	for _, db := range []string{Casebook, Feeds} {
		t.Run(db, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(ctx, Options{Dir: dir, MemoryLimit: "1GB"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.DB.ExecContext(ctx, "INSERT INTO "+db+".schema_migrations VALUES (9999, '9999_future.sql', now(), 'v9.9.9')"); err != nil {
				t.Fatal(err)
			}
			s.Close()
			os.RemoveAll(filepath.Join(dir, "tmp"))
			before := fingerprint(t, dir)
			_, err = Open(ctx, Options{Dir: dir, MemoryLimit: "1GB"})
			if !errors.Is(err, ErrNewerStore) {
				t.Fatalf("got %v, want ErrNewerStore", err)
			}
			known := Known().level(db)
			for _, want := range []string{"schema 9999 (9999_future.sql, DuckDB v9.9.9)", fmt.Sprintf("schema %d (%s", known.Version, known.Migration), "nothing was changed"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q: %v", want, err)
				}
			}
			t.Log(err)
			if after := fingerprint(t, dir); after != before {
				t.Fatalf("the refused store changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
