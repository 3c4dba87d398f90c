// This file takes backups of the store and restores them.
//
// A backup is one tar file: manifest.json first (what the store's schema
// was, how many rows each table held, and every file with its size and
// SHA-256), then the files themselves: casebook.duckdb and feeds.duckdb as
// consistent copies, and the *.key files at the top of the data directory.
// Derived directories (tmp/, sandbox/) are left out: they are rebuilt.
//
// The copies are made through the running DuckDB, so that a backup works
// while `collider serve` holds the store and while a run is busy: each
// database is copied by COPY FROM DATABASE, one statement and so one
// transaction-consistent snapshot, into a new file attached in a scratch
// directory under the store's temp directory (which must be among the
// directories DuckDB may write). The casebook is copied before the feeds:
// a run that loads a delivery between the two copies leaves it loaded and
// not yet published in the backup — the state of a run interrupted after
// loading, which the next run completes.
package store

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"collider/domain"
)

// BackupFormat names the layout of a backup file.
const BackupFormat = "collider-backup/1"

// ManifestName is the first entry of a backup file.
const ManifestName = "manifest.json"

// ErrBackupRunning is returned while another backup of the store is being taken.
var ErrBackupRunning = errors.New("a backup of this store is already being taken")

// ErrBadBackup is what a damaged, truncated or foreign backup file matches.
var ErrBadBackup = errors.New("not a whole collider backup")

// Manifest describes a backup: what it holds and how to check it.
type Manifest struct {
	Format    string           `json:"format"`
	CreatedAt time.Time        `json:"created_at"`
	DataDir   string           `json:"data_dir"` // where it was taken from
	DuckDB    string           `json:"duckdb_version"`
	Schema    Schema           `json:"schema"`
	Rows      map[string]int64 `json:"rows"` // rows per table, "casebook.leads"
	Files     []BackupFile     `json:"files"`
}

// BackupFile is one file of a backup.
type BackupFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Mode   uint32 `json:"mode"`
}

// Bytes is the size of the files a backup holds.
func (m Manifest) Bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// Snapshot is a consistent copy of the store in a scratch directory, ready
// to be written as a backup file; Close removes it.
type Snapshot struct {
	Manifest Manifest
	scratch  string
	dataDir  string
	release  func()
}

// snapshotRoom is what a snapshot needs in the scratch directory: the
// databases copied (about as big as their files and logs) and a margin, so
// that a backup does not take the room the store's own writes need.
func snapshotRoom(dir string) uint64 {
	var n int64
	for _, db := range []string{Feeds, Casebook} {
		p := filepath.Join(dir, db+".duckdb")
		n += fileSize(p) + fileSize(p+".wal")
	}
	return uint64(n + n/10 + 64<<20)
}

