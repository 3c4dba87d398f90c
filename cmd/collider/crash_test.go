package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"

	"collider/casebook"
	"collider/jobs"
	"collider/store"
)

// The crash test: the real binary, SIGKILLed at random moments of its run,
// aimed in turn at the loading of a delivery, the model runs and the
// publishing (the test fails unless kills land in each), and restarted on
// the same data directory each time. Before each start a new settlements
// delivery arrives, so that every run has real work to be killed in. After
// every kill the store reopens (DuckDB replays its WAL) with no half-loaded
// delivery, no half-published batch and no lost lead event; after a final
// complete run the issued (model, settlement) pairs are exactly those of one
// uninterrupted run over the same deliveries: none twice, none missing.
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
	if len(want) == 0 {
		t.Fatal("the uninterrupted run issued nothing: nothing to compare")
	}

	inbox := filepath.Join(dir, "inbox")
	data := filepath.Join(dir, "crashed")
	rng := rand.New(rand.NewPCG(42, 7))
	var kept []int64 // lead events written between kills
	// Each run is aimed at one phase in turn: the loading of its new
	// delivery, the model runs, the publishing. When the run logs that the
	// phase has begun, the kill comes at a random moment within the time the
	// phase took the last time it was seen whole.
	targets := []string{"load", "model", "publish"}
	took := map[string]time.Duration{"load": 300 * time.Millisecond, "model": 500 * time.Millisecond, "publish": 200 * time.Millisecond}
	landed := map[string]int{}
	for i := 1; i <= parts; i++ {
		splitSettlements(t, generated, inbox, parts, i) // delivery i arrives
		target := targets[i%len(targets)]
		k := runAndKill(t, data, inbox, fmt.Sprintf("settlements/%04d", i), target, took, rng)
		landed[k]++
		kept = append(kept, checkAfterKill(t, data, kept))
	}
	t.Logf("%d runs killed; the step each was in when killed: %v", parts, landed)
	for _, phase := range targets {
		if landed[phase] < parts/len(targets)/3 || landed[phase] == 0 {
			t.Errorf("only %d of %d kills landed in %s", landed[phase], parts, phase)
		}
	}

	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 && r.code != 3 {
		t.Fatalf("final run: %d %s", r.code, r.stderr)
	}
	checkAfterKill(t, data, kept)
	mustCheck(t, data)
	got := issuedPairs(t, data)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("issued pairs after crashes differ from an uninterrupted run: %d vs %d", len(got), len(want))
	}
	t.Logf("%d (model, settlement) pairs issued, identical to the uninterrupted run", len(got))
}

// runAndKill starts `collider run` and SIGKILLs it inside the target phase
// (load: the loading of the given delivery; model: the model runs; publish),
// at a random moment within the phase's last known duration, which it
// updates. It returns the step the run was in when it died ("finished" if
// it ended first, "start" if no step had begun).
func runAndKill(t *testing.T, data, inbox, delivery, target string, took map[string]time.Duration, rng *rand.Rand) string {
	t.Helper()
	cmd := exec.Command(binary, "run", "--data", data, "--inbox", inbox)
	cmd.Env = append(os.Environ(), "COLLIDER_LOG=info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu                 sync.Mutex
		curName, curDetail = "start", "" // the step that has begun and not finished
		began              = map[string]time.Time{}
		exited, wasKilled  bool
		killedIn           string
	)
	phaseOf := func(name, detail string) string {
		switch {
		case name == "load" && detail == delivery:
			return "load"
		case name == "model", name == "publish":
			return name
		}
		return ""
	}
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		line := lines.Text()
		mu.Lock()
		switch {
		case strings.Contains(line, `msg="step started"`):
			curName, curDetail = logField(line, "step"), logField(line, "detail")
			phase := phaseOf(curName, curDetail)
			if _, seen := began[phase]; phase != "" && !seen {
				began[phase] = time.Now()
				if phase == "publish" && !began["model"].IsZero() {
					took["model"] = time.Since(began["model"]) // the models ran whole
				}
				if phase == target {
					d := time.Duration(rng.Int64N(int64(took[target]) + 1))
					time.AfterFunc(d, func() {
						mu.Lock()
						defer mu.Unlock()
						if !exited && !wasKilled {
							wasKilled, killedIn = true, curName
							cmd.Process.Signal(syscall.SIGKILL)
						}
					})
				}
			}
		case strings.Contains(line, `msg="step finished"`):
			if phase := phaseOf(curName, curDetail); phase == "load" || phase == "publish" {
				took[phase] = time.Since(began[phase])
			}
			curName, curDetail = "between steps", ""
		}
		mu.Unlock()
	}
	mu.Lock()
	exited = true
	mu.Unlock()
	cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && !ws.Signaled() {
		wasKilled = false // it had ended by itself before the signal came
	}
	switch {
	case !wasKilled:
		return "finished"
	case killedIn == "discover":
		return "start"
	}
	return killedIn
}

// logField reads key=value (or key="value") from a log/slog text line.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if j := strings.Index(v[1:], `"`); j >= 0 {
			return v[1 : j+1]
		}
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		return v[:j]
	}
	return v
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
	// The store's invariants, as collider check states them.
	if r, err := jobs.Check(context.Background(), db); err != nil || !r.OK {
		t.Fatalf("collider check after a kill: %v %+v", err, r.Broken())
	}
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

