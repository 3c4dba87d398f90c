package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"collider/casebook"
	"collider/personid"
	"collider/synth"
)

func TestMain(m *testing.M) {
	if IsSandboxChild() {
		SandboxMain() // previews run their drafts in this binary, started again
	}
	os.Exit(m.Run())
}

// hidden are the columns the snapshot keeps empty, per table.
var hidden = map[string][]string{"settlements": {"person_name"}, "residents": {"name", "birth_date"}}

// checkSnapshot compares the snapshot with the store's feeds: the same
// rows, table by table, with each person ID as its token and names and
// police birth dates empty; and not one ID number or name anywhere in it.
func checkSnapshot(t *testing.T, snap *Snapshot) {
	t.Helper()
	ctx := context.Background()
	conn, err := snap.Store.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("ATTACH '%s' AS snap (READ_ONLY)", snap.Path())); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "DETACH snap")
	for table := range personTables {
		repl := []string{"p.token AS person_id"}
		for _, c := range hidden[table] {
			repl = append(repl, fmt.Sprintf("NULL AS %s", c))
		}
		want := fmt.Sprintf("SELECT t.* REPLACE (%s) FROM %s t JOIN pseudonyms p ON p.person_id = t.person_id", strings.Join(repl, ", "), table)
		var feedRows, snapRows, missing, extra int64
		if err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s), (SELECT count(*) FROM snap.%[1]s),
			(SELECT count(*) FROM (%[2]s EXCEPT ALL SELECT * FROM snap.%[1]s)),
			(SELECT count(*) FROM (SELECT * FROM snap.%[1]s EXCEPT ALL %[2]s))`, table, want)).Scan(&feedRows, &snapRows, &missing, &extra); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if feedRows == 0 || feedRows != snapRows || missing != 0 || extra != 0 {
			t.Errorf("%s: %d rows in the feeds, %d in the snapshot; %d missing from it, %d not in the feeds", table, feedRows, snapRows, missing, extra)
		}
	}
	var ids, names int64
	if err := conn.QueryRowContext(ctx, `SELECT count(DISTINCT person_id) FROM pseudonyms`).Scan(&ids); err != nil || ids == 0 {
		t.Fatalf("pseudonyms: %d, %v", ids, err)
	}
	// Every text value of the snapshot against every ID number and name.
	rows, err := conn.QueryContext(ctx, `SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'snap' AND data_type = 'VARCHAR'`)
	if err != nil {
		t.Fatal(err)
	}
	var cols [][2]string
	for rows.Next() {
		var tb, c string
		rows.Scan(&tb, &c)
		cols = append(cols, [2]string{tb, c})
	}
	rows.Close()
	for _, tc := range cols {
		if err := conn.QueryRowContext(ctx, fmt.Sprintf(`SELECT
			(SELECT count(*) FROM snap.%[1]s WHERE %[2]s IN (SELECT person_id FROM pseudonyms)),
			(SELECT count(*) FROM snap.%[1]s WHERE %[2]s IN (SELECT name FROM residents WHERE name IS NOT NULL UNION SELECT person_name FROM settlements WHERE person_name IS NOT NULL))`,
			tc[0], tc[1])).Scan(&ids, &names); err != nil {
			t.Fatal(err)
		}
		if ids+names > 0 {
			t.Errorf("snapshot %s.%s holds %d ID numbers and %d names", tc[0], tc[1], ids, names)
		}
	}
}

// The snapshot follows the feeds delivery by delivery — new rows, rows a
// later delivery replaces, late deaths — copying only what each refresh
// brings, and is made again in full under a new key.
func TestSnapshot_FollowsTheFeedsWithPeopleAsTokens(t *testing.T) {
	ctx := context.Background()
	inbox := t.TempDir()
	if _, err := synth.Generate(ctx, synth.Options{Out: inbox, Seed: 3, Settlements: 3000}); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	loadInbox := func() {
		ds, errs := Discover(inbox)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, r := range (&Loader{Store: s}).LoadAll(ctx, ds) {
			if r.Status == StatusFailed {
				t.Fatalf("%s/%s: %v", r.Feed, r.Name, r.Err)
			}
		}
	}
	loadInbox()
	dir := t.TempDir()
	snap := &Snapshot{Store: s, Dir: filepath.Join(dir, "sandbox"), KeyFile: filepath.Join(dir, "pseudonym.key")}
	r, err := snap.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Full || r.Reason != "no copy yet" || r.Persons == 0 || r.Rows == 0 {
		t.Errorf("first refresh %+v", r)
	}
	if st, err := os.Stat(snap.KeyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", st, err)
	}
	checkSnapshot(t, snap)

	// A night: a corrected hukou for 40 people, late deaths for 30, new
	// settlements, a new floating registration.
	db := s.DB
	delivery(t, db, inbox, "residents", "corrected", `SELECT person_id, name, '620102' AS hukou_region, CAST(birth_date AS VARCHAR) AS birth_date
		FROM residents WHERE hukou_region <> '620102' ORDER BY person_id LIMIT 40`)
	delivery(t, db, inbox, "civil_status", "late-deaths", `SELECT person_id, 'deceased' AS status, '2024-01-02' AS death_date, '2024-01-05 08:00:00' AS updated_at
		FROM residents ORDER BY person_id DESC LIMIT 30`)
	delivery(t, db, inbox, "settlements", "night", `SELECT 'N' || settlement_id AS settlement_id, person_id, person_name, institution_id, visit_type,
		CAST(visit_start AS VARCHAR) AS visit_start, CAST(visit_end AS VARCHAR) AS visit_end, CAST(settled_at AS VARCHAR) AS settled_at,
		CAST(total_amount AS DOUBLE) AS total_amount, CAST(fund_amount AS DOUBLE) AS fund_amount, insured_region FROM settlements ORDER BY settlement_id LIMIT 100`)
	// Among the floating registrations, one of a person no feed held yet:
	// the incremental refresh makes its token.
	newcomer := personid.Make("620402", time.Date(1990, 3, 4, 0, 0, 0, 0, time.UTC), 917)
	delivery(t, db, inbox, "floating", "night", `(SELECT person_id, '620402' AS region_code, '2025-01-01' AS valid_from, CAST(NULL AS VARCHAR) AS valid_to FROM residents ORDER BY person_id LIMIT 19)
		UNION ALL SELECT '`+newcomer+`', '620402', '2025-01-01', NULL`)
	loadInbox()
	if r, err = snap.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Full || r.Deliveries != 4 || r.Rows != 40+30+100+20 || r.Persons != 1 {
		t.Errorf("incremental refresh %+v, want 4 deliveries, 190 rows and 1 token made", r)
	}
	checkSnapshot(t, snap)
	newKey, err := personid.LoadKey(snap.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var made string
	if err := db.QueryRow("SELECT token FROM pseudonyms WHERE person_id = ?", newcomer).Scan(&made); err != nil || made != newKey.Token(newcomer) {
		t.Errorf("the newcomer's token: %q, want %q (%v)", made, newKey.Token(newcomer), err)
	}

	if r, err = snap.Refresh(ctx); err != nil || r.Full || r.Deliveries != 0 || r.Rows != 0 {
		t.Errorf("a refresh with nothing new: %+v %v", r, err)
	}

	// Tokens are the Go twin's; a new key makes every one again.
	key, err := personid.LoadKey(snap.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var id, token string
	if err := db.QueryRow("SELECT person_id, token FROM pseudonyms ORDER BY person_id LIMIT 1").Scan(&id, &token); err != nil {
		t.Fatal(err)
	}
	if key.Token(id) != token {
		t.Errorf("token of %s: SQL %s, Go %s", id, token, key.Token(id))
	}
	if _, err := personid.RotateKey(snap.KeyFile); err != nil {
		t.Fatal(err)
	}
	if r, err = snap.Refresh(ctx); err != nil || !r.Full || r.Reason != "new pseudonym key" {
		t.Fatalf("refresh after a new key: %+v %v", r, err)
	}
	var again string
	if err := db.QueryRow("SELECT token FROM pseudonyms WHERE person_id = ?", id).Scan(&again); err != nil || again == token {
		t.Errorf("token after a new key: %q (was %q) %v", again, token, err)
	}
	checkSnapshot(t, snap)
}

// HMAC in SQL is the Go twin's on many IDs.
func TestSnapshot_TokenSQLIsTheGoTwin(t *testing.T) {
	s := openStore(t)
	key := personid.NewKey([]byte("a key of thirty-two bytes, fixed"))
	inner, outer := key.Pads()
	var ids []string
	for i := range 500 {
		ids = append(ids, fmt.Sprintf("62010219%02d%02d%02d%03d", 40+i%60, 1+i%12, 1+i%28, i))
	}
	rows, err := s.DB.Query("SELECT id, "+personid.TokenSQL("id")+" FROM (SELECT unnest(CAST($ids AS VARCHAR[])) AS id)",
		sql.Named("ids", ids), sql.Named("inner_pad", inner), sql.Named("outer_pad", outer))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, tok string
		if err := rows.Scan(&id, &tok); err != nil {
			t.Fatal(err)
		}
		if tok != key.Token(id) || len(tok) != 12 {
			t.Errorf("%s: SQL %s, Go %s", id, tok, key.Token(id))
		}
		n++
	}
	if n != len(ids) {
		t.Errorf("%d tokens for %d ids", n, len(ids))
	}
}

// A night that examines every model by person refreshes the drafts'
// snapshot beside the models: a draft reading the snapshot holds up the
// refresh, not the night's clues, and the run ends only once the snapshot
// holds the night. A run with a model in full refreshes it first, alone.
func TestPipeline_TheNightRefreshesTheSnapshotBesideTheModels(t *testing.T) {
	ctx := context.Background()
	inbox := t.TempDir()
	province := synth.Options{Out: inbox, Seed: 5, Settlements: 3000}
	if _, err := synth.Generate(ctx, province); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	dir := t.TempDir()
	snap := &Snapshot{Store: s, Dir: filepath.Join(dir, "sandbox"), KeyFile: filepath.Join(dir, "pseudonym.key"), Log: quietLog()}
	p := &Pipeline{Store: s, Casebook: casebook.New(s.DB), Catalog: liveCatalog(t), Inbox: inbox, Log: quietLog(), Snapshot: snap}
	first, err := p.Run(ctx, "test", "test")
	if err != nil || first.Status != RunSucceeded {
		t.Fatalf("the year's run: %s %v", first.Status, err)
	}
	var alone bool
	if err := s.DB.QueryRow(`SELECT (SELECT finished_at FROM casebook.run_steps WHERE run_id = $1 AND name = 'sandbox')
		<= (SELECT started_at FROM casebook.run_steps WHERE run_id = $1 AND name = 'scope')`, first.RunID).Scan(&alone); err != nil || !alone {
		t.Errorf("the year's run refreshed the snapshot beside its models in full (%v):%s", err, runSteps(t, s.DB, first.RunID))
	}

	if _, err := synth.Night(ctx, synth.NightOptions{Province: province, Out: inbox, Night: 1}); err != nil {
		t.Fatal(err)
	}
	holding, release, read := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		read <- snap.Read(ctx, func(string) error { close(holding); <-release; return nil })
	}()
	select {
	case <-holding:
	case err := <-read:
		t.Fatalf("the draft's read: %v", err)
	}
	id, err := p.Start(ctx, "test", "test")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	clued := func() bool {
		var n int
		s.DB.QueryRow("SELECT count(*) FROM casebook.run_steps WHERE run_id = ? AND name = 'clues' AND status = 'succeeded'", id).Scan(&n)
		return n == 1
	}
	for deadline := time.Now().Add(2 * time.Minute); !clued(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("the night's clues waited for the draft reading the snapshot:%s", runSteps(t, s.DB, id))
		}
	}
	if p.Running() != id {
		t.Errorf("the night ended while its snapshot refresh waited for a draft:%s", runSteps(t, s.DB, id))
	}
	close(release)
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); p.Running() == id; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the night never ended:%s", runSteps(t, s.DB, id))
		}
	}
	rec, err := p.Get(ctx, id)
	if err != nil || rec.Status != RunSucceeded || rec.BatchID == nil {
		t.Fatalf("the night: %+v %v", rec, err)
	}
	steps := runSteps(t, s.DB, id)
	if !strings.Contains(steps, "sandbox succeeded") || !strings.Contains(steps, "clues succeeded") {
		t.Errorf("the night's steps:%s", steps)
	}
	if r, err := snap.Refresh(ctx); err != nil || r.Deliveries != 0 {
		t.Errorf("after the night the snapshot still lacked %d deliveries (%v)", r.Deliveries, err)
	}
}
