// This file loads a delivery: footers checked against the contract first,
// then every row validated in SQL, bad cells kept as rejects, good rows
// upserted by the feed's key, all in one transaction.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"collider/domain"
	"collider/feeds"
	"collider/store"
)

// Status of a delivery's load.
const (
	StatusLoaded  = "loaded"
	StatusFailed  = "failed"
	StatusSkipped = "skipped" // seen before: never loaded twice
)

// LoadResult is a delivery's summary.
type LoadResult struct {
	DeliveryID int64
	Feed, Name string
	Path       string
	SHA256     string
	Stat       string // the files' quick identity (Delivery.Stat)
	Status     string
	Files      int
	Rows       int64 // rows in the files
	Loaded     int64
	Rejected   int64 // rows with at least one bad cell, and earlier duplicates
	// RejectedBy counts the rejected rows by reason code; a row with bad
	// cells of two reasons counts under each.
	RejectedBy map[string]int64
	Replaced   int64
	Extra      []string
	Seconds    float64
	Err        error  // why it failed
	Note       string // why it was skipped
}

// Loader loads deliveries into the store.
type Loader struct {
	Store *store.Store
	Log   *slog.Logger
	// Progress, when set, is told of work done in rows (see WorkUnits).
	Progress func(rows int64)
}

// WorkUnits is the amount of progress a delivery of n rows reports: its rows
// as they are read, and a quarter more for the key check that follows (a
// sort of the keys just written).
func WorkUnits(rows int64) int64 { return rows + rows/4 }

func (l *Loader) log() *slog.Logger {
	if l.Log == nil {
		return slog.Default()
	}
	return l.Log
}

func (l *Loader) progress(n int64) {
	if l.Progress != nil && n > 0 {
		l.Progress(n)
	}
}

// Inspection is what a delivery's footers say, before anything is read.
type Inspection struct {
	Carriers map[string]feeds.Carrier // how each present contract column is carried
	Extra    []string                 // columns the contract does not know, ignored
	Rows     int64                    // rows in all files
	FileRows []int64                  // rows per file, in delivery order
}

// Inspect checks a delivery's footers without loading it: the contract's
// required columns and types in every file, and the same carriers across
// files.
func Inspect(d Delivery) (Inspection, error) {
	var in Inspection
	c, err := feeds.Lookup(d.Feed)
	if err != nil {
		return in, err
	}
	if len(d.Files) == 0 {
		return in, fmt.Errorf("%s: no *.parquet files in the delivery", d.Path)
	}
	in.Carriers = map[string]feeds.Carrier{}
	from := map[string]string{}
	extra := map[string]bool{}
	for _, f := range d.Files {
		fs, err := feeds.CheckFile(f, c)
		if err != nil {
			return in, err
		}
		in.Rows += fs.Rows
		in.FileRows = append(in.FileRows, fs.Rows)
		for col, car := range fs.Columns {
			if prev, ok := in.Carriers[col]; ok && prev != car {
				return in, &feeds.SchemaError{File: f, Column: col,
					Problem: fmt.Sprintf("carried as %s here but as %s in %s; one delivery must use one type per column", car, prev, filepath.Base(from[col]))}
			}
			in.Carriers[col], from[col] = car, f
		}
		for _, e := range fs.Extra {
			extra[e] = true
		}
	}
	for e := range extra {
		in.Extra = append(in.Extra, e)
	}
	sort.Strings(in.Extra)
	return in, nil
}

