// This file decides what a run examines (审查范围), model by model, so that
// a night costs what the night brought rather than what the year holds, and
// publishes exactly what a full run would.
//
// Each published batch records, per model, what it had examined
// (casebook.examined, in the batch's own transaction): the model version,
// the feeds copy, the region table, the suppressions then active, and —
// through the batch — every delivery loaded when its models started. A
// model runs in full when it declares no scope, on `collider run --full`,
// and when its version, the region table or the feeds copy differs from
// its newest record, or a feed got its first rows since. Otherwise a
// person-scoped model (models.ScopePerson) re-examines every settlement of
// the persons that the changes since can affect:
//
//   - the persons of the rows the deliveries loaded since added or replaced
//     (every loaded row names its delivery), and the persons a re-delivered
//     record left (delivery_left);
//   - the persons with a settlement at an institution whose row changed;
//   - the persons, and the persons with a settlement at the institutions,
//     of the suppressions lifted since (revoked, or expired by the run's
//     clock), whose settlements may now be issued.
//
// Those persons' rows of the person feeds are copied into temp tables on
// the run's connection, and a person-scoped model runs over them under the
// feeds' own names (temp views shadow the feed tables for its query only);
// institutions and regions are read whole. A settlement outside the scope
// keeps its verdict, and its verdict was acted on when it was made: issued,
// or held by a suppression that still holds. So the new clues are those of
// a full run, which the property test in scope_test.go checks against a
// pipeline that runs in full after every delivery.
package jobs

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"collider/domain"
	"collider/feeds"
	"collider/models"
)

// personFeeds are the feeds whose rows belong to a person: the tables a
// scoped model reads as copies of the persons in scope.
var personFeeds = []string{"settlements", "civil_status", "residents", "floating", "locations"}

// When the changes reach more than a quarter of all persons, and more than
// scopeFloor of them, they are examined by a full run instead: copying most
// of the feeds costs more than reading them. (A small store copies fast.)
const (
	scopeShare = 4 // a quarter
	scopeFloor = 100_000
)

// examination is what a run examines, model by model.
type examination struct {
	loaded  []int64 // deliveries loaded when the models start: what the batch examined
	feeds   string  // the feeds copy's identity
	regions string  // SHA-256 of the region table
	active  []int64 // suppressions active by the run's clock
	models  map[string]*modelScope

	since   []int64 // deliveries some person-scoped model has not examined yet
	lifted  []int64 // suppressions lifted since some person-scoped model last ran
	persons int64   // persons in scope
	copied  bool    // the scoped copies of the feeds exist on the connection
	log     *slog.Logger
}

// exec runs one statement of the scope's work, logged at debug with its
// seconds, as the loader logs its phases.
func (x *examination) exec(ctx context.Context, conn *sql.Conn, what, q string, args ...any) error {
	start := time.Now()
	_, err := conn.ExecContext(ctx, q, args...)
	if x.log != nil {
		x.log.Debug("scope phase", "phase", what, "seconds", time.Since(start).Seconds())
	}
	if err != nil {
		return fmt.Errorf("scope: %s: %w", what, err)
	}
	return nil
}

// modelScope is how one model is examined.
type modelScope struct {
	full   bool
	why    string  // why in full; or since which batch, by person
	since  []int64 // deliveries loaded since its newest record
	lifted []int64 // suppressions active then, and not now
}

// examined is a model's newest record in the casebook.
type examined struct {
	batch        int64
	version      string
	feeds        string
	regions      string
	suppressions []int64
	deliveries   []int64
}

