// Package store owns the DuckDB handle: it opens the two database files under
// --data, applies the schema migrations, seeds the reference regions and
// hands out the connection pool. Nothing else opens DuckDB.
//
// Two files, one connection: feeds.duckdb (the bulk feed tables, the delivery
// ledger and rejects, the regions) is the main database, so models query
// `settlements` unqualified; casebook.duckdb (batches, clues, leads, events,
// audit, users: the system of record) is attached as `casebook`. Deleting
// feeds.duckdb and reloading the deliveries never touches the casebook.
// DuckDB lets one transaction write to only one of the two files, which fits:
// a delivery is loaded into feeds, a batch is published into the casebook.
package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"database/sql/driver"

	"github.com/duckdb/duckdb-go/v2"

	"collider/domain"
	"collider/regions"
	schema "collider/sql"
)

// Databases are the catalog names of the two files.
const (
	Feeds    = "feeds"
	Casebook = "casebook"
)

// Options are the store's settings.
type Options struct {
	Dir         string // --data
	MemoryLimit string // DuckDB memory_limit, e.g. "8GB"; default: 60% of RAM
	Threads     int    // default: number of CPUs
	TempDir     string // spill directory; default DIR/tmp
	MaxTempSize string // max_temp_directory_size; default DuckDB's (90% of free disk)
	ReadOnly    bool
	// Files are the directories the database may read and write files in:
	// the inbox, a delivery loaded by hand, the drafts' snapshot. Nothing
	// else: external access is off, so that no SQL this instance runs (a
	// live model included) reaches another file.
	Files []string
	// FeedsOnly opens the feeds database without the casebook: a scratch
	// store for fixture cases, which must hold nothing but fixture rows.
	FeedsOnly bool
	// Lock locks the configuration once the store is open: no SQL can
	// change a setting (memory, threads, paths) afterwards. For sandboxes.
	Lock bool
	// WorkerNice raises the nice value of DuckDB's worker threads (Linux):
	// a server's nightly run and drafts give way to the people reading,
	// and take every core when nobody does. 0: the process's own.
	WorkerNice int
}

// Store is the one owner of the DuckDB database.
type Store struct {
	DB   *sql.DB
	opts Options

	checkpointMu sync.Mutex
	backupMu     sync.Mutex
}

// ErrNewerStore is returned when the store was written by a newer collider.
var ErrNewerStore = errors.New("store written by a newer collider")

// ErrInUse is returned when another process holds the store: DuckDB lets
// one process open a database file for writing.
var ErrInUse = errors.New("the store is in use")

// lockHolder finds the process DuckDB names when a file is locked.
var lockHolder = regexp.MustCompile(`Could not set lock on file .*Conflicting lock is held in .* \(PID (\d+)\)`)

// Open opens (creating if needed) the store under opts.Dir and migrates it.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: no data directory (--data)")
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// A store written by a newer collider is refused before anything here
	// opens it for writing: not a file changed, not a log created.
	if sc, err := Inspect(ctx, opts.Dir); err != nil {
		return nil, err
	} else if db := sc.NewerThan(Known()); db != "" {
		return nil, NewerError("store "+opts.Dir, sc, db)
	}
	if opts.TempDir == "" {
		opts.TempDir = filepath.Join(opts.Dir, "tmp")
	}
	if opts.MemoryLimit == "" {
		opts.MemoryLimit = DefaultMemoryLimit()
	}
	if opts.Threads <= 0 {
		opts.Threads = runtime.NumCPU()
	}
	feedsPath := filepath.Join(opts.Dir, Feeds+".duckdb")
	files, err := allowedDirs(opts.Files)
	if err != nil {
		return nil, err
	}
	opts.Files = files
	settings := []string{
		fmt.Sprintf("SET GLOBAL memory_limit = '%s'", sqlString(opts.MemoryLimit)),
		fmt.Sprintf("SET GLOBAL threads = %d", opts.Threads),
		fmt.Sprintf("SET GLOBAL temp_directory = '%s'", sqlString(opts.TempDir)),
		"SET GLOBAL preserve_insertion_order = false",
		"SET GLOBAL TimeZone = 'Asia/Shanghai'",
		// Checkpoints are the store's (see checkpoint.go): DuckDB's own, at
		// a commit or at shutdown, would invalidate a database when the
		// disk is full.
		"SET GLOBAL checkpoint_threshold = '1TB'",
		"PRAGMA disable_checkpoint_on_shutdown",
	}
	if opts.MaxTempSize != "" {
		settings = append(settings, fmt.Sprintf("SET GLOBAL max_temp_directory_size = '%s'", sqlString(opts.MaxTempSize)))
	}
	var attach []string
	if !opts.FeedsOnly {
		attach = append(attach, attachStatement(opts))
	}
	attach = append(attach, lockdown(opts)...)
	dsn := feedsPath
	if opts.ReadOnly {
		dsn += "?access_mode=read_only"
	}
	db, err := openDB(ctx, opts, dsn, feedsPath, append(settings, attach...))
	if err != nil {
		return nil, err
	}
	s := &Store{DB: db, opts: opts}
	s.DB.SetMaxOpenConns(16)
	s.DB.SetMaxIdleConns(4)
	if !opts.ReadOnly {
		if err := s.migrate(ctx, opts.FeedsOnly); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// allowedDirs makes the directories absolute, as DuckDB compares them.
func allowedDirs(dirs []string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		out = append(out, abs)
	}
	return out, nil
}

