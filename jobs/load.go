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
	"sort"
	"strings"
	"time"

	"collider/casebook"
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
	Status     string
	Files      int
	Rows       int64 // rows in the files
	Loaded     int64
	Rejected   int64 // rows with at least one bad cell, and earlier duplicates
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
	// Progress, when set, is told of work done in rows; each delivery counts
	// its rows three times (keys, checks, insert).
	Progress func(rows int64)
}

// WorkUnits is the amount of progress a delivery of n rows reports.
func WorkUnits(rows int64) int64 { return 3 * rows }

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

// Inspect checks a delivery's footers without loading it: the contract's
// required columns and types in every file, and the same carriers across
// files. It returns the carriers, the extra columns and the rows.
func Inspect(d Delivery) (map[string]feeds.Carrier, []string, int64, error) {
	c, err := feeds.Lookup(d.Feed)
	if err != nil {
		return nil, nil, 0, err
	}
	if len(d.Files) == 0 {
		return nil, nil, 0, fmt.Errorf("%s: no *.parquet files in the delivery", d.Path)
	}
	carriers := map[string]feeds.Carrier{}
	from := map[string]string{}
	extra := map[string]bool{}
	var rows int64
	for _, f := range d.Files {
		fs, err := feeds.CheckFile(f, c)
		if err != nil {
			return nil, nil, 0, err
		}
		rows += fs.Rows
		for col, car := range fs.Columns {
			if prev, ok := carriers[col]; ok && prev != car {
				return nil, nil, 0, &feeds.SchemaError{File: f, Column: col,
					Problem: fmt.Sprintf("carried as %s here but as %s in %s; one delivery must use one type per column", car, prev, filepath.Base(from[col]))}
			}
			carriers[col], from[col] = car, f
		}
		for _, e := range fs.Extra {
			extra[e] = true
		}
	}
	var extras []string
	for e := range extra {
		extras = append(extras, e)
	}
	sort.Strings(extras)
	return carriers, extras, rows, nil
}

// Load loads one delivery. A delivery seen before (same feed and SHA-256) is
// skipped. A delivery that fails is rolled back whole and recorded as failed
// with its reason; the caller goes on with the others.
func (l *Loader) Load(ctx context.Context, d Delivery) LoadResult {
	start := time.Now()
	r := LoadResult{Feed: d.Feed, Name: d.Name, Path: d.Path, Files: len(d.Files)}
	log := l.log().With("feed", d.Feed, "delivery", d.Name)
	sum, _, err := d.Hash()
	if err != nil {
		r.Status, r.Err = StatusFailed, fmt.Errorf("%s: %w", d.Path, err)
		l.recordFailure(ctx, &r, start)
		return r
	}
	r.SHA256 = sum
	var prevID int64
	var prevStatus, prevName string
	err = l.Store.DB.QueryRowContext(ctx,
		"SELECT delivery_id, status, name FROM deliveries WHERE feed = ? AND sha256 = ? ORDER BY delivery_id LIMIT 1",
		d.Feed, sum).Scan(&prevID, &prevStatus, &prevName)
	switch {
	case err == nil:
		r.Status, r.DeliveryID = StatusSkipped, prevID
		r.Note = fmt.Sprintf("same files as delivery %d (%s), %s before", prevID, prevName, prevStatus)
		log.Info("delivery skipped", "reason", r.Note)
		return r
	case !errors.Is(err, sql.ErrNoRows):
		r.Status, r.Err = StatusFailed, err
		return r
	}
	carriers, extra, rows, err := Inspect(d)
	r.Extra, r.Rows = extra, rows
	if err != nil {
		r.Status, r.Err = StatusFailed, err
		l.recordFailure(ctx, &r, start)
		log.Warn("delivery failed", "err", err)
		return r
	}
	if err := l.load(ctx, d, carriers, &r, start); err != nil {
		r.Status, r.Err = StatusFailed, err
		if ctx.Err() == nil {
			l.recordFailure(ctx, &r, start)
		}
		log.Warn("delivery failed", "err", err)
		return r
	}
	r.Status = StatusLoaded
	log.Info("delivery loaded", "id", r.DeliveryID, "rows", r.Rows, "loaded", r.Loaded, "rejected", r.Rejected, "replaced", r.Replaced, "seconds", r.Seconds)
	return r
}

