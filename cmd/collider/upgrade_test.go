package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"collider/casebook"
	"collider/store"
)

// extractStore unpacks a fixture's store.tar.gz into a new data directory.
func extractStore(t *testing.T, archive string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o750)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(data, filepath.Base(h.Name)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	return data
}

// dumpTables lists every row of every casebook table and of the delivery
// ledger as text, in the order of its columns' values: of the columns
// given per table (a migration may add others), or of all of them, which
// it returns.
func dumpTables(t *testing.T, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, columns map[string][]string) (rows, cols map[string][]string) {
	t.Helper()
	ctx := context.Background()
	cols = columns
	if cols == nil {
		cols = map[string][]string{}
		r, err := q.QueryContext(ctx, `SELECT database_name || '.' || table_name, column_name FROM duckdb_columns()
			WHERE database_name = 'casebook' OR (database_name = 'feeds' AND table_name IN ('deliveries', 'rejects', 'delivery_files', 'schema_migrations'))
			ORDER BY database_name, table_name, column_index`)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var table, col string
			r.Scan(&table, &col)
			cols[table] = append(cols[table], `"`+col+`"`)
		}
		r.Close()
	}
	rows = map[string][]string{}
	for table, cs := range cols {
		fields := make([]string, len(cs))
		for i, c := range cs {
			fields[i] = c + " := " + c
		}
		r, err := q.QueryContext(ctx, fmt.Sprintf("SELECT CAST(struct_pack(%s) AS VARCHAR) FROM %s ORDER BY %s",
			strings.Join(fields, ", "), table, strings.Join(cs, ", ")))
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		rows[table] = []string{}
		for r.Next() {
			var v string
			r.Scan(&v)
			rows[table] = append(rows[table], v)
		}
		r.Close()
	}
	return rows, cols
}

// dropped are the tables a migration removes: 0008_casebook.sql drops the
// dead store_info.
var dropped = map[string]bool{"casebook.store_info": true}

// dumpReadOnly dumps a store as its files are, without opening it for writing.
func dumpReadOnly(t *testing.T, data string) (rows, cols map[string][]string) {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, name := range []string{store.Feeds, store.Casebook} {
		if _, err := conn.ExecContext(context.Background(), fmt.Sprintf("ATTACH '%s' AS %s (READ_ONLY)", filepath.Join(data, name+".duckdb"), name)); err != nil {
			t.Fatal(err)
		}
	}
	return dumpTables(t, conn, nil)
}

// fingerprintDir lists every file under dir with its size, mode, time and hash.
func fingerprintDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		fmt.Fprintf(&b, "%s %v %d %d", strings.TrimPrefix(path, dir), fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if d.Type().IsRegular() {
			raw, _ := os.ReadFile(path)
			sum := sha256.Sum256(raw)
			b.WriteString(" " + hex.EncodeToString(sum[:]))
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

// Every fixture store under testdata/stores — each written by the release
// its directory names, before a change of the schema — opens with this
// collider and migrates forward: every row of every casebook table and of
// the delivery ledger is there afterwards, unchanged, and every invariant
// holds; the migrated store takes a lead action. Made newer than this
// collider, the same store is refused by the real binary, naming both
// versions, and not one of its files changes.
func TestUpgrade_FixtureStoresOpenAndMigrate(t *testing.T) {
	fixtures, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "stores", "*", "store.tar.gz"))
	if len(fixtures) == 0 {
		t.Fatal("no store fixture under testdata/stores")
	}
	ctx := context.Background()
	for _, fx := range fixtures {
		t.Run(filepath.Base(filepath.Dir(fx)), func(t *testing.T) {
			data := extractStore(t, fx)
			old, err := store.Inspect(ctx, data)
			if err != nil {
				t.Fatal(err)
			}
			if old == store.Known() {
				t.Fatalf("the fixture is at this collider's schema (%+v): it tests no upgrade", old)
			}
			before, columns := dumpReadOnly(t, data)
			// The fixture holds what an upgrade must carry: batches, leads
			// closed each way, returned and reassigned ones, audit lines.
			joined := strings.Join(before["casebook.lead_events"], "\n") + strings.Join(before["casebook.audit"], "\n")
			for _, want := range []string{"confirmed", "dismissed", "referred", "reassign", "returned", "download", "view"} {
				if !strings.Contains(joined, want) {
					t.Fatalf("the fixture has no %q among its events and audit", want)
				}
			}
			if len(before["casebook.batches"]) < 2 || len(before["casebook.clues"]) == 0 {
				t.Fatalf("the fixture has %d batches and %d clues", len(before["casebook.batches"]), len(before["casebook.clues"]))
			}
			mustCheck(t, data) // read-only: as the old release left it

			s := openForCheck(t, data) // migrates
			conn, err := s.DB.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for table := range dropped {
				delete(columns, table)
				delete(before, table)
			}
			after, _ := dumpTables(t, conn, columns)
			conn.Close()
			for table, rows := range before {
				switch {
				case strings.HasSuffix(table, ".schema_migrations"):
					if !slices.Equal(after[table][:len(rows)], rows) {
						t.Errorf("%s: the migrations applied before changed", table)
					}
				case !slices.Equal(after[table], rows):
					t.Errorf("%s: %d rows before the upgrade, %d after, or some differ", table, len(rows), len(after[table]))
				}
			}
			t.Logf("%s (%s, %s) migrated to %s, %s: %d clues, %d leads, %d lead events, %d audit rows, %d batches kept",
				filepath.Base(filepath.Dir(fx)), old.Feeds, old.Casebook, store.Known().Feeds, store.Known().Casebook,
				len(after["casebook.clues"]), len(after["casebook.leads"]), len(after["casebook.lead_events"]), len(after["casebook.audit"]), len(after["casebook.batches"]))
			// The migrated store works: its bureau investigates a lead it accepted.
			var lead int64
			var city string
			if err := s.DB.QueryRow("SELECT lead_id, city_code FROM casebook.leads WHERE status = 'accepted' ORDER BY lead_id LIMIT 1").Scan(&lead, &city); err != nil {
				t.Fatal(err)
			}
			if _, err := casebook.New(s.DB).Act(ctx, casebook.User{Name: "upgrade test", Role: casebook.RoleCity, City: city}, lead, casebook.Action{Action: "investigate"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.DB.Exec("INSERT INTO casebook.schema_migrations VALUES (9999, '9999_future.sql', now(), 'v9.9.9')"); err != nil {
				t.Fatal(err)
			}
			s.Close()

			// Newer than this collider: refused by the binary, untouched.
			os.RemoveAll(filepath.Join(data, "tmp"))
			untouched := fingerprintDir(t, data)
			for _, args := range [][]string{{"users", "list", "--data", data}, {"check", "--data", data}, {"backup", "--data", data, "--out", filepath.Join(t.TempDir(), "b.tar")}} {
				r := collider(t, nil, args...)
				known := store.Known().Casebook
				if r.code == 0 || !strings.Contains(r.stderr, "schema 9999 (9999_future.sql") || !strings.Contains(r.stderr, fmt.Sprintf("schema %d (%s", known.Version, known.Migration)) {
					t.Fatalf("collider %s on a newer store: exit %d %s", args[0], r.code, r.stderr)
				}
			}
			if fingerprintDir(t, data) != untouched {
				t.Fatal("a refused newer store changed")
			}
		})
	}
}
