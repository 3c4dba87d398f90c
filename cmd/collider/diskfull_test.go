package main

// The disk-full tests: each fills a real small filesystem (a tmpfs the test
// mounts, as root, in CI too) while an operation needs room — a load, a
// model run, publishing, an export, a lead action — and checks that the
// operation fails whole with an error that says the disk is full and where,
// that the server goes on answering reads, that every action acknowledged
// before stays, and that once the room is freed the next run ends exactly
// where an uninterrupted store does, with every invariant holding.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"collider/store/storetest"
)

var (
	provinceOnce sync.Once
	provinceDir  string
	baselineOnce sync.Once
	baseline     []string
)

// sharedProvince is one generated province for the disk-full tests.
func sharedProvince(t *testing.T) string {
	t.Helper()
	provinceOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(binary), "province")
		if r := collider(t, nil, "gen", "--out", dir, "--settlements", "120000", "--seed", "31"); r.code == 0 {
			provinceDir = dir
		} else {
			t.Log(r.stderr)
		}
	})
	if provinceDir == "" {
		t.Fatal("the shared province was not generated")
	}
	return provinceDir
}

// stage loads two of three settlements deliveries into data and publishes
// batch 1, then lays the third into the inbox.
func stage(t *testing.T, data, inbox string) {
	t.Helper()
	province := sharedProvince(t)
	splitSettlements(t, province, inbox, 3, 2)
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatalf("first run: %d %s", r.code, r.stderr)
	}
	splitSettlements(t, province, inbox, 3, 3)
}

// uninterrupted is what a store issues over the staged deliveries when
// nothing goes wrong: the pairs every disk-full test must end with.
func uninterrupted(t *testing.T) []string {
	t.Helper()
	baselineOnce.Do(func() {
		dir := t.TempDir()
		data, inbox := filepath.Join(dir, "data"), filepath.Join(dir, "inbox")
		stage(t, data, inbox)
		if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 {
			t.Fatalf("baseline run: %d %s", r.code, r.stderr)
		}
		baseline = issuedPairs(t, data)
	})
	if len(baseline) == 0 {
		t.Fatal("no baseline")
	}
	return baseline
}

