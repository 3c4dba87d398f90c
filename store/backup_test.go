package store

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tableRows dumps every row of every table of a database, ordered, as text.
func tableRows(t *testing.T, s *Store, db string) map[string]string {
	t.Helper()
	rows, err := s.DB.Query("SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1", db)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	out := map[string]string{}
	for _, tb := range tables {
		var dump string
		if err := s.DB.QueryRow(fmt.Sprintf(`SELECT coalesce(string_agg(CAST(t AS VARCHAR), chr(10) ORDER BY CAST(t AS VARCHAR)), '') FROM %s."%s" t`, db, tb)).Scan(&dump); err != nil {
			t.Fatalf("%s.%s: %v", db, tb, err)
		}
		out[tb] = dump
	}
	return out
}

// A backup restored into a new directory is the same store: every row of
// every table, the sequences going on where they were, the key with mode
// 0600; derived directories are left out.
func TestBackup_RestoredStoreIsTheSame(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "data")
	s, err := Open(ctx, Options{Dir: src, MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 7; i++ {
		if _, err := s.DB.Exec("INSERT INTO casebook.audit VALUES (nextval('casebook.audit_ids'), now(), 1, '审计', 'admin', 'view', 'lead ' || ?, 1, NULL)", i); err != nil {
			t.Fatal(err)
		}
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	os.WriteFile(filepath.Join(src, "pseudonym.key"), key, 0o600)
	os.MkdirAll(filepath.Join(src, "sandbox"), 0o750)
	os.WriteFile(filepath.Join(src, "sandbox", "derived.duckdb"), []byte("rebuildable"), 0o640)

	file := filepath.Join(dir, "backup.tar")
	wb, err := s.WriteFile(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if wb.Manifest.Rows["casebook.audit"] != 7 || wb.Manifest.Schema.Casebook != Known().Casebook || len(wb.Manifest.Files) != 3 {
		t.Fatalf("manifest: %+v", wb.Manifest)
	}
	f, _ := os.Open(file)
	restored := filepath.Join(dir, "restored")
	m, err := Restore(ctx, f, restored)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(restored)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "casebook.duckdb feeds.duckdb pseudonym.key" {
		t.Fatalf("restored %v", names)
	}
	if fi, _ := os.Stat(filepath.Join(restored, "pseudonym.key")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key has mode %v", fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(restored, "pseudonym.key")); !bytes.Equal(b, key) {
		t.Fatal("the key differs")
	}
	r, err := Open(ctx, Options{Dir: restored, MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, db := range []string{Casebook, Feeds} {
		want, got := tableRows(t, s, db), tableRows(t, r, db)
		if len(want) != len(got) || len(want) < 5 {
			t.Fatalf("%s: %d tables restored of %d", db, len(got), len(want))
		}
		for tb := range want {
			if got[tb] != want[tb] {
				t.Errorf("%s.%s differs after the restore", db, tb)
			}
			if n := strings.Count(want[tb], "\n") + 1; want[tb] != "" && int64(n) != m.Rows[db+"."+tb] {
				t.Errorf("%s.%s: %d rows, the manifest says %d", db, tb, n, m.Rows[db+"."+tb])
			}
		}
	}
	var a, b int64
	s.DB.QueryRow("SELECT nextval('casebook.audit_ids')").Scan(&a)
	r.DB.QueryRow("SELECT nextval('casebook.audit_ids')").Scan(&b)
	if a != 8 || b != 8 {
		t.Fatalf("the audit sequence goes on at %d in the source and %d in the restore, want 8", a, b)
	}
}

// A damaged, truncated or foreign backup is refused, saying which and
// where, and leaves nothing behind; a restore never writes into a
// directory that holds anything.
func TestRestore_RefusesDamagedTruncatedAndOccupied(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: filepath.Join(dir, "data"), MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	wb, err := s.WriteFile(ctx, filepath.Join(dir, "backup.tar"))
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(wb.Path)
	// Where each file's bytes sit in the tar.
	offsets := map[string][2]int64{}
	br := bytes.NewReader(good)
	tr := tar.NewReader(br)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		// The reader stops at the entry's data: what it consumed is the offset.
		offsets[h.Name] = [2]int64{int64(len(good) - br.Len()), h.Size}
	}
	caseDB := offsets["casebook.duckdb"]
	feedsDB := offsets["feeds.duckdb"]
	flip := func(at int64) []byte {
		b := bytes.Clone(good)
		b[at] ^= 0x40
		return b
	}
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"a byte flipped in the casebook", flip(caseDB[0] + caseDB[1]/2), "casebook.duckdb does not match its checksum"},
		{"a byte flipped in the feeds", flip(feedsDB[0] + feedsDB[1] - 1), "feeds.duckdb does not match its checksum"},
		{"cut inside the manifest", good[:700], "ends inside manifest.json"},
		{"cut inside the casebook", good[:caseDB[0]+caseDB[1]/3], "ends inside casebook.duckdb"},
		{"cut inside the feeds", good[:feedsDB[0]+10], "ends inside feeds.duckdb"},
		{"cut between files", good[:caseDB[0]+((caseDB[1]+511)/512)*512], "feeds.duckdb is missing"},
		{"not a backup", []byte("PAR1 this is a parquet file, not a backup"), "does not start with a readable manifest.json"},
		{"empty", nil, "does not start with a readable manifest.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "restored")
			_, err := Restore(ctx, bytes.NewReader(tc.file), target)
			if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrBadBackup saying %q", err, tc.want)
			}
			if _, serr := os.Stat(target); !errors.Is(serr, os.ErrNotExist) {
				t.Fatalf("a refused restore left %s behind", target)
			}
			if _, err := VerifyBackup(bytes.NewReader(tc.file)); !errors.Is(err, ErrBadBackup) {
				t.Fatalf("verify: %v", err)
			}
			t.Log(err)
		})
	}
	t.Run("into a directory that holds a store", func(t *testing.T) {
		target := filepath.Join(dir, "data")
		before := fingerprint(t, target)
		_, err := Restore(ctx, bytes.NewReader(good), target)
		if err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("got %v", err)
		}
		if fingerprint(t, target) != before {
			t.Fatal("the refused restore changed the directory")
		}
	})
	t.Run("into an empty directory", func(t *testing.T) {
		target := t.TempDir()
		if _, err := Restore(ctx, bytes.NewReader(good), target); err != nil {
			t.Fatal(err)
		}
	})
}