// planExamination decides how each live model is examined: in full, or by
// person over the changes since its newest record. versions maps a model
// to its version; full forces every model in full.
func planExamination(ctx context.Context, conn *sql.Conn, live []*models.Model, versions map[string]string, full bool, now time.Time) (*examination, error) {
	x := &examination{models: map[string]*modelScope{}}
	withRows := map[string]bool{} // feeds with rows
	rows, err := conn.QueryContext(ctx, "SELECT delivery_id, feed, loaded FROM feeds.main.deliveries WHERE status = 'loaded' ORDER BY delivery_id")
	if err != nil {
		return nil, fmt.Errorf("scope: deliveries: %w", err)
	}
	rowsOf := map[int64]string{} // delivery → its feed, for deliveries that brought rows
	for rows.Next() {
		var id, n int64
		var feed string
		if err := rows.Scan(&id, &feed, &n); err != nil {
			rows.Close()
			return nil, err
		}
		x.loaded = append(x.loaded, id)
		if n > 0 {
			rowsOf[id], withRows[feed] = feed, true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := conn.QueryRowContext(ctx, "SELECT max(id) FROM feeds.main.feeds_identity").Scan(&x.feeds); err != nil {
		return nil, fmt.Errorf("scope: feeds identity: %w", err)
	}
	if err := conn.QueryRowContext(ctx, `SELECT sha256(coalesce(string_agg(concat_ws('|', code, name, level, parent, province, city, lon, lat), chr(10) ORDER BY code), ''))
		FROM feeds.main.regions`).Scan(&x.regions); err != nil {
		return nil, fmt.Errorf("scope: regions: %w", err)
	}
	if x.active, err = activeSuppressions(ctx, conn, now); err != nil {
		return nil, err
	}
	last, err := lastExamined(ctx, conn)
	if err != nil {
		return nil, err
	}
	since, lifted := map[int64]bool{}, map[int64]bool{}
	for _, m := range live {
		ms := &modelScope{}
		x.models[m.Name] = ms
		e, seen := last[m.Name]
		switch {
		case full:
			ms.full, ms.why = true, "a full run was asked for"
		case m.Scope != models.ScopePerson:
			ms.full, ms.why = true, "the model declares no scope"
		case !seen:
			ms.full, ms.why = true, "no batch has examined the model yet"
		case e.version != versions[m.Name]:
			ms.full, ms.why = true, fmt.Sprintf("a new version (batch %d examined %s)", e.batch, e.version[:min(12, len(e.version))])
		case e.regions != x.regions:
			ms.full, ms.why = true, "the region table changed"
		case e.feeds != x.feeds:
			ms.full, ms.why = true, "the feeds were reloaded into a new copy"
		}
		if ms.full {
			continue
		}
		done := map[int64]bool{}
		hadRows := map[string]bool{}
		for _, id := range e.deliveries {
			done[id] = true
			if feed, ok := rowsOf[id]; ok {
				hadRows[feed] = true
			}
		}
		var firsts []string
		for feed := range withRows {
			if !hadRows[feed] {
				firsts = append(firsts, feed)
			}
		}
		if len(firsts) > 0 {
			sort.Strings(firsts)
			ms.full, ms.why = true, fmt.Sprintf("first rows of %s since batch %d", strings.Join(firsts, ", "), e.batch)
			continue
		}
		for _, id := range x.loaded {
			if !done[id] {
				ms.since = append(ms.since, id)
				since[id] = true
			}
		}
		for _, id := range e.suppressions {
			if !slices.Contains(x.active, id) {
				ms.lifted = append(ms.lifted, id)
				lifted[id] = true
			}
		}
		ms.why = fmt.Sprintf("the changes since batch %d: %d deliveries, %d suppressions lifted", e.batch, len(ms.since), len(ms.lifted))
	}
	x.since, x.lifted = sortedIDs(since), sortedIDs(lifted)
	return x, nil
}

// byPerson says whether any model is examined by person.
func (x *examination) byPerson() bool {
	for _, ms := range x.models {
		if !ms.full {
			return true
		}
	}
	return false
}

// allByPerson says whether every model is examined by person: the clues
// can then be joined to the scoped copies rather than to the feeds.
func (x *examination) allByPerson() bool {
	for _, ms := range x.models {
		if ms.full {
			return false
		}
	}
	return len(x.models) > 0
}

// build makes the scoped copies on conn: collider_scope_persons, and each
// person feed's rows of those persons as collider_scope_FEED. A police
// feed's copy also carries one row of a person outside the scope when the
// feed has any: whether a feed has rows at all is the one fact about
// everyone a scoped model may use (unknown_identity waits for both police
// feeds), and that row's person has no settlement in the copy to judge.
// When the changes reach more than a quarter of the persons, every model
// is examined in full instead. build returns the persons in scope.
func (x *examination) build(ctx context.Context, conn *sql.Conn) (int64, error) {
	if !x.byPerson() {
		return 0, nil
	}
	var parts []string
	args := []any{sql.Named("since", x.since), sql.Named("lifted", x.lifted)}
	if len(x.since) > 0 {
		delivered, err := deliveredFeeds(ctx, conn, x.since)
		if err != nil {
			return 0, err
		}
		for _, feed := range personFeeds {
			if delivered[feed] {
				parts = append(parts, fmt.Sprintf("SELECT person_id FROM feeds.main.%s WHERE delivery_id IN (SELECT unnest($since))", feed))
			}
		}
		parts = append(parts, "SELECT person_id FROM feeds.main.delivery_left WHERE delivery_id IN (SELECT unnest($since))")
		if delivered["institutions"] {
			parts = append(parts, `SELECT person_id FROM feeds.main.settlements WHERE institution_id IN (
				SELECT institution_id FROM feeds.main.institutions WHERE delivery_id IN (SELECT unnest($since)))`)
		}
	}
	if len(x.lifted) > 0 {
		parts = append(parts,
			"SELECT person_id FROM casebook.suppressions WHERE id IN (SELECT unnest($lifted)) AND person_id IS NOT NULL",
			`SELECT person_id FROM feeds.main.settlements WHERE institution_id IN (
				SELECT institution_id FROM casebook.suppressions WHERE id IN (SELECT unnest($lifted)) AND kind = 'institution')`)
	}
	q := "CREATE OR REPLACE TEMP TABLE collider_scope_persons (person_id VARCHAR)"
	if len(parts) > 0 {
		q = "CREATE OR REPLACE TEMP TABLE collider_scope_persons AS SELECT DISTINCT person_id FROM (" +
			strings.Join(parts, "\nUNION ALL ") + ") WHERE person_id IS NOT NULL"
	} else {
		args = nil
	}
	if err := x.exec(ctx, conn, "persons", q, args...); err != nil {
		return 0, err
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM collider_scope_persons").Scan(&x.persons); err != nil {
		return 0, err
	}
	if x.persons > scopeFloor {
		var everyone int64
		if err := conn.QueryRowContext(ctx, `SELECT greatest((SELECT count(*) FROM feeds.main.residents), (SELECT count(*) FROM feeds.main.civil_status))`).Scan(&everyone); err != nil {
			return 0, err
		}
		if x.persons > everyone/scopeShare {
			for _, ms := range x.models {
				if !ms.full {
					ms.full, ms.why = true, fmt.Sprintf("the changes reach %d persons, more than a quarter of them", x.persons)
				}
			}
			return x.persons, nil
		}
	}
	for _, feed := range personFeeds {
		var q string
		switch {
		case x.persons == 0:
			q = fmt.Sprintf("CREATE OR REPLACE TEMP TABLE collider_scope_%[1]s AS SELECT * FROM feeds.main.%[1]s LIMIT 0", feed)
		case feed == "settlements":
			q = fmt.Sprintf(`CREATE OR REPLACE TEMP TABLE collider_scope_%[1]s AS
				SELECT * FROM feeds.main.%[1]s WHERE person_id IN (SELECT person_id FROM collider_scope_persons)`, feed)
		default:
			q = fmt.Sprintf(`CREATE OR REPLACE TEMP TABLE collider_scope_%[1]s AS
				SELECT * FROM feeds.main.%[1]s WHERE person_id IN (SELECT person_id FROM collider_scope_persons)
				UNION ALL
				(SELECT * FROM feeds.main.%[1]s WHERE person_id NOT IN (SELECT person_id FROM collider_scope_persons) LIMIT 1)`, feed)
		}
		if err := x.exec(ctx, conn, "copy "+feed, q); err != nil {
			return 0, err
		}
	}
	x.copied = true
	return x.persons, nil
}

// settlements counts the settlements in the scoped copy.
func (x *examination) settlements(ctx context.Context, conn *sql.Conn) (int64, error) {
	if !x.copied {
		return 0, nil
	}
	var n int64
	err := conn.QueryRowContext(ctx, "SELECT count(*) FROM collider_scope_settlements").Scan(&n)
	return n, err
}

// within runs fn with the person feeds' names bound, on conn, to the
// scoped copies: temp views that shadow the feed tables (DuckDB resolves a
// name in the temp catalog first) and are dropped before it returns.
func within(ctx context.Context, conn *sql.Conn, fn func() error) error {
	for _, feed := range personFeeds {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("CREATE OR REPLACE TEMP VIEW %[1]s AS SELECT * FROM temp.collider_scope_%[1]s", feed)); err != nil {
			unshadow(ctx, conn)
			return fmt.Errorf("scope: %w", err)
		}
	}
	err := fn()
	unshadow(ctx, conn)
	return err
}

// unshadow drops the views that shadow the feeds. A connection that keeps
// them would show the next user of the pool a few persons for everyone, so
// one whose views cannot be dropped is taken out of the pool.
func unshadow(ctx context.Context, conn *sql.Conn) {
	ctx = context.WithoutCancel(ctx)
	for _, feed := range personFeeds {
		if _, err := conn.ExecContext(ctx, "DROP VIEW IF EXISTS temp."+feed); err != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn })
			return
		}
	}
}