// Load loads one delivery. A delivery seen before (same feed and SHA-256) is
// skipped. A delivery that fails is rolled back whole and recorded as failed
// with its reason; the caller goes on with the others.
func (l *Loader) Load(ctx context.Context, d Delivery) LoadResult {
	start := time.Now()
	r := LoadResult{Feed: d.Feed, Name: d.Name, Path: d.Path, Files: len(d.Files)}
	log := l.log().With("feed", d.Feed, "delivery", d.Name)
	seen, err := l.SeenBefore(ctx, []Delivery{d})
	if err != nil {
		r.Status, r.Err = StatusFailed, err
		return r
	}
	if seen[0].Status == StatusSkipped {
		log.Info("delivery skipped", "status", StatusSkipped, "note", seen[0].Note)
		return seen[0]
	}
	stat, _ := d.Stat()
	sum, _, err := d.Hash()
	if err != nil {
		r.Status, r.Err = StatusFailed, fmt.Errorf("%s: %w", d.Path, err)
		l.recordFailure(ctx, &r, start)
		return r
	}
	r.SHA256, r.Stat = sum, stat
	var prevID int64
	var prevStatus, prevName string
	err = l.Store.DB.QueryRowContext(ctx,
		"SELECT delivery_id, status, name FROM deliveries WHERE feed = ? AND sha256 = ? ORDER BY delivery_id LIMIT 1",
		d.Feed, sum).Scan(&prevID, &prevStatus, &prevName)
	switch {
	case err == nil:
		r.Status, r.DeliveryID = StatusSkipped, prevID
		r.Note = fmt.Sprintf("same files as delivery %d (%s), %s before", prevID, prevName, prevStatus)
		log.Info("delivery skipped", "status", StatusSkipped, "note", r.Note)
		return r
	case !errors.Is(err, sql.ErrNoRows):
		r.Status, r.Err = StatusFailed, err
		return r
	}
	in, err := Inspect(d)
	r.Extra, r.Rows = in.Extra, in.Rows
	if err != nil {
		r.Status, r.Err = StatusFailed, err
		l.recordFailure(ctx, &r, start)
		log.Warn("delivery failed", "status", StatusFailed, "err", err)
		return r
	}
	if err := l.load(ctx, d, in, &r, start); err != nil {
		r.Status, r.Err = StatusFailed, l.Store.DiskFull(err)
		// A full disk is not the delivery's fault: it is not recorded as
		// failed, so the next run loads it once there is room.
		if ctx.Err() == nil && !errors.Is(r.Err, store.ErrDiskFull) {
			l.recordFailure(ctx, &r, start)
		}
		log.Warn("delivery failed", "status", StatusFailed, "err", err)
		return r
	}
	r.Status = StatusLoaded
	// The WAL is folded into the file after each delivery: its rows were
	// written there as the load went, so this costs a few hundredths of a
	// second, where the six deliveries of a Gansu-sized province folded
	// together at the end of their loads cost 35 s.
	l.Store.CheckpointFeedsOrLog(context.WithoutCancel(ctx), log)
	log.Info("delivery loaded", "status", StatusLoaded, "delivery_id", r.DeliveryID, "rows", r.Rows, "loaded", r.Loaded, "rejected", r.Rejected, "replaced", r.Replaced, "seconds", r.Seconds)
	return r
}

// load reads each file once: every row goes into the feed table, typed,
// with its row within the delivery, negative for a row with a bad cell. A
// delivery with such rows reads only the files that hold them a second time,
// for their bad cells, which become rejects, and deletes the rows. Then, in
// the same transaction, a key repeated inside the delivery keeps only its
// later row, and earlier deliveries' rows with the same keys are replaced.
// Reading a clean file once is what keeps a validated load close to a plain
// copy.
func (l *Loader) load(ctx context.Context, d Delivery, in Inspection, r *LoadResult, start time.Time) error {
	c, _ := feeds.Lookup(d.Feed)
	conn, err := l.Store.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, "SELECT nextval('delivery_ids')").Scan(&r.DeliveryID); err != nil {
		return err
	}
	lt := &loadTx{ctx: ctx, tx: tx, l: l, d: d, in: in, r: r, c: c, plan: newPlan(c, in.Carriers), table: q(c.Feed),
		log: l.log().With("feed", d.Feed, "delivery", d.Name)}
	for _, step := range []func() error{lt.readFiles, lt.rejectBadRows, lt.dropRepeatedKeys, lt.replaceEarlier} {
		if err := step(); err != nil {
			return err
		}
	}
	return lt.record(start)
}

