package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"

	"collider/casebook"
	"collider/store"
)

// The crash test: the real binary, SIGKILLed at random moments of its run
// (loading, models, publishing), restarted on the same data directory each
// time. Before each start a new settlements delivery arrives, so that every
// run has real work to be killed in. After every kill the store reopens
// (DuckDB replays its WAL) with no half-loaded delivery, no half-published
// batch and no lost lead event; after a final complete run the issued
// (model, settlement) pairs are exactly those of one uninterrupted run over
// the same deliveries: none twice, none missing.
func TestCrash_KilledAtRandomMomentsLeavesNoHalfState(t *testing.T) {
	parts := 24
	if testing.Short() {
		parts = 6
	}
	dir := t.TempDir()
	generated := filepath.Join(dir, "generated")
	if r := collider(t, nil, "gen", "--out", generated, "--settlements", "120000", "--bad", "--seed", "11"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	// The uninterrupted run over every delivery, for comparison.
	all := filepath.Join(dir, "all")
	splitSettlements(t, generated, all, parts, parts)
	baseline := filepath.Join(dir, "baseline")
	if r := collider(t, nil, "run", "--data", baseline, "--inbox", all); r.code != 3 {
		t.Fatalf("baseline run: %d %s", r.code, r.stderr)
	}
	want := issuedPairs(t, baseline)

	inbox := filepath.Join(dir, "inbox")
	data := filepath.Join(dir, "crashed")
	rng := rand.New(rand.NewPCG(42, 7))
	var kept []int64 // lead events written between kills
	phases := map[string]int{}
	// The kill comes at a random moment within the span a run takes, which
	// is learnt: the span grows when a kill lands before any work and is set
	// by the runs that finish before their moment.
	runTime := time.Second
	for i := 1; i <= parts; i++ {
		splitSettlements(t, generated, inbox, parts, i) // delivery i arrives
		cmd := exec.Command(binary, "run", "--data", data, "--inbox", inbox)
		cmd.Env = append(os.Environ(), "COLLIDER_LOG=info")
		var log strings.Builder
		cmd.Stderr = &log
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-time.After(time.Duration(rng.Int64N(int64(runTime)))):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		case <-done: // finished before its moment came
			runTime = time.Since(start)
		}
		phase := lastPhase(log.String())
		phases[phase]++
		if phase == "start" {
			runTime = runTime * 3 / 2 // too early to be interesting: aim later
		}
		kept = append(kept, checkAfterKill(t, data, kept))
	}
	t.Logf("%d kills; the last step logged before each: %v", parts, phases)

	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 && r.code != 3 {
		t.Fatalf("final run: %d %s", r.code, r.stderr)
	}
	checkAfterKill(t, data, kept)
	got := issuedPairs(t, data)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("issued pairs after crashes differ from an uninterrupted run: %d vs %d", len(got), len(want))
	}
	t.Logf("%d (model, settlement) pairs issued, identical to the uninterrupted run", len(got))
}

// splitSettlements lays out an inbox from a generated province: every feed
// as generated, except settlements, cut into parts deliveries of which the
// first upto are present.
func splitSettlements(t *testing.T, generated, inbox string, parts, upto int) {
	t.Helper()
	entries, _ := filepath.Glob(filepath.Join(generated, "*", "*"))
	for _, src := range entries {
		rel, _ := filepath.Rel(generated, src)
		if strings.HasPrefix(rel, "settlements"+string(filepath.Separator)+"0001") {
			continue
		}
		dst := filepath.Join(inbox, rel)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := exec.Command("cp", "-r", src, dst).Run(); err != nil {
			os.MkdirAll(filepath.Dir(dst), 0o755)
			if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
				t.Fatalf("cp %s: %v %s", rel, err, out)
			}
		}
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	src := filepath.Join(generated, "settlements", "0001", "*.parquet")
	for i := 1; i <= upto; i++ {
		dir := filepath.Join(inbox, "settlements", fmt.Sprintf("%04d", i))
		if _, err := os.Stat(filepath.Join(dir, "_SUCCESS")); err == nil {
			continue
		}
		os.MkdirAll(dir, 0o755)
		q := fmt.Sprintf(`COPY (SELECT * EXCLUDE (n) FROM (SELECT *, row_number() OVER (ORDER BY settlement_id) AS n FROM read_parquet('%s'))
			WHERE n %% %d = %d) TO '%s' (FORMAT parquet)`, src, parts, i-1, filepath.Join(dir, "part-00000.parquet"))
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "_SUCCESS"), nil, 0o644)
	}
}

// issuedPairs lists every (model, settlement) ever issued, sorted, and fails
// on a pair issued twice.
func issuedPairs(t *testing.T, data string) []string {
	t.Helper()
	s := openForCheck(t, data)
	defer s.Close()
	rows, err := s.DB.Query(`SELECT model || ' ' || settlement_id FROM casebook.issued`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var x string
		rows.Scan(&x)
		out = append(out, x)
	}
	sort.Strings(out)
	for i := 1; i < len(out); i++ {
		if out[i] == out[i-1] {
			t.Fatalf("%s issued twice", out[i])
		}
	}
	return out
}