// Snapshot copies the store, consistently, into a scratch directory under
// its temp directory. One backup at a time: another while it runs is
// ErrBackupRunning. Not enough room for the copy is a *DiskFullError,
// before anything is written.
func (s *Store) Snapshot(ctx context.Context) (_ *Snapshot, err error) {
	if !s.backupMu.TryLock() {
		return nil, ErrBackupRunning
	}
	snap := &Snapshot{dataDir: s.opts.Dir, release: s.backupMu.Unlock}
	defer func() {
		if err != nil {
			snap.Close()
		}
	}()
	need := snapshotRoom(s.opts.Dir)
	if free, ferr := FreeSpace(s.opts.TempDir); ferr == nil && free < need {
		return nil, &DiskFullError{Dir: s.opts.TempDir, Free: free,
			Err: fmt.Errorf("a backup's copy of the store needs about %s there", HumanBytes(need))}
	}
	// The copies go where the store may write files (see lockdown).
	if err := os.MkdirAll(filepath.Join(s.opts.TempDir, "backup"), 0o750); err != nil {
		return nil, s.DiskFull(err)
	}
	if snap.scratch, err = os.MkdirTemp(filepath.Join(s.opts.TempDir, "backup"), "copy-"); err != nil {
		return nil, s.DiskFull(err)
	}
	m := Manifest{Format: BackupFormat, CreatedAt: time.Now().In(domain.ChinaTime), DataDir: s.opts.Dir, DuckDB: DuckDBVersion(), Rows: map[string]int64{}}
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	for _, db := range []string{Casebook, Feeds} {
		alias := "backup_" + db
		path := filepath.Join(snap.scratch, db+".duckdb")
		steps := []string{
			fmt.Sprintf("ATTACH '%s' AS %s", sqlString(path), alias),
			fmt.Sprintf("COPY FROM DATABASE %s TO %s", db, alias),
		}
		for _, q := range steps {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				conn.ExecContext(context.WithoutCancel(ctx), "DETACH DATABASE IF EXISTS "+alias)
				return nil, fmt.Errorf("backup of %s: %w", db, s.DiskFull(err))
			}
		}
		level, err := copiedLevel(ctx, conn, alias, m.Rows, db)
		if err == nil {
			_, err = conn.ExecContext(ctx, "CHECKPOINT "+alias)
		}
		if _, derr := conn.ExecContext(context.WithoutCancel(ctx), "DETACH DATABASE IF EXISTS "+alias); err == nil {
			err = derr
		}
		if err != nil {
			return nil, fmt.Errorf("backup of %s: %w", db, s.DiskFull(err))
		}
		if db == Casebook {
			m.Schema.Casebook = level
		} else {
			m.Schema.Feeds = level
		}
	}
	// The copies (and whatever log DuckDB left beside them), then the keys.
	entries, err := os.ReadDir(snap.scratch)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		f, err := describeFile(filepath.Join(snap.scratch, e.Name()), 0o640)
		if err != nil {
			return nil, err
		}
		m.Files = append(m.Files, f)
	}
	keys, _ := filepath.Glob(filepath.Join(s.opts.Dir, "*.key"))
	sort.Strings(keys)
	for _, k := range keys {
		f, err := describeFile(k, 0o600)
		if err != nil {
			return nil, err
		}
		m.Files = append(m.Files, f)
	}
	snap.Manifest = m
	return snap, nil
}

// copiedLevel counts the rows of every table of a copy, into counts under
// "db.table", and reads the copy's schema.
func copiedLevel(ctx context.Context, conn *sql.Conn, alias string, counts map[string]int64, db string) (Level, error) {
	rows, err := conn.QueryContext(ctx, "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1", alias)
	if err != nil {
		return Level{}, err
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return Level{}, err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Level{}, err
	}
	for _, t := range tables {
		var n int64
		if err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM %s."%s"`, alias, strings.ReplaceAll(t, `"`, `""`))).Scan(&n); err != nil {
			return Level{}, err
		}
		counts[db+"."+t] = n
	}
	var l Level
	err = conn.QueryRowContext(ctx, fmt.Sprintf("SELECT version, name, duckdb_version FROM %s.schema_migrations ORDER BY version DESC LIMIT 1", alias)).
		Scan(&l.Version, &l.Migration, &l.DuckDB)
	return l, err
}

// describeFile hashes a file for the manifest.
func describeFile(path string, mode uint32) (BackupFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return BackupFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return BackupFile{}, fmt.Errorf("backup: reading %s: %w", path, err)
	}
	return BackupFile{Name: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Mode: mode}, nil
}

// Close removes the snapshot's scratch directory and lets the next backup start.
func (sn *Snapshot) Close() error {
	var err error
	if sn.scratch != "" {
		err = os.RemoveAll(sn.scratch)
		sn.scratch = ""
	}
	if sn.release != nil {
		sn.release()
		sn.release = nil
	}
	return err
}

// source is where a file of the snapshot is read from.
func (sn *Snapshot) source(f BackupFile) string {
	if strings.HasSuffix(f.Name, ".key") {
		return filepath.Join(sn.dataDir, f.Name)
	}
	return filepath.Join(sn.scratch, f.Name)
}