// loadTx is one delivery's load: its transaction and what it has found.
type loadTx struct {
	ctx   context.Context
	tx    *sql.Tx
	l     *Loader
	d     Delivery
	in    Inspection
	r     *LoadResult
	c     feeds.Contract
	plan  *plan
	table string // the feed table, quoted
	log   *slog.Logger

	written, badRows int64
}

// ours is the condition on the delivery's own rows; the statements that
// use it bind the delivery id as $1.
func (lt *loadTx) ours() string { return lt.table + ".delivery_id = $1" }

// exec runs one statement of the load, naming the files in DuckDB's errors.
func (lt *loadTx) exec(what, query string, args ...any) (int64, error) {
	t0 := time.Now()
	res, err := lt.tx.ExecContext(lt.ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %s", what, describeDuckDBError(err, lt.d.Files))
	}
	n, _ := res.RowsAffected()
	lt.log.Debug("load phase", "phase", what, "rows", n, "seconds", time.Since(t0).Seconds())
	return n, nil
}

// readFiles reads each file once: every row, typed, with its lineage.
func (lt *loadTx) readFiles() error {
	id, insert := lt.r.DeliveryID, lt.plan.insertAll()
	var firstRow int64 = 1
	for i, f := range lt.d.Files {
		if _, err := lt.exec("record file", "INSERT INTO delivery_files VALUES (?, ?, ?, ?, ?, ?)",
			id, i, filepath.Base(f), f, lt.in.FileRows[i], firstRow); err != nil {
			return err
		}
		n, err := lt.exec("read file", insert, id, firstRow-1, []string{f})
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		lt.written += n
		lt.l.progress(n)
		firstRow += lt.in.FileRows[i]
	}
	if lt.written != lt.in.Rows {
		return fmt.Errorf("%s: the footers count %d rows but %d were read", lt.d.Path, lt.in.Rows, lt.written)
	}
	return nil
}