// lastPhase names the last thing the run logged before it was killed.
func lastPhase(log string) string {
	phase := "start"
	for _, line := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(line, `msg="delivery loaded"`), strings.Contains(line, `msg="delivery failed"`):
			phase = "loading"
		case strings.Contains(line, `msg="model run"`):
			phase = "models"
		case strings.Contains(line, `msg=publishing`):
			phase = "publishing"
		case strings.Contains(line, `msg="run finished"`):
			phase = "finished"
		}
	}
	return phase
}

func openForCheck(t *testing.T, data string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), store.Options{Dir: data, MemoryLimit: "2GB", Threads: 2})
	if err != nil {
		t.Fatalf("the store does not reopen after a kill: %v", err)
	}
	return s
}

// checkAfterKill asserts the invariants, checks that the lead events written
// after earlier kills are all there, and writes one more (returned).
func checkAfterKill(t *testing.T, data string, kept []int64) int64 {
	t.Helper()
	if _, err := os.Stat(filepath.Join(data, "feeds.duckdb")); err != nil {
		return 0 // killed before the store was created
	}
	s := openForCheck(t, data)
	defer s.Close()
	db := s.DB
	zero := func(what, q string) {
		t.Helper()
		var n int64
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n != 0 {
			t.Fatalf("%s: %d", what, n)
		}
	}
	// No half-loaded delivery: every loaded delivery has exactly its rows
	// (nothing here redelivers a key), and no row belongs to anything else.
	for _, feed := range []string{"institutions", "residents", "civil_status", "floating", "locations", "settlements"} {
		zero(feed+": rows of deliveries not loaded", fmt.Sprintf(`SELECT count(*) FROM %s f
			WHERE f.delivery_id NOT IN (SELECT delivery_id FROM deliveries WHERE status = 'loaded')`, feed))
		zero(feed+": loaded deliveries with the wrong row count", fmt.Sprintf(`SELECT count(*) FROM deliveries d
			WHERE d.feed = '%s' AND d.status = 'loaded' AND d.loaded <> (SELECT count(*) FROM %s f WHERE f.delivery_id = d.delivery_id)`, feed, feed))
	}
	zero("a delivery loaded twice", `SELECT count(*) FROM (SELECT sha256 FROM deliveries WHERE status = 'loaded' GROUP BY feed, sha256 HAVING count(*) > 1)`)
	// No half-published batch.
	zero("batches whose totals miss clues", `SELECT count(*) FROM casebook.batches b
		WHERE b.clues <> (SELECT count(*) FROM casebook.clues c WHERE c.batch_id = b.batch_id)`)
	zero("clues of no batch", `SELECT count(*) FROM casebook.clues WHERE batch_id NOT IN (SELECT batch_id FROM casebook.batches)`)
	zero("clues without a lead", `SELECT count(*) FROM casebook.clues c WHERE NOT EXISTS (SELECT 1 FROM casebook.leads l WHERE l.lead_id = c.clue_id)`)
	zero("leads without their route event", `SELECT count(*) FROM casebook.leads l WHERE NOT EXISTS (SELECT 1 FROM casebook.lead_events e WHERE e.lead_id = l.lead_id AND e.action = 'route')`)
	zero("issued settlements not in their clue", `SELECT count(*) FROM casebook.issued i JOIN casebook.clues c USING (clue_id)
		WHERE position(i.settlement_id IN c.settlement_ids) = 0`)
	zero("clues whose settlements are not all issued", `SELECT count(*) FROM casebook.clues c
		WHERE c.settlement_count <> (SELECT count(*) FROM casebook.issued i WHERE i.clue_id = c.clue_id)`)
	// No lost lead event.
	for _, id := range kept {
		if id == 0 {
			continue
		}
		var n int
		db.QueryRow("SELECT count(*) FROM casebook.lead_events WHERE event_id = ?", id).Scan(&n)
		if n != 1 {
			t.Fatalf("lead event %d was lost", id)
		}
	}
	// Write one more: a city accepts one of its new leads.
	var lead int64
	var city string
	if err := db.QueryRow("SELECT lead_id, city_code FROM casebook.leads WHERE status = 'new' AND city_code NOT LIKE '__0000' ORDER BY lead_id LIMIT 1").Scan(&lead, &city); err == sql.ErrNoRows {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	cb := casebook.New(db)
	u := casebook.User{ID: 0, Name: "crash-test " + city, Role: casebook.RoleCity, City: city}
	if _, err := cb.Act(context.Background(), u, lead, casebook.Action{Action: casebook.ActionAccept}); err != nil {
		t.Fatal(err)
	}
	var ev int64
	db.QueryRow("SELECT max(event_id) FROM casebook.lead_events WHERE lead_id = ?", lead).Scan(&ev)
	return ev
}