// WriteTo writes the backup file to w: the manifest, then every file,
// checked against the manifest as it goes out. It returns the bytes written.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	tw := tar.NewWriter(cw)
	manifest, err := json.MarshalIndent(sn.Manifest, "", "  ")
	if err != nil {
		return 0, err
	}
	mtime := sn.Manifest.CreatedAt
	if err := tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o644, Size: int64(len(manifest)), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
		return cw.n, err
	}
	if _, err := tw.Write(manifest); err != nil {
		return cw.n, err
	}
	for _, f := range sn.Manifest.Files {
		if err := writeEntry(tw, sn.source(f), f, mtime); err != nil {
			return cw.n, err
		}
	}
	if err := tw.Close(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

func writeEntry(tw *tar.Writer, path string, f BackupFile, mtime time.Time) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := tw.WriteHeader(&tar.Header{Name: f.Name, Mode: int64(f.Mode), Size: f.Size, ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(in, f.Size))
	if err != nil {
		return err
	}
	if n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("backup: %s changed while the backup was written", path)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WrittenBackup is a backup written to a file.
type WrittenBackup struct {
	Path     string
	Bytes    int64
	SHA256   string // of the whole file
	Manifest Manifest
}

// WriteFile takes a backup of the store into path: written beside it and
// renamed when whole, so that path never names half a backup. Not enough
// room for it is a *DiskFullError naming where.
func (s *Store) WriteFile(ctx context.Context, path string) (WrittenBackup, error) {
	snap, err := s.Snapshot(ctx)
	if err != nil {
		return WrittenBackup{}, err
	}
	defer snap.Close()
	return snap.WriteFile(path)
}

// WriteFile writes the snapshot as a backup file at path (see Store.WriteFile).
func (sn *Snapshot) WriteFile(path string) (WrittenBackup, error) {
	out := WrittenBackup{Path: path, Manifest: sn.Manifest}
	dir := filepath.Dir(path)
	need := uint64(sn.Manifest.Bytes()) + 1<<20
	if free, err := FreeSpace(dir); err == nil && free < need {
		return out, &DiskFullError{Path: path, Dir: dir, Free: free,
			Err: fmt.Errorf("the backup needs %s there", HumanBytes(need))}
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return out, diskFullOr(err, dir)
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	out.Bytes, err = sn.WriteTo(io.MultiWriter(f, h))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o600) // it holds every person's data and the keys
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return out, diskFullOr(err, dir)
	}
	out.SHA256 = hex.EncodeToString(h.Sum(nil))
	return out, syncDir(dir)
}

func diskFullOr(err error, dir string) error {
	if df := DiskFull(err, dir); df != nil {
		return df
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadBackup reads a backup file from r, checking every file against the
// manifest, and hands each file's bytes to open(f) as they come. A backup
// that is damaged (a checksum or size that does not match), truncated,
// incomplete or not a backup at all is an error matching ErrBadBackup that
// says which. A backup from a newer collider is ErrNewerStore, found from
// the manifest before any file is opened.
func ReadBackup(r io.Reader, open func(BackupFile) (io.WriteCloser, error)) (Manifest, error) {
	var m Manifest
	tr := tar.NewReader(r)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadBackup, fmt.Sprintf(format, args...))
	}
	hdr, err := tr.Next()
	if err != nil {
		return m, bad("it does not start with a readable %s (%v)", ManifestName, err)
	}
	if hdr.Name != ManifestName || hdr.Size > 16<<20 {
		return m, bad("its first entry is %q, not %s", hdr.Name, ManifestName)
	}
	raw, err := io.ReadAll(tr)
	if err != nil {
		return m, bad("it ends inside %s (%v): the file is truncated", ManifestName, err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, bad("%s does not parse: %v", ManifestName, err)
	}
	if m.Format != BackupFormat {
		return m, bad("its format is %q; this collider reads %s", m.Format, BackupFormat)
	}
	if db := m.Schema.NewerThan(Known()); db != "" {
		return m, NewerError("backup taken "+m.CreatedAt.Format(time.RFC3339), m.Schema, db)
	}
	want := map[string]BackupFile{}
	for _, f := range m.Files {
		if f.Name != filepath.Base(f.Name) || f.Name == "." || f.Name == ".." || strings.ContainsAny(f.Name, `/\`) {
			return m, bad("the manifest names %q, which is not a plain file name", f.Name)
		}
		want[f.Name] = f
	}
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, bad("after %d of %d files it cannot be read on (%v): the file is truncated or damaged", len(seen), len(m.Files), err)
		}
		f, ok := want[hdr.Name]
		if !ok || seen[hdr.Name] || hdr.Typeflag != tar.TypeReg {
			return m, bad("it holds %q, which its manifest does not list", hdr.Name)
		}
		if hdr.Size != f.Size {
			return m, bad("%s is %d bytes but the manifest says %d", f.Name, hdr.Size, f.Size)
		}
		w, err := open(f)
		if err != nil {
			return m, err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), tr)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return m, bad("it ends inside %s after %d of %d bytes: the file is truncated", f.Name, n, f.Size)
		case err != nil:
			return m, err
		case hex.EncodeToString(h.Sum(nil)) != f.SHA256:
			return m, bad("%s does not match its checksum (sha256 %s, the manifest says %s): the file is damaged", f.Name, hex.EncodeToString(h.Sum(nil)), f.SHA256)
		}
		seen[f.Name] = true
	}
	for _, f := range m.Files {
		if !seen[f.Name] {
			return m, bad("%s is missing: the file is truncated", f.Name)
		}
	}
	return m, nil
}

// VerifyBackup reads a whole backup file and checks it, writing nothing.
func VerifyBackup(r io.Reader) (Manifest, error) {
	return ReadBackup(r, func(BackupFile) (io.WriteCloser, error) { return nopCloser{io.Discard}, nil })
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Restore writes the backup read from r into dir, which must be new or
// empty: a restore never overwrites a store. Every file is checked against
// the manifest; a damaged or truncated backup leaves nothing behind (and
// no dir, when the restore made it). Keys get mode 0600.
func Restore(ctx context.Context, r io.Reader, dir string) (m Manifest, err error) {
	made, err := emptyDir(dir)
	if err != nil {
		return m, err
	}
	var written []string
	defer func() {
		if err == nil {
			return
		}
		for _, p := range written {
			os.Remove(p)
		}
		if made {
			os.Remove(dir)
		}
	}()
	m, err = ReadBackup(r, func(f BackupFile) (io.WriteCloser, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		mode := os.FileMode(0o640)
		if strings.HasSuffix(f.Name, ".key") {
			mode = 0o600
		}
		path := filepath.Join(dir, f.Name)
		out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
		if err != nil {
			return nil, diskFullOr(err, dir)
		}
		written = append(written, path)
		return &syncedFile{out}, nil
	})
	if err != nil {
		return m, diskFullOr(err, dir)
	}
	return m, syncDir(dir)
}

// syncedFile is flushed to disk before it counts as written.
type syncedFile struct{ *os.File }

func (f *syncedFile) Close() error {
	err := f.File.Sync()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}

// emptyDir makes dir, or accepts it when it exists and is empty; made says
// whether it was made here.
func emptyDir(dir string) (made bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, os.MkdirAll(dir, 0o750)
	case err != nil:
		return false, err
	case len(entries) > 0:
		names := make([]string, 0, 3)
		for _, e := range entries[:min(3, len(entries))] {
			names = append(names, e.Name())
		}
		return false, fmt.Errorf("restore refuses %s: it is not empty (it holds %s); restore into a new or empty directory — a restore never overwrites a store", dir, strings.Join(names, ", "))
	}
	return false, nil
}

// PruneBackups keeps the newest keep backup files named prefix*.tar in dir
// and removes the older ones, and any partial file a crash left. It
// returns the files removed.
func PruneBackups(dir, prefix string, keep int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var backups, removed []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."+prefix) && strings.Contains(name, ".partial-"):
			if err := os.Remove(filepath.Join(dir, name)); err == nil {
				removed = append(removed, name)
			}
		case strings.HasPrefix(name, prefix) && strings.HasSuffix(name, ".tar"):
			backups = append(backups, name)
		}
	}
	sort.Strings(backups) // names carry the time: oldest first
	for len(backups) > max(keep, 1) {
		if err := os.Remove(filepath.Join(dir, backups[0])); err != nil {
			return removed, err
		}
		removed = append(removed, backups[0])
		backups = backups[1:]
	}
	return removed, nil
}