// rejectBadRows reads the files that hold bad rows again for their bad
// cells, which become rejects; then the rows leave the table.
func (lt *loadTx) rejectBadRows() error {
	id := lt.r.DeliveryID
	t0 := time.Now()
	var badFiles []int
	rows, err := lt.tx.QueryContext(lt.ctx, fmt.Sprintf(`SELECT DISTINCT f.file_index FROM %s t
		JOIN delivery_files f ON f.delivery_id = t.delivery_id AND -t.source_row BETWEEN f.first_row AND f.first_row + f.rows_read - 1
		WHERE t.delivery_id = ? AND t.source_row < 0 ORDER BY 1`, lt.table), id)
	if err != nil {
		return err
	}
	for rows.Next() {
		var i int
		if err := rows.Scan(&i); err != nil {
			rows.Close()
			return err
		}
		badFiles = append(badFiles, i)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	lt.log.Debug("load phase", "phase", "find files with bad rows", "rows", len(badFiles), "seconds", time.Since(t0).Seconds())
	for _, i := range badFiles {
		f := lt.d.Files[i]
		if _, err := lt.exec("record rejects", fmt.Sprintf(`INSERT INTO rejects
			SELECT ?, ?, b._row, b.cell."column", b.cell.reason, b.cell.raw
			FROM (SELECT _row, unnest(%s) AS cell FROM (%s) r WHERE _bad) b
			WHERE b.cell IS NOT NULL`, lt.plan.rejectedCells(), lt.plan.rows()), id, filepath.Base(f), []string{f}); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	if len(badFiles) > 0 {
		if lt.badRows, err = lt.exec("delete rejected rows", fmt.Sprintf("DELETE FROM %s WHERE %s AND source_row < 0", lt.table, lt.ours()), id); err != nil {
			return err
		}
		// Nothing is lost: each deleted row has its bad cells among the rejects.
		var rejected int64
		if err := lt.tx.QueryRowContext(lt.ctx, "SELECT count(*) FROM (SELECT DISTINCT file, row_number FROM rejects WHERE delivery_id = ?)", id).Scan(&rejected); err != nil {
			return err
		}
		if rejected != lt.badRows {
			return fmt.Errorf("%s: %d rows failed a check but %d were recorded as rejects", lt.d.Path, lt.badRows, rejected)
		}
	}
	lt.r.Loaded = lt.written - lt.badRows
	return nil
}

// dropRepeatedKeys handles a key repeated inside the delivery: the later
// row (file order, then row order) wins; the earlier ones become
// duplicate_key rejects. The keys' hashes are sorted and compared with
// their neighbours, which takes about half the time of a GROUP BY over as
// many groups as rows; only the rows whose hashes collide are looked at
// closer. DuckDB scans the rows this transaction has just written with one
// thread, and the sort then gathers its runs on that thread too: reading
// them as one branch per thread of a UNION ALL (source_row modulo the
// threads) lets every thread feed the sort, which halves the step.
// (Hashing the keys from the files instead was slower for feeds keyed by
// person: their IDs must be normalized again.)
func (lt *loadTx) dropRepeatedKeys() error {
	id, table, ours := lt.r.DeliveryID, lt.table, lt.ours()
	keys := quoteAll(lt.c.Key)
	threads := max(1, lt.l.Store.Options().Threads)
	branches := make([]string, threads)
	for i := range branches {
		branches[i] = fmt.Sprintf("SELECT hash(%s) AS h FROM %s WHERE %s AND source_row %% %d = %d",
			strings.Join(keys, ", "), table, ours, threads, i)
	}
	rep, dup := fmt.Sprintf("temp.repeated_%d", id), fmt.Sprintf("temp.dup_%d", id)
	if _, err := lt.exec("find repeated keys", fmt.Sprintf(`CREATE TEMP TABLE %s AS
		SELECT DISTINCT h FROM (
			SELECT h, lag(h) OVER (ORDER BY h) AS prev FROM (%s)
		) WHERE h = prev`, rep, strings.Join(branches, "\n\t\t\tUNION ALL ")), id); err != nil {
		return err
	}
	lt.l.progress(lt.in.Rows / 4)
	var collisions, dupRows int64
	if err := lt.tx.QueryRowContext(lt.ctx, "SELECT count(*) FROM "+rep).Scan(&collisions); err != nil {
		return err
	}
	if collisions > 0 {
		if _, err := lt.exec("find earlier duplicates", fmt.Sprintf(`CREATE TEMP TABLE %[1]s AS
			SELECT source_row, key_text FROM (
				SELECT source_row, concat_ws('|', %[2]s) AS key_text,
				       row_number() OVER (PARTITION BY %[3]s ORDER BY source_row DESC) AS rn
				FROM %[4]s WHERE %[5]s AND hash(%[3]s) IN (SELECT h FROM %[6]s)
			) WHERE rn > 1`, dup, strings.Join(castText(keys), ", "), strings.Join(keys, ", "), table, ours, rep), id); err != nil {
			return err
		}
		if _, err := lt.exec("record duplicates", fmt.Sprintf(`INSERT INTO rejects
			SELECT $1, f.file, d.source_row - f.first_row + 1, $2, $3, d.key_text
			FROM %s d JOIN delivery_files f ON f.delivery_id = $1
			 AND d.source_row BETWEEN f.first_row AND f.first_row + f.rows_read - 1`, dup),
			id, strings.Join(lt.c.Key, "+"), ReasonDuplicateKey); err != nil {
			return err
		}
		var err error
		if dupRows, err = lt.exec("delete earlier duplicates", fmt.Sprintf(
			"DELETE FROM %[1]s USING %[2]s d WHERE %[3]s AND %[1]s.source_row = d.source_row",
			table, dup, ours), id); err != nil {
			return err
		}
		if _, err := lt.exec("drop temp", "DROP TABLE "+dup); err != nil {
			return err
		}
	}
	if _, err := lt.exec("drop temp", "DROP TABLE "+rep); err != nil {
		return err
	}
	lt.r.Rejected = lt.badRows + dupRows
	lt.r.Loaded -= dupRows
	if lt.r.Rejected > 0 {
		var err error
		if lt.r.RejectedBy, err = rejectedByReason(lt.ctx, lt.tx, id); err != nil {
			return err
		}
	}
	return nil
}

// replaceEarlier lets a later delivery win: earlier rows with the same key
// are replaced. The rows to replace are found first, with the person each
// belonged to: a record that moves to another person leaves that person in
// delivery_left, whose verdicts the next run re-examines (jobs/scope.go).
func (lt *loadTx) replaceEarlier() error {
	id, table, c := lt.r.DeliveryID, lt.table, lt.c
	var earlier bool
	if err := lt.tx.QueryRowContext(lt.ctx, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s WHERE delivery_id < ?)", table), id).Scan(&earlier); err != nil {
		return err
	}
	if !earlier || lt.r.Loaded == 0 {
		return nil
	}
	keys := quoteAll(c.Key)
	var match []string
	for _, k := range keys {
		match = append(match, fmt.Sprintf("o.%s = n.%s", k, k))
	}
	oldPerson, newPerson, nCols := "CAST(NULL AS VARCHAR)", "CAST(NULL AS VARCHAR)", strings.Join(keys, ", ")
	if _, ok := c.Column("person_id"); ok {
		oldPerson, newPerson = "o.person_id", "n.person_id"
		if !slices.Contains(c.Key, "person_id") {
			nCols += ", person_id"
		}
	}
	replaced := fmt.Sprintf("temp.replaced_%d", id)
	if _, err := lt.exec("find replaced rows", fmt.Sprintf(`CREATE TEMP TABLE %s AS
		SELECT o.rowid AS rid, %s AS old_person, %s AS new_person
		FROM %s o JOIN (SELECT %s FROM %s WHERE delivery_id = $1) n ON %s
		WHERE o.delivery_id < $1`, replaced, oldPerson, newPerson, table, nCols, table, strings.Join(match, " AND ")), id); err != nil {
		return err
	}
	if _, err := lt.exec("record persons left", fmt.Sprintf(`INSERT INTO delivery_left
		SELECT DISTINCT $1, $2, old_person FROM %s WHERE old_person IS NOT NULL AND old_person IS DISTINCT FROM new_person`, replaced),
		id, c.Feed); err != nil {
		return err
	}
	var err error
	if lt.r.Replaced, err = lt.exec("replace earlier rows", fmt.Sprintf("DELETE FROM %s WHERE rowid IN (SELECT rid FROM %s)", table, replaced)); err != nil {
		return err
	}
	_, err = lt.exec("drop temp", "DROP TABLE "+replaced)
	return err
}

// record writes the delivery to the ledger and commits.
func (lt *loadTx) record(start time.Time) error {
	r := lt.r
	r.Seconds = time.Since(start).Seconds()
	if _, err := lt.exec("record delivery", `INSERT INTO deliveries
		(delivery_id, feed, name, path, sha256, status, files, rows_read, loaded, rejected, replaced, extra_columns, error, started_at, finished_at, seconds, files_stat)
		VALUES (?, ?, ?, ?, ?, 'loaded', ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)`,
		r.DeliveryID, lt.d.Feed, lt.d.Name, lt.d.Path, r.SHA256, len(lt.d.Files), r.Rows, r.Loaded, r.Rejected, r.Replaced,
		nullIfEmpty(strings.Join(r.Extra, ",")), domain.DBTime(start), domain.DBTime(time.Now()), r.Seconds, nullIfEmpty(r.Stat)); err != nil {
		return err
	}
	return lt.tx.Commit()
}

// SeenBefore says, for each delivery, whether the ledger holds it already
// with the same files untouched (the same Delivery.Stat at the same path):
// such a one comes back skipped, naming the delivery it is, without its
// files being read; the others come back with an empty status. One query
// for all of them, so that an inbox of a year's deliveries is checked in
// moments.
func (l *Loader) SeenBefore(ctx context.Context, ds []Delivery) ([]LoadResult, error) {
	out := make([]LoadResult, len(ds))
	rows, err := l.Store.DB.QueryContext(ctx, `SELECT feed, path, files_stat, delivery_id, status, name, sha256 FROM deliveries
		WHERE files_stat IS NOT NULL ORDER BY delivery_id DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type entry struct {
		id                   int64
		status, name, sha256 string
	}
	ledger := map[string]entry{}
	for rows.Next() {
		var feed, path, stat string
		var e entry
		if err := rows.Scan(&feed, &path, &stat, &e.id, &e.status, &e.name, &e.sha256); err != nil {
			return nil, err
		}
		ledger[feed+"\x00"+path+"\x00"+stat] = e // oldest last: it wins
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, d := range ds {
		stat, err := d.Stat()
		if err != nil {
			continue // the load says what is wrong
		}
		if e, ok := ledger[d.Feed+"\x00"+d.Path+"\x00"+stat]; ok {
			out[i] = LoadResult{DeliveryID: e.id, Feed: d.Feed, Name: d.Name, Path: d.Path, Files: len(d.Files), SHA256: e.sha256, Stat: stat, Status: StatusSkipped,
				Note: fmt.Sprintf("same files as delivery %d (%s), %s before", e.id, e.name, e.status)}
		}
	}
	return out, nil
}

// rejectedByReason counts a delivery's rejected rows by reason.
func rejectedByReason(ctx context.Context, tx *sql.Tx, id int64) (map[string]int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT reason, count(DISTINCT (file, row_number)) FROM rejects
		WHERE delivery_id = ? GROUP BY reason`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var reason string
		var n int64
		if err := rows.Scan(&reason, &n); err != nil {
			return nil, err
		}
		out[reason] = n
	}
	return out, rows.Err()
}

// recordFailure writes a failed delivery to the ledger, so the province sees
// why and the same files are not tried again every night.
func (l *Loader) recordFailure(ctx context.Context, r *LoadResult, start time.Time) {
	r.Seconds = time.Since(start).Seconds()
	if r.SHA256 == "" {
		return // nothing to identify it by; it is reported, and retried next time
	}
	_, err := l.Store.DB.ExecContext(ctx, `INSERT INTO deliveries
		(delivery_id, feed, name, path, sha256, status, files, rows_read, loaded, rejected, replaced, extra_columns, error, started_at, finished_at, seconds, files_stat)
		VALUES (nextval('delivery_ids'), ?, ?, ?, ?, 'failed', ?, ?, 0, 0, 0, ?, ?, ?, ?, ?, ?) RETURNING delivery_id`,
		r.Feed, r.Name, r.Path, r.SHA256, r.Files, r.Rows, nullIfEmpty(strings.Join(r.Extra, ",")), r.Err.Error(), domain.DBTime(start), domain.DBTime(time.Now()), r.Seconds, nullIfEmpty(r.Stat))
	if err != nil {
		l.log().Error("record failed delivery", "feed", r.Feed, "delivery", r.Name, "err", err)
	}
}

// LoadAll loads deliveries in order; a failure does not stop the others.
func (l *Loader) LoadAll(ctx context.Context, ds []Delivery) []LoadResult {
	out := make([]LoadResult, 0, len(ds))
	for _, d := range ds {
		if ctx.Err() != nil {
			break
		}
		out = append(out, l.Load(ctx, d))
	}
	return out
}

// describeDuckDBError keeps DuckDB's message, which names the file for read
// errors, and adds the delivery's files when it does not.
func describeDuckDBError(err error, files []string) string {
	msg := err.Error()
	for _, f := range files {
		if strings.Contains(msg, f) {
			return msg
		}
	}
	if len(files) == 1 {
		return files[0] + ": " + msg
	}
	return msg
}

func castText(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = "CAST(" + c + " AS VARCHAR)"
	}
	return out
}

func quoteAll(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = q(c)
	}
	return out
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