// The server killed while it serves: a run is busy and city clients act on
// their leads when SIGKILL comes. Every action the server acknowledged
// (201) is there after the restart, each lead stands where its last event
// left it, and the store holds no half-loaded delivery or half-published
// batch; a final run completes.
func TestCrash_ServeKilledKeepsEveryAcknowledgedAction(t *testing.T) {
	kills := 8
	if testing.Short() {
		kills = 3
	}
	dir := t.TempDir()
	generated := filepath.Join(dir, "generated")
	if r := collider(t, nil, "gen", "--out", generated, "--settlements", "120000", "--seed", "12"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	inbox, data := filepath.Join(dir, "inbox"), filepath.Join(dir, "data")
	splitSettlements(t, generated, inbox, kills+1, 1)
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatalf("first run: %d %s", r.code, r.stderr)
	}
	// The bureaus of the three cities with the most leads act on them.
	s := openForCheck(t, data)
	rows, err := s.DB.Query(`SELECT city_code FROM casebook.leads WHERE city_code NOT LIKE '__0000'
		GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 3`)
	if err != nil {
		t.Fatal(err)
	}
	var bureaus []string
	var cities []string
	for rows.Next() {
		var city string
		rows.Scan(&city)
		cities = append(cities, city)
	}
	rows.Close()
	s.Close()
	for _, city := range cities {
		bureaus = append(bureaus, addUser(t, data, "city", city))
	}
	province := addUser(t, data, "province", "")

	type ack struct {
		lead   int64
		action string
	}
	var (
		mu    sync.Mutex
		acked []ack
	)
	rng := rand.New(rand.NewPCG(12, 5))
	for i := 1; i <= kills; i++ {
		splitSettlements(t, generated, inbox, kills+1, i+1) // the run has a delivery to load
		srv := startServe(t, data, inbox, "off")
		if code, body := srv.do(t, "POST", "/api/v1/runs", province, nil); code != http.StatusAccepted {
			t.Fatalf("trigger: %d %s", code, body)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 2*len(bureaus); w++ {
			bureau := bureaus[w%len(bureaus)]
			mine := func(lead int64) bool { return lead%2 == int64(w/len(bureaus)) }
			wg.Add(1)
			go func() {
				defer wg.Done()
				// The next action on one of this client's leads, furthest along first.
				next := map[string]string{
					"investigating": fmt.Sprintf(`{"action":"close","outcome":"dismissed","note":"checked on site, kill %d"}`, i),
					"accepted":      `{"action":"investigate"}`,
					"new":           `{"action":"accept"}`,
				}
				for {
					select {
					case <-stop:
						return
					default:
					}
					acted := false
					for _, status := range []string{"investigating", "accepted", "new"} {
						var page struct {
							Items []struct {
								ID int64 `json:"lead_id"`
							} `json:"items"`
						}
						if !call(srv.base, "GET", "/api/v1/leads?limit=100&status="+status, bureau, "", &page) {
							return // the server is gone
						}
						for _, l := range page.Items {
							if !mine(l.ID) {
								continue
							}
							body := next[status]
							if !call(srv.base, "POST", fmt.Sprintf("/api/v1/leads/%d/events", l.ID), bureau, body, nil) {
								return
							}
							var a struct{ Action string }
							json.Unmarshal([]byte(body), &a)
							mu.Lock()
							acked = append(acked, ack{l.ID, a.Action})
							mu.Unlock()
							acted = true
							break
						}
						if acted {
							break
						}
					}
					if !acted {
						time.Sleep(20 * time.Millisecond) // the run may yet route new leads
					}
				}
			}()
		}
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
		srv.cmd.Process.Signal(syscall.SIGKILL)
		srv.cmd.Wait()
		close(stop)
		wg.Wait()

		s := openForCheck(t, data)
		mu.Lock()
		for _, a := range acked {
			var n int
			if err := s.DB.QueryRow("SELECT count(*) FROM casebook.lead_events WHERE lead_id = ? AND action = ?", a.lead, a.action).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("kill %d: lead %d: the acknowledged %s is not there once (%d)", i, a.lead, a.action, n)
			}
		}
		mu.Unlock()
		var stale int
		if err := s.DB.QueryRow(`SELECT count(*) FROM casebook.leads l WHERE l.status <> (
			SELECT e.to_status FROM casebook.lead_events e WHERE e.lead_id = l.lead_id ORDER BY e.event_id DESC LIMIT 1)`).Scan(&stale); err != nil {
			t.Fatal(err)
		}
		if stale != 0 {
			t.Fatalf("kill %d: %d leads do not stand where their last event left them", i, stale)
		}
		s.Close()
		checkAfterKill(t, data, nil)
	}
	t.Logf("%d kills; %d acknowledged actions, all kept", kills, len(acked))
	if len(acked) == 0 {
		t.Fatal("no action was acknowledged: the clients never reached the server")
	}
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatalf("final run: %d %s", r.code, r.stderr)
	}
	checkAfterKill(t, data, nil)
	mustCheck(t, data)
}

// call makes one API request and decodes a 2xx answer into out; false when
// the server is gone or answers otherwise.
func call(base, method, path, token, body string, out any) bool {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return false
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out) == nil
	}
	return true
}
