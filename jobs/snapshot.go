// This file keeps the drafts' snapshot: a copy of the feed tables in a
// DuckDB file of its own (DATA/sandbox/feeds.duckdb), which the sandbox
// opens read-only in another process to run a draft model. In it every
// person ID is a keyed token (personid.Key.Token), the same in every feed,
// and names and police birth dates are empty: a draft reads people only as
// tokens with their birth year, sex and regions, however its SQL is spelled.
//
// The identity vault — each ID beside its token — is the pseudonyms table
// of the store's own feeds database, which no draft ever opens.
//
// A refresh copies what the deliveries loaded since the last one brought
// (rows replaced by a later delivery are replaced in the copy too), or
// everything when the key, the feeds' schema or the copy's layout changed.
// It is one transaction in the snapshot: a killed refresh leaves the copy
// as it was, and the next one does the work again.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"collider/domain"
	"collider/feeds"
	"collider/personid"
	"collider/store"
)

// snapshotLayout changes when the copy's tables or columns do: a copy
// with another layout is built again in full.
const snapshotLayout = 1

// snapshotAlias is the snapshot's catalog name while a refresh holds it.
const snapshotAlias = "sandbox_snapshot"

// Snapshot is the pseudonymized copy of the feeds that drafts read.
type Snapshot struct {
	Store *store.Store
	// Dir holds the copy; it must be among the store's Files directories.
	Dir string
	// KeyFile is the pseudonym key, created with mode 0600 on first use.
	KeyFile string
	Log     *slog.Logger

	// mu keeps a refresh (the writer) and drafts (readers, in other
	// processes) apart: DuckDB lets a file be written by one process and
	// read by others only when nobody writes it.
	mu sync.RWMutex
}

// Refreshed says what a refresh did.
type Refreshed struct {
	Full       bool   // built again from scratch
	Deliveries int    // deliveries copied
	Rows       int64  // rows written to the copy
	Persons    int64  // tokens made
	Reason     string // why a full build, or "" when incremental
	Seconds    float64
}

// Path is the snapshot's database file.
func (s *Snapshot) Path() string { return filepath.Join(s.Dir, "feeds.duckdb") }

func (s *Snapshot) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

// Read runs fn while no refresh writes the snapshot, after bringing it up
// to date: fn opens the file read-only (a draft's sandbox).
func (s *Snapshot) Read(ctx context.Context, fn func(path string) error) error {
	if _, err := s.Refresh(ctx); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fn(s.Path())
}

// personTables are the feed tables that hold people, with the columns a
// draft sees empty (names and the police birth date).
var personTables = map[string][]string{
	"settlements":  {"person_name"},
	"residents":    {"name", "birth_date"},
	"civil_status": nil,
	"floating":     nil,
	"locations":    nil,
}

