package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"collider/domain"
	"collider/store"
	"collider/synth"
)

// Each capability a draft could reach for, tried twice on the same data:
// in a plain DuckDB with the snapshot and the casebook attached — the way
// drafts ran before the sandbox, inside the server — where it works; and
// in the sandbox's store (openSandboxed, what every draft runs in), where
// DuckDB itself refuses it and draftError says what a draft may not do.
// The statements are sent as they are, not through a model's one-query
// check: what stops them is the capability, not their spelling.
func TestSandbox_EachCapabilityClosedThatIsOpenWithoutIt(t *testing.T) {
	ctx := context.Background()
	inbox := t.TempDir()
	if _, err := synth.Generate(ctx, synth.Options{Out: inbox, Seed: 5, Settlements: 500}); err != nil {
		t.Fatal(err)
	}
	live := openStore(t)
	ds, errs := Discover(inbox)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	(&Loader{Store: live}).LoadAll(ctx, ds)
	dir := t.TempDir()
	snap := &Snapshot{Store: live, Dir: filepath.Join(dir, "sandbox"), KeyFile: filepath.Join(dir, "pseudonym.key")}
	if _, err := snap.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	casebookFile := filepath.Join(live.Options().Dir, "casebook.duckdb")
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir() // where the probes try to write
	other := filepath.Join(out, "other.duckdb")
	if db, err := sql.Open("duckdb", other); err != nil {
		t.Fatal(err)
	} else {
		db.Exec("CREATE TABLE secret AS SELECT 42 AS x")
		db.Close()
	}

	type probe struct {
		name, stmt, want string
		wrote            string // a file the statement writes, when it works
	}
	probes := []probe{
		{name: "read a file", stmt: "SELECT content FROM read_text('/etc/passwd')", want: "files"},
		{name: "read a file as a table", stmt: "SELECT count(*) FROM read_csv('/etc/passwd', header = false, sep = ':')", want: "files"},
		{name: "read the casebook's file", stmt: fmt.Sprintf("SELECT size FROM read_blob('%s')", casebookFile), want: "files"},
		{name: "a Parquet footer", stmt: fmt.Sprintf("SELECT count(*) FROM parquet_metadata('%s/settlements/*/*.parquet')", inbox), want: "files"},
		{name: "glob", stmt: "SELECT count(*) FROM glob('/etc/*')", want: "files"},
		{name: "copy to a file", stmt: fmt.Sprintf("COPY (SELECT 1 AS x) TO '%s/copy.csv'", out), want: "files", wrote: filepath.Join(out, "copy.csv")},
		{name: "export the database", stmt: fmt.Sprintf("EXPORT DATABASE '%s/export'", out), want: "files", wrote: filepath.Join(out, "export")},
		{name: "attach another database", stmt: fmt.Sprintf("ATTACH '%s' AS other (READ_ONLY)", other), want: "files"},
		{name: "a setting", stmt: "SET threads = 1", want: "settings"},
		{name: "a limit", stmt: "SET memory_limit = '100GB'", want: "settings"},
		{name: "a limit reset", stmt: "RESET max_temp_directory_size", want: "settings"},
		{name: "a pragma", stmt: "PRAGMA threads = 1", want: "settings"},
		{name: "the casebook's users", stmt: "SELECT count(token_hash) FROM casebook.users", want: "the casebook"},
		{name: "the casebook's issued clues", stmt: "SELECT count(*) FROM casebook.issued", want: "the casebook"},
	}

	// Without the sandbox: a plain DuckDB, as the server's was for drafts.
	plain, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprintf("ATTACH '%s' AS feeds (READ_ONLY)", snap.Path()), "USE feeds",
		fmt.Sprintf("ATTACH '%s' AS casebook (READ_ONLY)", casebookFile)} {
		if _, err := plain.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range probes {
		conn, err := plain.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, p.stmt); err != nil {
			t.Errorf("without the sandbox, %s (%s) does not work, so the probe proves nothing: %v", p.name, p.stmt, err)
		}
		conn.Close()
		if p.wrote != "" {
			if _, err := os.Stat(p.wrote); err != nil {
				t.Errorf("without the sandbox, %s wrote nothing: %v", p.name, err)
			}
			os.RemoveAll(p.wrote)
		}
	}
	var paths string
	plain.QueryRow("SELECT string_agg(path, ';') FROM duckdb_databases() WHERE path IS NOT NULL").Scan(&paths)
	if !strings.Contains(paths, snap.Path()) {
		t.Errorf("without the sandbox the database paths are %q", paths)
	}
	plain.Close()

	// In the sandbox, through a link in the draft's own directory, as
	// Sandbox.run makes it.
	scratch := filepath.Join(dir, "draft")
	os.Mkdir(scratch, 0o750)
	link := filepath.Join(scratch, "feeds.duckdb")
	if err := os.Link(snap.Path(), link); err != nil {
		t.Fatal(err)
	}
	sb, err := openSandboxed(ctx, link, scratch, store.Options{MemoryLimit: "1GB", Threads: 1, MaxTempSize: "1GB"})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			_, err := sb.DB.ExecContext(ctx, p.stmt)
			if err == nil {
				t.Fatalf("the sandbox let %s through", p.stmt)
			}
			err = draftError(err)
			if domain.ErrorCode(err) != domain.EINVALID || !strings.Contains(err.Error(), "not allowed in a draft: "+p.want) {
				t.Errorf("%s: %v, want a refusal naming %s", p.stmt, err, p.want)
			}
			if p.wrote != "" {
				if _, err := os.Stat(p.wrote); err == nil {
					t.Errorf("the sandbox wrote %s", p.wrote)
				}
			}
		})
	}
	// What a draft can list of its databases names no file of the store.
	if err := sb.DB.QueryRow("SELECT coalesce(string_agg(path, ';'), '') FROM duckdb_databases() WHERE path IS NOT NULL").Scan(&paths); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{snap.Dir, casebookFile, live.Options().Dir} {
		if strings.Contains(paths, bad) {
			t.Errorf("a draft sees the path %s (%s)", bad, paths)
		}
	}
	// And the feed tables are there: the sandbox is not simply empty.
	var n int
	if err := sb.DB.QueryRow("SELECT count(*) FROM settlements").Scan(&n); err != nil || n == 0 {
		t.Errorf("the sandbox reads %d settlements: %v", n, err)
	}
}