// openError says plainly when another process holds the store.
func openError(dir, what string, err error) error {
	if m := lockHolder.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("store %s: %w: another collider (PID %s) has it open; while `collider serve` runs, start runs through it (POST /api/v1/runs or the schedule)", dir, ErrInUse, m[1])
	}
	return fmt.Errorf("store: open %s: %w", what, err)
}

// Options returns the settings the store was opened with, defaults filled in.
func (s *Store) Options() Options { return s.opts }

// Close checkpoints where the disk has room (see checkpoint.go) and closes
// the pool and with it the database (sql.DB closes the connector).
func (s *Store) Close() error {
	s.CheckpointOrLog(context.Background(), nil)
	return s.DB.Close()
}

// attachStatement attaches the casebook file.
func attachStatement(opts Options) string {
	attach := fmt.Sprintf("ATTACH IF NOT EXISTS '%s' AS %s", sqlString(filepath.Join(opts.Dir, Casebook+".duckdb")), Casebook)
	if opts.ReadOnly {
		attach += " (READ_ONLY)"
	}
	return attach
}

func (s *Store) attachCasebook() string { return attachStatement(s.opts) }

// lockdown lists the directories files may be read from, then turns
// external access off: DuckDB refuses to change either once it is off (nor
// can SQL turn it back on); the casebook is attached before. The casebook's
// own file stays allowed, so that the store can attach it again after a
// full disk (see checkpoint.go); the temp directory holds backups' copies.
func lockdown(opts Options) []string {
	var out []string
	dirs := append([]string{}, opts.Files...)
	if !opts.FeedsOnly && !opts.ReadOnly {
		dirs = append(dirs, filepath.Join(opts.TempDir, "backup"))
	}
	if len(dirs) > 0 {
		out = append(out, "SET GLOBAL allowed_directories = "+sqlList(dirs))
	}
	if !opts.FeedsOnly {
		cb := filepath.Join(opts.Dir, Casebook+".duckdb")
		if abs, err := filepath.Abs(cb); err == nil {
			cb = abs
		}
		out = append(out, "SET GLOBAL allowed_paths = "+sqlList([]string{cb, cb + ".wal"}))
	}
	out = append(out, "SET GLOBAL enable_external_access = false",
		"SET GLOBAL autoinstall_known_extensions = false", "SET GLOBAL autoload_known_extensions = false")
	if opts.Lock {
		out = append(out, "SET GLOBAL lock_configuration = true")
	}
	return out
}