// Refresh brings the snapshot up to date with the loaded deliveries. It
// waits for drafts that are reading it.
func (s *Snapshot) Refresh(ctx context.Context) (Refreshed, error) {
	start := time.Now()
	key, err := personid.LoadKey(s.KeyFile)
	if err != nil {
		return Refreshed{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return Refreshed{}, fmt.Errorf("sandbox snapshot: %w", err)
	}
	conn, err := s.Store.DB.Conn(ctx)
	if err != nil {
		return Refreshed{}, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("ATTACH '%s' AS %s", strings.ReplaceAll(s.Path(), "'", "''"), snapshotAlias)); err != nil {
		return Refreshed{}, fmt.Errorf("sandbox snapshot %s: %w", s.Path(), err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "DETACH "+snapshotAlias)

	r, err := s.refresh(ctx, conn, key)
	if err == nil && (r.Full || r.Deliveries > 0) {
		// The copy folded into its file, so that readers find no WAL to
		// replay (the store leaves checkpoints to itself, store/checkpoint.go).
		t0 := time.Now()
		if _, cerr := conn.ExecContext(ctx, "CHECKPOINT "+snapshotAlias); cerr != nil {
			err = cerr
		}
		s.phase("checkpoint", t0)
	}
	r.Seconds = time.Since(start).Seconds()
	if err != nil {
		return r, fmt.Errorf("sandbox snapshot: %w", err)
	}
	if r.Deliveries > 0 || r.Full {
		s.log().Info("sandbox snapshot refreshed", "full", r.Full, "reason", r.Reason, "deliveries", r.Deliveries,
			"rows", r.Rows, "persons", r.Persons, "seconds", r.Seconds)
	}
	return r, nil
}

// phase logs at debug how long a phase of a refresh took since t0, as the
// loader and the scope log theirs, and returns the time it ended.
func (s *Snapshot) phase(what string, t0 time.Time) time.Time {
	now := time.Now()
	s.log().Debug("snapshot phase", "phase", what, "seconds", now.Sub(t0).Seconds())
	return now
}

// snapshotState is what the copy says of itself.
type snapshotState struct {
	keyID   string
	layout  int
	schema  int   // the feeds' newest migration when it was built
	through int64 // the newest delivery it holds
}

func (s *Snapshot) refresh(ctx context.Context, conn *sql.Conn, key personid.Key) (Refreshed, error) {
	var r Refreshed
	start := time.Now()
	schema, err := feedsSchema(ctx, conn)
	if err != nil {
		return r, err
	}
	st, err := readSnapshotState(ctx, conn)
	if err != nil {
		return r, err
	}
	keyChanged, err := adoptKey(ctx, conn, key)
	if err != nil {
		return r, err
	}
	switch {
	case st == nil:
		r.Full, r.Reason = true, "no copy yet"
	case keyChanged || st.keyID != key.ID():
		r.Full, r.Reason = true, "new pseudonym key"
	case st.layout != snapshotLayout:
		r.Full, r.Reason = true, "new snapshot layout"
	case st.schema != schema:
		r.Full, r.Reason = true, "new feeds schema"
	}
	through := int64(0)
	if st != nil && !r.Full {
		through = st.through
	}
	var ids []int64
	var newest int64
	if err := conn.QueryRowContext(ctx, `SELECT coalesce(list(delivery_id ORDER BY delivery_id), []), coalesce(max(delivery_id), 0)
		FROM deliveries WHERE status = 'loaded' AND delivery_id > ?`, through).Scan(duckList(&ids), &newest); err != nil {
		return r, fmt.Errorf("deliveries: %w", err)
	}
	if !r.Full && len(ids) == 0 {
		return r, nil
	}
	if newest < through {
		newest = through
	}
	r.Deliveries = len(ids)
	s.phase("state", start)
	inner, outer := key.Pads()
	pads := []any{sql.Named("inner_pad", inner), sql.Named("outer_pad", outer)}

	// 1. Tokens for the people these deliveries bring (the vault, in
	// feeds). An incremental copy reads the vault once, for these people
	// only, making the tokens of those it lacks; the copy then joins their
	// tokens, not the vault, once per feed and statement.
	t0 := time.Now()
	tokens := "pseudonyms"
	if r.Full {
		r.Persons, err = addPseudonyms(ctx, conn, pads)
	} else {
		tokens = "temp.snapshot_tokens"
		defer conn.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+tokens)
		r.Persons, err = deliveredTokens(ctx, conn, tokens, ids, pads)
	}
	if err != nil {
		return r, err
	}
	t0 = s.phase("tokens", t0)
	replacing, err := replacingFeeds(ctx, conn, ids)
	if err != nil {
		return r, err
	}
	// 2. The copy, in one transaction of its own database.
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return r, err
	}
	defer tx.Rollback()
	for _, c := range feeds.Contracts {
		n, err := copyFeed(ctx, tx, c, ids, r.Full, tokens, replacing[c.Feed])
		if err != nil {
			return r, fmt.Errorf("%s: %w", c.Feed, err)
		}
		r.Rows += n
		t0 = s.phase("copy "+c.Feed, t0)
	}
	if r.Full {
		for _, q := range snapshotReference {
			if _, err := tx.ExecContext(ctx, strings.ReplaceAll(q, "SNAP", snapshotAlias)); err != nil {
				return r, fmt.Errorf("reference tables: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE OR REPLACE TABLE %s.snapshot_state AS
		SELECT CAST(? AS VARCHAR) AS key_id, CAST(? AS INTEGER) AS layout, CAST(? AS INTEGER) AS feeds_schema,
		       CAST(? AS BIGINT) AS through_delivery, CAST(? AS TIMESTAMP) AS refreshed_at`, snapshotAlias),
		key.ID(), snapshotLayout, schema, newest, domain.DBTime(time.Now())); err != nil {
		return r, fmt.Errorf("state: %w", err)
	}
	err = tx.Commit()
	s.phase("commit", t0)
	return r, err
}

// snapshotReference copies the reference tables and the macros models use
// (SNAP is the copy's catalog). The macros are the feeds' own
// (sql/0001_feeds.sql); a test keeps the two in step.
var snapshotReference = []string{
	"CREATE OR REPLACE TABLE SNAP.regions AS SELECT * FROM regions",
	"CREATE OR REPLACE TABLE SNAP.region_lookup AS SELECT * FROM region_lookup",
	`CREATE OR REPLACE MACRO SNAP.haversine_km(lat1, lon1, lat2, lon2) AS
    2 * 6371 * asin(least(1, sqrt(
        power(sin(radians(lat2 - lat1) / 2), 2)
      + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lon2 - lon1) / 2), 2))))`,
	"CREATE OR REPLACE MACRO SNAP.city_of(code) AS substr(code, 1, 4) || '00'",
}

// feedsSchema is the newest migration applied to the feeds database.
func feedsSchema(ctx context.Context, conn *sql.Conn) (int, error) {
	var v int
	err := conn.QueryRowContext(ctx, "SELECT max(version) FROM feeds.schema_migrations").Scan(&v)
	return v, err
}

func readSnapshotState(ctx context.Context, conn *sql.Conn) (*snapshotState, error) {
	var exists bool
	if err := conn.QueryRowContext(ctx, `SELECT count(*) > 0 FROM duckdb_tables()
		WHERE database_name = ? AND table_name = 'snapshot_state'`, snapshotAlias).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, nil
	}
	st := &snapshotState{}
	err := conn.QueryRowContext(ctx, fmt.Sprintf("SELECT key_id, layout, feeds_schema, through_delivery FROM %s.snapshot_state", snapshotAlias)).
		Scan(&st.keyID, &st.layout, &st.schema, &st.through)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return st, err
}

// adoptKey records the key in the vault; a new key empties the vault (its
// tokens are the old key's) and reports that everything must be made again.
func adoptKey(ctx context.Context, conn *sql.Conn, key personid.Key) (bool, error) {
	var current sql.NullString
	err := conn.QueryRowContext(ctx, "SELECT max(key_id) FROM pseudonym_key").Scan(&current)
	if err != nil {
		return false, err
	}
	if current.Valid && current.String == key.ID() {
		return false, nil
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	for _, q := range []string{"DELETE FROM pseudonyms", "DELETE FROM pseudonym_key"} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return false, err
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO pseudonym_key VALUES (?, ?)", key.ID(), domain.DBTime(time.Now())); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// addPseudonyms gives a token to every person of every loaded row who has
// none yet.
func addPseudonyms(ctx context.Context, conn *sql.Conn, pads []any) (int64, error) {
	q := fmt.Sprintf(`INSERT INTO pseudonyms
		SELECT person_id, %s FROM (
		    SELECT DISTINCT person_id FROM (%s) WHERE person_id IS NOT NULL
		    EXCEPT SELECT person_id FROM pseudonyms)`, personid.TokenSQL("person_id"), personsOf("true"))
	res, err := conn.ExecContext(ctx, q, pads...)
	if err != nil {
		return 0, fmt.Errorf("pseudonyms: %w", err)
	}
	return res.RowsAffected()
}

// deliveredTokens makes the temp table name of the tokens of the persons
// the rows of deliveries ids belong to, reading the vault once: a person
// it lacks gets a new token, which goes into the vault too. It returns the
// tokens made.
func deliveredTokens(ctx context.Context, conn *sql.Conn, name string, ids []int64, pads []any) (int64, error) {
	q := fmt.Sprintf(`CREATE OR REPLACE TEMP TABLE %s AS
		SELECT n.person_id, CASE WHEN p.person_id IS NULL THEN %s ELSE p.token END AS token, p.person_id IS NULL AS made
		FROM (SELECT DISTINCT person_id FROM (%s) WHERE person_id IS NOT NULL) n
		LEFT JOIN pseudonyms p ON p.person_id = n.person_id`,
		name, personid.TokenSQL("n.person_id"), personsOf("delivery_id IN (SELECT unnest($ids))"))
	if _, err := conn.ExecContext(ctx, q, append([]any{sql.Named("ids", ids)}, pads...)...); err != nil {
		return 0, fmt.Errorf("tokens: %w", err)
	}
	res, err := conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO pseudonyms SELECT person_id, token FROM %s WHERE made", name))
	if err != nil {
		return 0, fmt.Errorf("pseudonyms: %w", err)
	}
	return res.RowsAffected()
}

// personsOf is the person IDs of the rows of every person table that meet
// where, one row each.
func personsOf(where string) string {
	var people []string
	for table := range personTables {
		people = append(people, fmt.Sprintf("SELECT person_id FROM %s WHERE %s", table, where))
	}
	return strings.Join(people, " UNION ALL ")
}

// replacingFeeds are the feeds of which some of the deliveries ids replaced
// earlier rows. The copy holds only keys the feeds held, and a key the feed
// held before is a replaced row: the copy of a feed whose deliveries
// replaced nothing has none of their keys, and needs no search for them.
func replacingFeeds(ctx context.Context, conn *sql.Conn, ids []int64) (map[string]bool, error) {
	return feedSet(ctx, conn, "SELECT DISTINCT feed FROM deliveries WHERE delivery_id IN (SELECT unnest(?)) AND replaced > 0", ids)
}

// copyFeed copies one feed table into the snapshot: in full, or the rows of
// the deliveries ids after removing the rows they replace (same key; none
// when replacing is false). tokens is the table of the persons' tokens.
func copyFeed(ctx context.Context, tx *sql.Tx, c feeds.Contract, ids []int64, full bool, tokens string, replacing bool) (int64, error) {
	table := c.Feed
	target := snapshotAlias + "." + table
	blank, hasPerson := personTables[table]
	sel := "SELECT t.*"
	from := table + " t"
	if hasPerson {
		repl := []string{"p.token AS person_id"}
		for _, col := range blank {
			repl = append(repl, fmt.Sprintf("CAST(NULL AS %s) AS %s", blankType(col), col))
		}
		sel = "SELECT t.* REPLACE (" + strings.Join(repl, ", ") + ")"
		from += " JOIN " + tokens + " p ON p.person_id = t.person_id"
	}
	if full {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("CREATE OR REPLACE TABLE %s AS %s FROM %s", target, sel, from)); err != nil {
			return 0, err
		}
		var n int64
		err := tx.QueryRowContext(ctx, "SELECT count(*) FROM "+target).Scan(&n)
		return n, err
	}
	idsArg := sql.Named("ids", ids)
	// The copy's key: the person ID as its token.
	keys, match := make([]string, len(c.Key)), make([]string, len(c.Key))
	for i, k := range c.Key {
		keys[i] = fmt.Sprintf("t.%s AS k%d", k, i)
		if k == "person_id" && hasPerson {
			keys[i] = fmt.Sprintf("p.token AS k%d", i)
		}
		match[i] = fmt.Sprintf("%s.%s = n.k%d", target, k, i)
	}
	if replacing {
		del := fmt.Sprintf(`DELETE FROM %s USING (SELECT %s FROM %s WHERE t.delivery_id IN (SELECT unnest($ids))) n WHERE %s`,
			target, strings.Join(keys, ", "), from, strings.Join(match, " AND "))
		if _, err := tx.ExecContext(ctx, del, idsArg); err != nil {
			return 0, err
		}
	}
	res, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s %s FROM %s WHERE t.delivery_id IN (SELECT unnest($ids))", target, sel, from), idsArg)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func blankType(col string) string {
	if col == "birth_date" {
		return "DATE"
	}
	return "VARCHAR"
}

// duckList scans a DuckDB list of BIGINT into ids.
func duckList(ids *[]int64) sql.Scanner { return &int64List{ids} }

type int64List struct{ out *[]int64 }

func (l *int64List) Scan(v any) error {
	items, ok := v.([]any)
	if !ok {
		return fmt.Errorf("want a list, got %T", v)
	}
	*l.out = (*l.out)[:0]
	for _, it := range items {
		n, ok := it.(int64)
		if !ok {
			return fmt.Errorf("want BIGINT items, got %T", it)
		}
		*l.out = append(*l.out, n)
	}
	return nil
}