// drop removes the scoped copies from conn.
func (x *examination) drop(ctx context.Context, conn *sql.Conn) {
	unshadow(ctx, conn)
	ctx = context.WithoutCancel(ctx)
	for _, t := range append([]string{"persons"}, personFeeds...) {
		conn.ExecContext(ctx, "DROP TABLE IF EXISTS temp.collider_scope_"+t)
	}
}

// describe says what the run examines, for the scope step's record.
func (x *examination) describe(settlements int64) string {
	var person, full []string
	for name, ms := range x.models {
		if ms.full {
			full = append(full, name+" ("+ms.why+")")
		} else {
			person = append(person, name)
		}
	}
	sort.Strings(person)
	sort.Strings(full)
	var parts []string
	if len(person) > 0 {
		parts = append(parts, fmt.Sprintf("by person: %s — %d persons, %d settlements, from %d deliveries and %d suppressions lifted since",
			strings.Join(person, ", "), x.persons, settlements, len(x.since), len(x.lifted)))
	}
	if len(full) > 0 {
		parts = append(parts, "in full: "+strings.Join(full, ", "))
	}
	return strings.Join(parts, "; ")
}

// activeSuppressions lists the suppressions in force at now, as the runner
// judges them (models.Runner.Group).
func activeSuppressions(ctx context.Context, conn *sql.Conn, now time.Time) ([]int64, error) {
	rows, err := conn.QueryContext(ctx, `SELECT id FROM casebook.suppressions WHERE revoked_at IS NULL
		AND (expires_at IS NULL OR expires_at > CAST(? AS TIMESTAMP)) ORDER BY id`, domain.DBTime(now))
	if err != nil {
		return nil, fmt.Errorf("scope: suppressions: %w", err)
	}
	defer rows.Close()
	out := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// lastExamined reads each model's newest record, with its batch's deliveries.
func lastExamined(ctx context.Context, conn *sql.Conn) (map[string]examined, error) {
	rows, err := conn.QueryContext(ctx, `SELECT e.model, e.batch_id, e.version, e.feeds, e.regions, e.suppressions, b.deliveries
		FROM casebook.examined e JOIN casebook.batches b ON b.batch_id = e.batch_id
		WHERE e.batch_id = (SELECT max(x.batch_id) FROM casebook.examined x WHERE x.model = e.model)`)
	if err != nil {
		return nil, fmt.Errorf("scope: examined: %w", err)
	}
	defer rows.Close()
	out := map[string]examined{}
	for rows.Next() {
		var model, sup, dels string
		var e examined
		if err := rows.Scan(&model, &e.batch, &e.version, &e.feeds, &e.regions, &sup, &dels); err != nil {
			return nil, err
		}
		if err := errors.Join(json.Unmarshal([]byte(sup), &e.suppressions), json.Unmarshal([]byte(dels), &e.deliveries)); err != nil {
			return nil, fmt.Errorf("scope: batch %d: %w", e.batch, err)
		}
		out[model] = e
	}
	return out, rows.Err()
}

// deliveredFeeds says which feeds the deliveries ids belong to.
func deliveredFeeds(ctx context.Context, conn *sql.Conn, ids []int64) (map[string]bool, error) {
	all, err := feedSet(ctx, conn, "SELECT DISTINCT feed FROM feeds.main.deliveries WHERE delivery_id IN (SELECT unnest(?))", ids)
	for f := range all {
		if _, err := feeds.Lookup(f); err != nil {
			delete(all, f)
		}
	}
	return all, err
}

// feedSet reads the feeds a query names, one a row.
func feedSet(ctx context.Context, conn *sql.Conn, query string, args ...any) (map[string]bool, error) {
	rows, err := conn.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var f string
		if err := rows.Scan(&f); err != nil {
			return nil, err
		}
		out[f] = true
	}
	return out, rows.Err()
}

func sortedIDs(set map[int64]bool) []int64 {
	out := make([]int64, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