func sqlList(items []string) string {
	quoted := make([]string, len(items))
	for i, d := range items {
		quoted[i] = "'" + sqlString(d) + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// DefaultMemoryLimit is 60% of physical memory, leaving the rest to the Go
// process, the page cache and the operating system.
func DefaultMemoryLimit() string {
	total := physicalMemory()
	if total == 0 {
		return "4GB"
	}
	return fmt.Sprintf("%dMB", total*6/10/(1<<20))
}

// openDB opens the database instance and makes its first connection, which
// runs the statements (settings, attachments): on a thread of its own at
// opts.WorkerNice when that is set, so that DuckDB's workers start there.
func openDB(ctx context.Context, opts Options, dsn, feedsPath string, statements []string) (*sql.DB, error) {
	var db *sql.DB
	var err error
	first := true
	open := func() {
		var connector *duckdb.Connector
		connector, err = duckdb.NewConnector(dsn, func(execer driver.ExecerContext) error {
			// Settings and the attachment belong to the database instance; do
			// them once, on the first connection.
			if !first {
				return nil
			}
			first = false
			for _, q := range statements {
				if _, err := execer.ExecContext(ctx, q, nil); err != nil {
					return fmt.Errorf("%s: %w", q, err)
				}
			}
			return nil
		})
		if err != nil {
			err = openError(opts.Dir, feedsPath, err)
			return
		}
		if err = os.MkdirAll(opts.TempDir, 0o750); err != nil {
			err = fmt.Errorf("store: %w", err)
			return
		}
		// The first connection makes the settings (SET threads starts the
		// workers) on this thread.
		db = sql.OpenDB(connector)
		if err = db.PingContext(ctx); err != nil {
			db.Close()
			err = openError(opts.Dir, opts.Dir, err)
		}
	}
	if opts.WorkerNice <= 0 {
		open()
		return db, err
	}
	if nerr := onNicedThread(opts.WorkerNice, open); nerr != nil {
		return nil, fmt.Errorf("store: lowering DuckDB's workers: %w", nerr)
	}
	return db, err
}

// Lowered runs f and waits for it: on an OS thread of its own at the
// store's WorkerNice when that is set, so that the DuckDB work f does on its
// calling thread gives way to the API's readers as DuckDB's workers do (a
// run's queries execute on the caller's thread and the workers alike). The
// thread ends with f. A panic in f is returned as an error.
func (s *Store) Lowered(f func()) error {
	var panicked any
	guarded := func() {
		defer func() { panicked = recover() }()
		f()
	}
	if s.opts.WorkerNice <= 0 {
		guarded()
	} else if err := onNicedThread(s.opts.WorkerNice, guarded); err != nil {
		return fmt.Errorf("store: lowering the thread: %w", err)
	}
	if panicked != nil {
		return fmt.Errorf("panic: %v", panicked)
	}
	return nil
}

// PhysicalMemory is the memory the process may use: the cgroup's limit, or
// the machine's; 0 if unknown.
func PhysicalMemory() uint64 { return physicalMemory() }

func physicalMemory() uint64 {
	// cgroup limit first: in a container DuckDB would otherwise size itself from the host.
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 {
			return v
		}
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func sqlString(s string) string { return strings.ReplaceAll(s, "'", "''") }

// migration is one numbered schema file.
type migration struct {
	version  int
	name     string
	database string
	sql      string
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		text := string(b)
		firstLine, _, _ := strings.Cut(text, "\n")
		db := strings.TrimSpace(strings.TrimPrefix(firstLine, "-- database:"))
		if db != Feeds && db != Casebook {
			return nil, fmt.Errorf("migration %s: line 1 must be `-- database: feeds` or `-- database: casebook`", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		out = append(out, migration{version: v, name: e.Name(), database: db, sql: text})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a number", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// migrate applies every migration not yet recorded in its database, each in
// its own transaction, and refuses a store that knows migrations this binary
// does not.
func (s *Store) migrate(ctx context.Context, feedsOnly bool) error {
	ms, err := loadMigrations(schema.Files)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	dbs := []string{Feeds, Casebook}
	if feedsOnly {
		dbs = dbs[:1]
		var feedsMs []migration
		for _, m := range ms {
			if m.database == Feeds {
				feedsMs = append(feedsMs, m)
			}
		}
		ms = feedsMs
	}
	known := map[string]int{}
	for _, m := range ms {
		known[m.database] = max(known[m.database], m.version)
	}
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	applied := map[string]map[int]bool{}
	for _, db := range dbs {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.schema_migrations (
			version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL, duckdb_version VARCHAR NOT NULL)`, db)); err != nil {
			return fmt.Errorf("store: %s: %w", db, err)
		}
		rows, err := conn.QueryContext(ctx, fmt.Sprintf("SELECT version, name FROM %s.schema_migrations", db))
		if err != nil {
			return err
		}
		applied[db] = map[int]bool{}
		for rows.Next() {
			var v int
			var name string
			if err := rows.Scan(&v, &name); err != nil {
				rows.Close()
				return err
			}
			applied[db][v] = true
			if v > known[db] {
				rows.Close()
				return fmt.Errorf("store %s: %w: its %s database has migration %s (schema %d) and this collider knows only up to schema %d; use a newer collider",
					s.opts.Dir, ErrNewerStore, db, name, v, known[db])
			}
		}
		rows.Close()
	}
	for _, m := range ms {
		if applied[m.database][m.version] {
			continue
		}
		if err := s.apply(ctx, conn, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) apply(ctx context.Context, conn *sql.Conn, m migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "USE "+m.database); err != nil {
		return fmt.Errorf("store: migration %s: %w", m.name, err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "USE "+Feeds)
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("store: migration %s: %w", m.name, err)
	}
	if m.database == Feeds && strings.Contains(m.sql, "CREATE TABLE regions") {
		if err := seedRegions(ctx, tx); err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s.schema_migrations VALUES (?, ?, ?, version())", m.database),
		m.version, m.name, domain.DBTime(time.Now())); err != nil {
		return fmt.Errorf("store: record migration %s: %w", m.name, err)
	}
	return tx.Commit()
}

// seedRegions loads the shipped regions and builds region_lookup: every
// 6-digit code under a known province, resolved county → city → province.
// The rows are bound as lists, not read from a file: the store reads no
// file but deliveries.
func seedRegions(ctx context.Context, tx *sql.Tx) error {
	rows, err := csv.NewReader(bytes.NewReader(regions.CSV())).ReadAll()
	if err != nil {
		return fmt.Errorf("seed regions: %w", err)
	}
	cols := make([][]string, 8)
	for _, r := range rows[1:] {
		for i := range cols {
			cols[i] = append(cols[i], r[i])
		}
	}
	args := make([]any, len(cols))
	for i, c := range cols {
		args[i] = c
	}
	steps := []string{
		`INSERT INTO regions
		 SELECT code, name, level, nullif(parent, ''), province, nullif(city, ''), CAST(nullif(lon, '') AS DOUBLE), CAST(nullif(lat, '') AS DOUBLE)
		 FROM (SELECT unnest(CAST(? AS VARCHAR[])) AS code, unnest(CAST(? AS VARCHAR[])) AS name, unnest(CAST(? AS VARCHAR[])) AS level,
		              unnest(CAST(? AS VARCHAR[])) AS parent, unnest(CAST(? AS VARCHAR[])) AS province, unnest(CAST(? AS VARCHAR[])) AS city,
		              unnest(CAST(? AS VARCHAR[])) AS lon, unnest(CAST(? AS VARCHAR[])) AS lat)`,
		// Placeholder rows (市辖区, 县) have no point: take the parent's, twice for chains.
		`UPDATE regions SET lon = p.lon, lat = p.lat FROM regions p WHERE regions.lon IS NULL AND p.code = regions.parent`,
		`UPDATE regions SET lon = p.lon, lat = p.lat FROM regions p WHERE regions.lon IS NULL AND p.code = regions.parent`,
		`INSERT INTO region_lookup
		 WITH codes AS (
		     SELECT substr(p.code, 1, 2) || lpad(CAST(t.i AS VARCHAR), 4, '0') AS code
		     FROM regions p CROSS JOIN range(10000) t(i) WHERE p.level = 'province')
		 SELECT c.code,
		        coalesce(r1.code, r2.code, r3.code),
		        city_of(c.code),
		        coalesce(r1.lon, r2.lon, r3.lon),
		        coalesce(r1.lat, r2.lat, r3.lat)
		 FROM codes c
		 LEFT JOIN regions r1 ON r1.code = c.code
		 LEFT JOIN regions r2 ON r2.code = city_of(c.code)
		 JOIN regions r3 ON r3.code = substr(c.code, 1, 2) || '0000'`,
	}
	for i, q := range steps {
		var bound []any
		if i == 0 {
			bound = args
		}
		if _, err := tx.ExecContext(ctx, q, bound...); err != nil {
			return fmt.Errorf("seed regions: %w", err)
		}
	}
	return nil
}
