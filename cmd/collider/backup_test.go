package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"collider/store"
)

// rowsByID dumps a table as id → the whole row as text.
func rowsByID(t *testing.T, data, table, id string) map[int64]string {
	t.Helper()
	s := openForCheck(t, data)
	defer s.Close()
	rows, err := s.DB.Query(fmt.Sprintf("SELECT %s, CAST(t AS VARCHAR) FROM %s t", id, table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var k int64
		var v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// A backup taken through the server while a run is busy, restored into a
// new directory: collider check passes; every lead, event and audit row of
// the restore equals the source's, and the source's others all came after
// the backup (the run's batch, the backup's own audit line); and a run on
// the restored store ends where the source's did.
func TestBackup_TakenMidRunRestoresEqual(t *testing.T) {
	dir := t.TempDir()
	generated := filepath.Join(dir, "generated")
	if r := collider(t, nil, "gen", "--out", generated, "--settlements", "400000", "--seed", "21"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	inbox, data := filepath.Join(dir, "inbox"), filepath.Join(dir, "data")
	splitSettlements(t, generated, inbox, 4, 1)
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatalf("first run: %d %s", r.code, r.stderr)
	}
	var city string
	func() {
		s := openForCheck(t, data)
		defer s.Close()
		if err := s.DB.QueryRow(`SELECT city_code FROM casebook.leads WHERE city_code NOT LIKE '__0000' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1`).Scan(&city); err != nil {
			t.Fatal(err)
		}
	}()
	bureau := addUser(t, data, "city", city)
	province := addUser(t, data, "province", "")
	admin := addUser(t, data, "admin", "")
	tokenFile := filepath.Join(dir, "admin.token")
	os.WriteFile(tokenFile, []byte(admin+"\n"), 0o600)

	srv := startServe(t, data, inbox, "off", "--threads", "1")
	// The bureau works some leads before the backup: acknowledged actions.
	var page struct {
		Items []struct {
			ID int64 `json:"lead_id"`
		} `json:"items"`
	}
	if code, body := srv.do(t, "GET", "/api/v1/leads?limit=6", bureau, nil); code != 200 || json.Unmarshal(body, &page) != nil || len(page.Items) < 6 {
		t.Fatalf("leads: %d %s", code, body)
	}
	acked := 0
	for i, l := range page.Items {
		actions := []string{`{"action":"accept"}`, `{"action":"investigate"}`, `{"action":"close","outcome":"confirmed","recovered_amount":88.5,"note":"属实，已追回"}`}
		if i%2 == 1 {
			actions = []string{`{"action":"return","note":"非本市机构"}`}
		}
		for _, a := range actions {
			if code, body := srv.do(t, "POST", fmt.Sprintf("/api/v1/leads/%d/events", l.ID), bureau, strings.NewReader(a)); code != http.StatusCreated {
				t.Fatalf("lead %d %s: %d %s", l.ID, a, code, body)
			}
			acked++
		}
		srv.do(t, "GET", fmt.Sprintf("/api/v1/leads/%d", l.ID), bureau, nil) // an audited view
	}

	// Three more deliveries arrive and a run starts; the backup is taken
	// while it loads them.
	splitSettlements(t, generated, inbox, 4, 4)
	code, body := srv.do(t, "POST", "/api/v1/runs", province, nil)
	var run runJSON
	if json.Unmarshal(body, &run); code != http.StatusAccepted {
		t.Fatalf("trigger: %d %s", code, body)
	}
	for {
		_, body := srv.do(t, "GET", fmt.Sprintf("/api/v1/runs/%d", run.ID), province, nil)
		var r runJSON
		json.Unmarshal(body, &r)
		if r.Status != "running" {
			t.Fatalf("the run ended before the backup: %s", body)
		}
		if r.Progress != nil && r.Progress.Step == "load" && r.Progress.Done > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	file := filepath.Join(dir, "mid-run.tar")
	r := collider(t, nil, "backup", "--server", srv.base, "--token-file", tokenFile, "--out", file)
	if r.code != 0 || lastLine(r.stdout) != file {
		t.Fatalf("backup through the server: %d %s %s", r.code, r.stdout, r.stderr)
	}
	t.Log(r.stderr)
	waitRun(t, srv, province, run.ID, 5*time.Minute)
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, srv.log)
	}

	restored := filepath.Join(dir, "restored")
	r = collider(t, nil, "restore", "--from", file, "--data", restored)
	if r.code != 0 || lastLine(r.stdout) != "all 5 invariants hold" {
		t.Fatalf("restore: %d %s %s", r.code, r.stdout, r.stderr)
	}
	mustCheck(t, restored)
	// The backup caught the run running: the restore holds it so.
	if runs := rowsByID(t, restored, "casebook.runs", "run_id"); !strings.Contains(runs[run.ID], "running") {
		t.Fatalf("the restored store does not hold run %d as running: %q", run.ID, runs[run.ID])
	}
	for _, tc := range []struct{ table, id string }{{"casebook.leads", "lead_id"}, {"casebook.lead_events", "event_id"}, {"casebook.audit", "audit_id"}, {"casebook.clues", "clue_id"}} {
		src, got := rowsByID(t, data, tc.table, tc.id), rowsByID(t, restored, tc.table, tc.id)
		var last int64
		for id, row := range got {
			if src[id] != row {
				t.Fatalf("%s %d differs:\nrestored %s\nsource   %s", tc.table, id, row, src[id])
			}
			last = max(last, id)
		}
		later := 0
		for id := range src {
			if _, ok := got[id]; !ok {
				if id < last {
					t.Fatalf("%s %d of the source is missing from the restore", tc.table, id)
				}
				later++
			}
		}
		t.Logf("%s: %d rows restored equal to the source's; %d rows came after the backup", tc.table, len(got), later)
		if len(got) == 0 || later == 0 {
			t.Fatalf("%s: %d restored, %d later: the backup was not taken mid-run", tc.table, len(got), later)
		}
	}
	events := rowsByID(t, restored, "casebook.lead_events", "event_id")
	closes := 0
	for _, e := range events {
		if strings.Contains(e, "属实，已追回") {
			closes++
		}
	}
	if closes != 3 {
		t.Fatalf("%d acknowledged closes in the restore, want 3", closes)
	}
	// The restored store takes up where the backup left it: its next run
	// issues exactly what the source's run did.
	if r := collider(t, nil, "run", "--data", restored, "--inbox", inbox); r.code != 0 {
		t.Fatalf("run on the restored store: %d %s", r.code, r.stderr)
	}
	if got, want := issuedPairs(t, restored), issuedPairs(t, data); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after a run the restored store issued %d pairs, the source %d", len(got), len(want))
	}
	mustCheck(t, restored)
}

// collider backup from the files is audited and kept in the history, and
// refuses a store the server holds, naming the way through it; collider restore refuses a truncated file and a
// directory that holds a store, leaving nothing behind.
func TestBackup_CommandLineRefusals(t *testing.T) {
	dir := t.TempDir()
	inbox, data := filepath.Join(dir, "inbox"), filepath.Join(dir, "data")
	if r := collider(t, nil, "gen", "--out", inbox, "--settlements", "3000"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatal(r.stderr)
	}
	file := filepath.Join(dir, "b.tar")
	if r := collider(t, nil, "backup", "--data", data, "--out", file); r.code != 0 || lastLine(r.stdout) != file {
		t.Fatalf("backup: %d %s", r.code, r.stderr)
	}
	srv := startServe(t, data, inbox, "off")
	r := collider(t, nil, "backup", "--data", data, "--out", filepath.Join(dir, "c.tar"))
	if r.code != 1 || !strings.Contains(r.stderr, "in use") || !strings.Contains(r.stderr, "collider backup --server") {
		t.Fatalf("backup beside the server: %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "c.tar")); err == nil {
		t.Fatal("a refused backup left a file")
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	st := openForCheck(t, data)
	var audited, recorded int
	st.DB.QueryRow("SELECT count(*) FROM casebook.audit WHERE action = 'download' AND object = 'backup' AND detail LIKE ? || '%'", file).Scan(&audited)
	st.DB.QueryRow("SELECT count(*) FROM casebook.backups WHERE trigger = 'cli' AND status = 'succeeded' AND file = ?", file).Scan(&recorded)
	st.Close()
	if audited != 1 || recorded != 1 {
		t.Fatalf("the command line's backup is audited %d times and in the history %d times", audited, recorded)
	}

	b, _ := os.ReadFile(file)
	cut := filepath.Join(dir, "cut.tar")
	os.WriteFile(cut, b[:len(b)*2/3], 0o600)
	target := filepath.Join(dir, "restored")
	r = collider(t, nil, "restore", "--from", cut, "--data", target)
	if r.code != 1 || !strings.Contains(r.stderr, cut) || !strings.Contains(r.stderr, "truncated") {
		t.Fatalf("restore of a truncated file: %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("a refused restore left its directory")
	}
	r = collider(t, nil, "restore", "--from", file, "--data", data)
	if r.code != 1 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("restore over a store: %d %s", r.code, r.stderr)
	}
	t.Log(r.stderr)
}

// Scheduled backups: the server takes them on its cron schedule into
// backup_dir, keeps the newest backup_keep, and keeps each in the history
// GET /api/v1/backups shows; every file kept is a whole backup.
func TestBackup_ScheduleKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	inbox, data, backups := filepath.Join(dir, "inbox"), filepath.Join(dir, "data"), filepath.Join(dir, "backups")
	if r := collider(t, nil, "gen", "--out", inbox, "--settlements", "3000"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatal(r.stderr)
	}
	admin := addUser(t, data, "admin", "")
	s := startServe(t, data, inbox, "off", "--backup-schedule", "*/2 * * * * *", "--backup-dir", backups, "--backup-keep", "2")
	type record struct {
		Trigger, Status, File, Error string
	}
	var history struct{ Items []record }
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, body := s.do(t, "GET", "/api/v1/backups", admin, nil)
		if err := json.Unmarshal(body, &history); err != nil {
			t.Fatalf("%v %s", err, body)
		}
		if len(history.Items) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d scheduled backups in 90 s\n%s", len(history.Items), s.log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, s.log)
	}
	for _, h := range history.Items {
		if h.Trigger != "schedule" || h.Status != "succeeded" || !strings.HasPrefix(h.File, filepath.Join(backups, "collider-backup-")) {
			t.Fatalf("history: %+v", h)
		}
	}
	files, _ := filepath.Glob(filepath.Join(backups, "*"))
	if len(files) != 2 {
		t.Fatalf("backup_dir holds %v, want the newest 2", files)
	}
	newest := map[string]bool{}
	final := historyAfterStop(t, data)
	for _, f := range final[:2] {
		newest[f] = true
	}
	for _, f := range files {
		if !newest[f] {
			t.Fatalf("%s is kept but is not among the newest two backups %v", f, final[:2])
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = store.VerifyBackup(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

// historyAfterStop lists the files of the succeeded backups, newest first.
func historyAfterStop(t *testing.T, data string) []string {
	t.Helper()
	s := openForCheck(t, data)
	defer s.Close()
	rows, err := s.DB.Query("SELECT file FROM casebook.backups WHERE status = 'succeeded' ORDER BY backup_id DESC")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var f string
		rows.Scan(&f)
		out = append(out, f)
	}
	return out
}

// The backup settings come like every other: flag over environment over file.
func TestConfig_BackupSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "collider.yaml")
	os.WriteFile(file, []byte("data: /d\nbackup_schedule: \"0 3 * * *\"\nbackup_dir: /from/file\nbackup_keep: 3\n"), 0o644)
	t.Setenv("COLLIDER_CONFIG", file)
	cfg, err := loadConfig(nil)
	if err != nil || cfg.BackupSchedule != "0 3 * * *" || cfg.BackupDir != "/from/file" || cfg.BackupKeep != 3 {
		t.Fatalf("file: %+v %v", cfg, err)
	}
	t.Setenv("COLLIDER_BACKUP_DIR", "/from/env")
	t.Setenv("COLLIDER_BACKUP_KEEP", "5")
	fs := newFlagSet()
	cfg, err = parseWithConfig(fs, []string{"--backup-keep", "9"}, func(c *Config, fs *flag.FlagSet) { c.serviceFlags(fs); c.backupFlags(fs) })
	if err != nil || cfg.BackupSchedule != "0 3 * * *" || cfg.BackupDir != "/from/env" || cfg.BackupKeep != 9 {
		t.Fatalf("env and flags: %+v %v", cfg, err)
	}
	if cfg.BackupKeep = 0; cfg.validate() == nil {
		t.Fatal("backup_keep 0 accepted")
	}
	cfg = defaultConfig()
	cfg.Data = "/d"
	if cfg.BackupSchedule != "off" || cfg.BackupKeep != 7 || cfg.backupDir() != "/d/backups" {
		t.Fatalf("defaults: %+v %s", cfg, cfg.backupDir())
	}
}