func (l *Loader) load(ctx context.Context, d Delivery, carriers map[string]feeds.Carrier, r *LoadResult, start time.Time) error {
	c, _ := feeds.Lookup(d.Feed)
	p := newPlan(c, carriers)
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
	id := r.DeliveryID
	files := d.Files
	rowsSQL := p.rows()
	keys := p.keyValues()
	table := q(c.Feed)
	dup, bad := fmt.Sprintf("temp.dup_%d", id), fmt.Sprintf("temp.bad_%d", id)
	log := l.log().With("feed", d.Feed, "delivery", d.Name)
	exec := func(what, query string, args ...any) (int64, error) {
		t0 := time.Now()
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return 0, fmt.Errorf("%s: %s", what, describeDuckDBError(err, files))
		}
		n, _ := res.RowsAffected()
		log.Debug("load step", "step", what, "rows", n, "seconds", time.Since(t0).Seconds())
		return n, nil
	}

	// 1. Keys repeated inside the delivery: the later row (file order, then
	// row order) wins; the earlier ones become duplicate_key rejects. Hash
	// the keys first, which is cheap, and look closer only at collisions.
	keyNotNull := strings.Join(keys, " IS NOT NULL AND ") + " IS NOT NULL"
	hashKeys := "hash(" + strings.Join(keys, ", ") + ")"
	if _, err := exec("find repeated keys", fmt.Sprintf(`CREATE TEMP TABLE %[1]s AS
		WITH k AS (SELECT %[3]s AS h FROM (%[2]s) WHERE %[4]s),
		     repeated AS (SELECT h FROM k GROUP BY h HAVING count(*) > 1)
		SELECT filename, _row, %[5]s AS key_text FROM (
			SELECT filename, _row, %[6]s,
			       row_number() OVER (PARTITION BY %[6]s ORDER BY filename DESC, _row DESC) AS rn
			FROM (%[2]s) WHERE NOT _bad AND %[3]s IN (SELECT h FROM repeated)
		) WHERE rn > 1`, dup, rowsSQL, hashKeys, keyNotNull,
		"concat_ws('|', "+strings.Join(castText(keys), ", ")+")", strings.Join(keys, ", ")),
		files, files); err != nil {
		return err
	}
	l.progress(r.Rows)

	// 2. Bad rows: kept whole in a small temp table, one reject per bad cell.
	if _, err := exec("check rows", fmt.Sprintf("CREATE TEMP TABLE %s AS SELECT * FROM (%s) WHERE _bad", bad, rowsSQL), files); err != nil {
		return err
	}
	l.progress(r.Rows)
	for i, ch := range p.checks {
		rawValue := "NULL"
		if _, ok := carriers[ch.Column]; ok {
			rawValue = "CAST(" + q(ch.Column) + " AS VARCHAR)"
		}
		if _, err := exec("record rejects", fmt.Sprintf(
			"INSERT INTO rejects SELECT ?, parse_filename(filename), _row, ?, ?, %s FROM %s WHERE _bad_%d",
			rawValue, bad, i), id, ch.Column, ch.Reason); err != nil {
			return err
		}
	}
	if _, err := exec("record duplicates", fmt.Sprintf(
		"INSERT INTO rejects SELECT ?, parse_filename(filename), _row, ?, ?, key_text FROM %s", dup),
		id, strings.Join(c.Key, "+"), ReasonDuplicateKey); err != nil {
		return err
	}
	var badRows, dupRows int64
	if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT (SELECT count(*) FROM %s), (SELECT count(*) FROM %s)", bad, dup)).Scan(&badRows, &dupRows); err != nil {
		return err
	}
	r.Rejected = badRows + dupRows

	// 3. Good rows, file by file (progress): every row but the bad ones and
	// the earlier duplicates, found above. Filtering on (file, row) rather
	// than on the checks keeps DuckDB from evaluating the typed values twice
	// (once in the filter, once in the projection).
	skip := fmt.Sprintf("temp.skip_%d", id)
	if _, err := exec("rows to skip", fmt.Sprintf("CREATE TEMP TABLE %s AS SELECT filename, _row FROM %s UNION ALL SELECT filename, _row FROM %s", skip, bad, dup)); err != nil {
		return err
	}
	cols, exprs := p.targetColumns()
	typedSQL := p.typed()
	for _, f := range files {
		n, err := exec("insert rows", fmt.Sprintf(`INSERT INTO %s (%s)
			SELECT %s FROM (%s) r
			WHERE NOT EXISTS (SELECT 1 FROM %s k WHERE k.filename = r.filename AND k._row = r._row)`,
			table, strings.Join(cols, ", "), strings.Join(exprs, ", "), typedSQL, skip), id, []string{f})
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		r.Loaded += n
		l.progress(n)
	}
	l.progress(r.Rows - r.Loaded) // the rejected rows count as done too

	// 4. A later delivery wins: earlier rows with the same key are replaced.
	var earlier bool
	if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s WHERE delivery_id < ?)", table), id).Scan(&earlier); err != nil {
		return err
	}
	if earlier && r.Loaded > 0 {
		var match []string
		for _, k := range c.Key {
			match = append(match, fmt.Sprintf("%s.%s = n.%s", table, q(k), q(k)))
		}
		r.Replaced, err = exec("replace earlier rows", fmt.Sprintf(
			"DELETE FROM %s USING (SELECT DISTINCT %s FROM %s WHERE delivery_id = ?) n WHERE %s AND %s.delivery_id < ?",
			table, strings.Join(quoteAll(c.Key), ", "), table, strings.Join(match, " AND "), table), id, id)
		if err != nil {
			return err
		}
	}
	for _, t := range []string{dup, bad, skip} {
		if _, err := exec("drop temp", "DROP TABLE "+t); err != nil {
			return err
		}
	}
	r.Seconds = time.Since(start).Seconds()
	if _, err := exec("record delivery", `INSERT INTO deliveries
		(delivery_id, feed, name, path, sha256, status, files, rows_read, loaded, rejected, replaced, extra_columns, error, started_at, finished_at, seconds)
		VALUES (?, ?, ?, ?, ?, 'loaded', ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)`,
		id, d.Feed, d.Name, d.Path, r.SHA256, len(files), r.Rows, r.Loaded, r.Rejected, r.Replaced,
		nullIfEmpty(strings.Join(r.Extra, ",")), casebook.DBTime(start), casebook.DBTime(time.Now()), r.Seconds); err != nil {
		return err
	}
	return tx.Commit()
}

// recordFailure writes a failed delivery to the ledger, so the province sees
// why and the same files are not tried again every night.
func (l *Loader) recordFailure(ctx context.Context, r *LoadResult, start time.Time) {
	r.Seconds = time.Since(start).Seconds()
	if r.SHA256 == "" {
		return // nothing to identify it by; it is reported, and retried next time
	}
	_, err := l.Store.DB.ExecContext(ctx, `INSERT INTO deliveries
		(delivery_id, feed, name, path, sha256, status, files, rows_read, loaded, rejected, replaced, extra_columns, error, started_at, finished_at, seconds)
		VALUES (nextval('delivery_ids'), ?, ?, ?, ?, 'failed', ?, ?, 0, 0, 0, ?, ?, ?, ?, ?) RETURNING delivery_id`,
		r.Feed, r.Name, r.Path, r.SHA256, r.Files, r.Rows, nullIfEmpty(strings.Join(r.Extra, ",")), r.Err.Error(), casebook.DBTime(start), casebook.DBTime(time.Now()), r.Seconds)
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