// runRecord is a run as GET /api/v1/runs/{id} shows it.
type runRecord struct {
	ID      int64  `json:"run_id"`
	Status  string `json:"status"`
	Error   string `json:"error"`
	BatchID *int64 `json:"batch_id"`
	Steps   []struct {
		Name   string `json:"name"`
		Detail string `json:"detail"`
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"steps"`
}

// runToEnd starts a run through the API and waits for its end.
func runToEnd(t *testing.T, s *server, token string) runRecord {
	t.Helper()
	code, body := s.do(t, "POST", "/api/v1/runs", token, nil)
	var r runRecord
	if json.Unmarshal(body, &r); code != http.StatusAccepted {
		t.Fatalf("trigger: %d %s", code, body)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for r.Status == "running" || r.Status == "" {
		if time.Now().After(deadline) {
			t.Fatalf("run %d did not end", r.ID)
		}
		time.Sleep(50 * time.Millisecond)
		_, body = s.do(t, "GET", fmt.Sprintf("/api/v1/runs/%d", r.ID), token, nil)
		json.Unmarshal(body, &r)
	}
	return r
}

// failedStep is the run's failed step.
func (r runRecord) failedStep(t *testing.T) (name, detail, err string) {
	t.Helper()
	for _, st := range r.Steps {
		if st.Status == "failed" {
			return st.Name, st.Detail, st.Error
		}
	}
	t.Fatalf("run %d has no failed step: %+v", r.ID, r.Steps)
	return
}

// readsAnswer checks that the server answers the reads that need no write
// (a view of unmasked personal data needs its audit line, and is refused
// while that cannot be written).
func readsAnswer(t *testing.T, s *server, token string) {
	t.Helper()
	for _, path := range []string{"/api/v1/batches", "/api/v1/leads?limit=50", "/api/v1/metrics?by=city", "/api/v1/me", "/healthz"} {
		if code, body := s.do(t, "GET", path, token, nil); code != http.StatusOK {
			t.Fatalf("GET %s on a full disk: %d %s", path, code, body)
		}
	}
}

// endsLikeUninterrupted stops the server and checks the store: the issued
// pairs of an uninterrupted store, every invariant holding.
func endsLikeUninterrupted(t *testing.T, s *server, data string) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, s.log)
	}
	if got, want := issuedPairs(t, data), uninterrupted(t); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after the disk was freed the store issued %d pairs; an uninterrupted one %d", len(got), len(want))
	}
	mustCheck(t, data)
}

// The disk fills while a delivery loads: the run fails saying so and where,
// the delivery is rolled back and not recorded as failed (it is not its
// fault), and the next run after room is freed loads it.
func TestDiskFull_Load(t *testing.T) {
	mnt := storetest.MountTmpfs(t, "256m")
	data, inbox := filepath.Join(mnt, "data"), filepath.Join(t.TempDir(), "inbox")
	stage(t, data, inbox)
	token := addUser(t, data, "province", "")
	s := startServe(t, data, inbox, "off")
	free := storetest.Fill(t, mnt, 32<<10)
	r := runToEnd(t, s, token)
	name, detail, msg := r.failedStep(t)
	if r.Status != "failed" || name != "load" || detail != "settlements/0003" ||
		!strings.Contains(msg, "the disk is full") || !strings.Contains(msg, data) || !strings.Contains(r.Error, "the disk is full") {
		t.Fatalf("run on a full disk: %+v", r)
	}
	t.Logf("run %d: %s", r.ID, r.Error)
	readsAnswer(t, s, token)
	free()
	if r := runToEnd(t, s, token); r.Status != "succeeded" {
		t.Fatalf("the run after freeing: %+v", r)
	}
	endsLikeUninterrupted(t, s, data)
	st := openForCheck(t, data)
	defer st.Close()
	var failed, loaded int
	st.DB.QueryRow("SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'loaded') FROM deliveries WHERE feed = 'settlements' AND name = '0003'").Scan(&failed, &loaded)
	if failed != 0 || loaded != 1 {
		t.Fatalf("settlements/0003: %d failed, %d loaded records", failed, loaded)
	}
}

// The temp directory fills while the night spills into it: the run fails at
// the step that spilled first (the scope's copies of the night's persons, or
// a model) saying where, and once room is freed the same server spills
// again (DuckDB reads the room once; the store makes it read it again).
func TestDiskFull_ModelRun(t *testing.T) {
	mnt := storetest.MountTmpfs(t, "256m")
	dir := t.TempDir()
	data, inbox := filepath.Join(dir, "data"), filepath.Join(dir, "inbox")
	stage(t, data, inbox)
	if r := collider(t, nil, "load", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatalf("load: %d %s", r.code, r.stderr)
	}
	token := addUser(t, data, "province", "")
	spill := filepath.Join(mnt, "tmp")
	s := startServe(t, data, inbox, "off", "--memory-limit", "64MB", "--temp-dir", spill)
	free := storetest.Fill(t, mnt, 0)
	r := runToEnd(t, s, token)
	name, _, msg := r.failedStep(t)
	if r.Status != "failed" || (name != "scope" && name != "model") || !strings.Contains(msg, "the disk is full") || !strings.Contains(msg, "could not spill to its temp directory "+spill) {
		t.Fatalf("run on a full temp directory: %+v", r)
	}
	t.Logf("run %d: %s", r.ID, r.Error)
	readsAnswer(t, s, token)
	free()
	if r := runToEnd(t, s, token); r.Status != "succeeded" {
		t.Fatalf("the run after freeing: %+v", r)
	}
	endsLikeUninterrupted(t, s, data)
}

// The disk fills while a batch is published: no batch, no clue, no lead of
// it; the run says where; the next run publishes it whole.
func TestDiskFull_Publish(t *testing.T) {
	mnt := storetest.MountTmpfs(t, "256m")
	data, inbox := filepath.Join(mnt, "data"), filepath.Join(t.TempDir(), "inbox")
	stage(t, data, inbox)
	if r := collider(t, nil, "load", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatalf("load: %d %s", r.code, r.stderr)
	}
	token := addUser(t, data, "province", "")
	s := startServe(t, data, inbox, "off")
	// The drafts' snapshot a new store gets at start is written to the same
	// disk: the disk is filled once it is done, so that the run is what
	// meets the full disk (the snapshot, still writing, took the room left
	// before the run could start).
	s.waitLog(t, "sandbox snapshot refreshed", time.Minute)
	free := storetest.Fill(t, mnt, 32<<10)
	r := runToEnd(t, s, token)
	// The run fails where the casebook first needs room: publishing, or
	// already recording a step (the drafts' snapshot, on the same disk,
	// fails before as a step of its own, which does not fail the run).
	if r.Status != "failed" || r.BatchID != nil ||
		!strings.Contains(r.Error, "the disk is full") || !strings.Contains(r.Error, filepath.Join(data, "casebook.duckdb.wal")) {
		t.Fatalf("run on a full disk: %+v", r)
	}
	t.Logf("run %d: %s", r.ID, r.Error)
	readsAnswer(t, s, token)
	var batches struct{ Items []json.RawMessage }
	if _, body := s.do(t, "GET", "/api/v1/batches", token, nil); json.Unmarshal(body, &batches) != nil || len(batches.Items) != 1 {
		t.Fatalf("batches after a failed publish: %s", body)
	}
	free()
	if r := runToEnd(t, s, token); r.Status != "succeeded" || r.BatchID == nil || *r.BatchID != 3 {
		t.Fatalf("the run after freeing: %+v", r) // batch 2's id went with the rolled-back publish
	}
	endsLikeUninterrupted(t, s, data)
}

// The disk an export goes to is full: the export fails saying so and
// where, leaves no file, and is audited as interrupted; once room is freed
// it writes the same bytes an export to a roomy disk does.
func TestDiskFull_Export(t *testing.T) {
	mnt := storetest.MountTmpfs(t, "16m")
	dir := t.TempDir()
	data, inbox := filepath.Join(dir, "data"), filepath.Join(dir, "inbox")
	stage(t, data, inbox)
	free := storetest.Fill(t, mnt, 0)
	for _, format := range []string{"csv", "parquet", "xlsx"} {
		out := filepath.Join(mnt, "batch-1."+format)
		r := collider(t, nil, "export", "--data", data, "--batch", "1", "--format", format, "--out", out)
		if r.code != 1 || !strings.Contains(r.stderr, "the disk is full: could not write "+out) {
			t.Fatalf("%s export to a full disk: %d %s", format, r.code, r.stderr)
		}
		t.Logf("%s: %s", format, strings.TrimSpace(r.stderr))
	}
	if entries, _ := os.ReadDir(mnt); len(entries) != 1 {
		t.Fatalf("failed exports left files: %v", entries)
	}
	st := openForCheck(t, data)
	var interrupted int
	st.DB.QueryRow(`SELECT count(*) FROM casebook.audit WHERE action = 'download' AND detail LIKE 'interrupted:%no space left on device%'`).Scan(&interrupted)
	st.Close()
	if interrupted != 3 {
		t.Fatalf("%d interrupted downloads audited, want 3", interrupted)
	}
	free()
	for _, format := range []string{"csv", "parquet"} {
		out, roomy := filepath.Join(mnt, "batch-1."+format), filepath.Join(dir, "batch-1."+format)
		for _, path := range []string{out, roomy} {
			if r := collider(t, nil, "export", "--data", data, "--batch", "1", "--format", format, "--out", path); r.code != 0 {
				t.Fatalf("%s export after freeing: %d %s", format, r.code, r.stderr)
			}
		}
		a, _ := os.ReadFile(out)
		b, _ := os.ReadFile(roomy)
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("%s: the export after freeing (%d bytes) differs from one to a roomy disk (%d bytes)", format, len(a), len(b))
		}
	}
	mustCheck(t, data)
}

// The disk fills while a city bureau acts on its leads: the actions that
// still find room (a log's last page has some) are acknowledged, the first
// that does not answers 507 saying where and changes nothing; lists and
// batches are still served, and a view of a person's data is either
// audited or refused, never shown unaudited; once room is freed the
// refused action goes through, and every acknowledged action is there
// after a SIGKILL.
func TestDiskFull_LeadAction(t *testing.T) {
	mnt := storetest.MountTmpfs(t, "256m")
	data, inbox := filepath.Join(mnt, "data"), filepath.Join(t.TempDir(), "inbox")
	stage(t, data, inbox)
	var city string
	func() {
		st := openForCheck(t, data)
		defer st.Close()
		st.DB.QueryRow(`SELECT city_code FROM casebook.leads WHERE city_code NOT LIKE '__0000' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1`).Scan(&city)
	}()
	bureau := addUser(t, data, "city", city)
	s := startServe(t, data, inbox, "off")
	var page struct {
		Items []struct {
			ID int64 `json:"lead_id"`
		} `json:"items"`
	}
	if _, body := s.do(t, "GET", "/api/v1/leads?status=new&limit=40", bureau, nil); json.Unmarshal(body, &page) != nil || len(page.Items) < 5 {
		t.Fatalf("leads: %s", body)
	}
	// Each lead through the workflow: accept, investigate, close.
	type action struct {
		lead int64
		name string
	}
	var todo []action
	for _, name := range []string{"accept", "investigate", "close"} {
		for _, l := range page.Items {
			todo = append(todo, action{l.ID, name})
		}
	}
	bodies := map[string]string{"accept": `{"action":"accept"}`, "investigate": `{"action":"investigate"}`,
		"close": `{"action":"close","outcome":"dismissed","note":"核查无误"}`}
	do := func(a action) (int, []byte) {
		return s.do(t, "POST", fmt.Sprintf("/api/v1/leads/%d/events", a.lead), bureau, strings.NewReader(bodies[a.name]))
	}
	var acked []action
	for _, a := range todo[:3] {
		if code, body := do(a); code != http.StatusCreated {
			t.Fatalf("%s %d: %d %s", a.name, a.lead, code, body)
		}
		acked = append(acked, a)
	}
	free := storetest.Fill(t, mnt, 0)
	var refused action
	for _, a := range todo[3:] {
		code, body := do(a)
		if code == http.StatusCreated {
			acked = append(acked, a)
			continue
		}
		var e apiErrorBody
		json.Unmarshal(body, &e)
		if code != http.StatusInsufficientStorage || e.Error.Code != "disk_full" || !strings.Contains(e.Error.Message, "the disk is full") ||
			!strings.Contains(e.Error.Message, filepath.Join(data, "casebook.duckdb.wal")) {
			t.Fatalf("an action on a full disk: %d %s", code, body)
		}
		t.Logf("%s lead %d on a full disk (%d acknowledged after the disk filled): %d %s", a.name, a.lead, len(acked)-3, code, e.Error.Message)
		refused = a
		break
	}
	if refused.lead == 0 {
		t.Fatalf("all %d actions found room on a full disk", len(acked)-3)
	}
	readsAnswer(t, s, bureau)
	// Every view answered is audited once: its line waits in the audit
	// writer until the disk has room (the events read views the lead too).
	views := 0
	evCode, before := s.do(t, "GET", fmt.Sprintf("/api/v1/leads/%d/events", refused.lead), bureau, nil)
	if strings.Contains(string(before), `"action":"`+refused.name+`"`) {
		t.Fatalf("the refused %s is among lead %d's events: %s", refused.name, refused.lead, before)
	}
	if evCode == http.StatusOK {
		views++
	}
	code := 0
	if code, _ = s.do(t, "GET", fmt.Sprintf("/api/v1/leads/%d", refused.lead), bureau, nil); code == http.StatusOK {
		views++
	} else if code != http.StatusInsufficientStorage {
		t.Fatalf("a view of personal data on a full disk: %d", code)
	}
	free()
	if code, body := do(refused); code != http.StatusCreated {
		t.Fatalf("%s %d after freeing: %d %s", refused.name, refused.lead, code, body)
	}
	acked = append(acked, refused)
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	st := openForCheck(t, data)
	for _, a := range acked {
		var n int
		st.DB.QueryRow(`SELECT count(*) FROM casebook.lead_events WHERE lead_id = ? AND action = ?`, a.lead, a.name).Scan(&n)
		if n != 1 {
			t.Fatalf("the acknowledged %s of lead %d is there %d times", a.name, a.lead, n)
		}
	}
	var audited int
	st.DB.QueryRow(`SELECT count(*) FROM casebook.audit WHERE action = 'view' AND object = ?`, fmt.Sprintf("lead %d", refused.lead)).Scan(&audited)
	st.Close()
	if audited != views {
		t.Fatalf("%d views answered on a full disk (the lead %d, its events %d) are audited %d times", views, code, evCode, audited)
	}
	t.Logf("%d acknowledged actions kept; the view on a full disk answered %d", len(acked), code)
	mustCheck(t, data)
}

type apiErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}
