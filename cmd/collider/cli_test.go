package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The script contract: `collider run` prints the batch id alone on the last
// line and exits 3 when some deliveries failed; `collider batches` lists
// batches oldest first with the id first; `users add` prints the token last;
// `export` writes the batch as CSV with a BOM.
func TestCLI_RunBatchesUsersExport(t *testing.T) {
	dir := t.TempDir()
	inbox, data := filepath.Join(dir, "inbox"), filepath.Join(dir, "data")
	if r := collider(t, nil, "gen", "--out", inbox, "--settlements", "5000", "--bad"); r.code != 0 {
		t.Fatalf("gen: %d %s", r.code, r.stderr)
	}
	r := collider(t, nil, "run", "--data", data, "--inbox", inbox)
	if r.code != 3 || lastLine(r.stdout) != "1" {
		t.Fatalf("run: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	for _, bad := range []string{"9002-wrong-schema", "9003-corrupt"} {
		if !strings.Contains(r.stderr, bad) {
			t.Errorf("stderr does not name the failed delivery %s", bad)
		}
	}
	r = collider(t, nil, "run", "--data", data, "--inbox", inbox)
	if r.code != 0 || lastLine(r.stdout) != "2" {
		t.Fatalf("second run: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	// Nothing new: every model examined nobody; --full examines everything
	// again, and finds nothing it has not issued.
	if n := strings.Count(r.stderr, " 0 persons "); n != 5 {
		t.Fatalf("second run: %d models examined 0 persons, want 5:\n%s", n, r.stderr)
	}
	r = collider(t, nil, "run", "--data", data, "--inbox", inbox, "--full")
	if r.code != 0 || lastLine(r.stdout) != "3" || strings.Count(r.stderr, " in full ") != 5 || !strings.Contains(r.stderr, "batch 3 published: 0 clues") {
		t.Fatalf("run --full: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	r = collider(t, nil, "batches", "--data", data)
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if !strings.HasPrefix(line, "#") {
			ids = append(ids, strings.Fields(line)[0])
		}
	}
	if r.code != 0 || strings.Join(ids, ",") != "1,2,3" {
		t.Fatalf("batches: %d %q", r.code, r.stdout)
	}
	r = collider(t, nil, "users", "add", "--data", data, "--role", "city", "--city", "620100", "--name", "兰州市医保局")
	if r.code != 0 || !strings.HasPrefix(lastLine(r.stdout), "col_") {
		t.Fatalf("users add: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := collider(t, nil, "users", "add", "--data", data, "--role", "city", "--name", "x"); r.code == 0 {
		t.Fatal("a city user without a city was added")
	}
	out := filepath.Join(dir, "batch1.csv")
	if r := collider(t, nil, "export", "--data", data, "--batch", "1", "--format", "csv", "--out", out); r.code != 0 {
		t.Fatalf("export: %d %s", r.code, r.stderr)
	}
	b, _ := os.ReadFile(out)
	if !strings.HasPrefix(string(b), "\uFEFFclue_id,batch_id,model,model_version,severity,score,reasons,person_id") {
		t.Fatalf("export starts %q", string(b[:min(len(b), 80)]))
	}
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(b), "\uFEFF"))).ReadAll()
	if err != nil || len(recs) < 10 {
		t.Fatalf("%d rows, %v", len(recs), err)
	}
	if r := collider(t, nil, "export", "--data", data, "--batch", "99", "--format", "csv", "--out", filepath.Join(dir, "x.csv")); r.code == 0 {
		t.Fatal("export of a missing batch succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "x.csv")); err == nil {
		t.Fatal("a failed export left a file")
	}
}

// Configuration precedence: flags over environment over the file.
func TestConfig_FlagsOverEnvironmentOverFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "collider.yaml")
	os.WriteFile(file, []byte("data: /from/file\ninbox: /inbox/file\nschedule: \"0 3 * * *\"\nthreads: 3\n"), 0o644)
	t.Setenv("COLLIDER_CONFIG", file)
	t.Setenv("COLLIDER_INBOX", "/inbox/env")
	cfg, err := loadConfig([]string{"--data", "/from/flag"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Data != "/from/file" || cfg.Inbox != "/inbox/env" || cfg.Schedule != "0 3 * * *" || cfg.Threads != 3 {
		t.Fatalf("file and env: %+v", cfg)
	}
	fs := newFlagSet()
	cfg, err = parseWithConfig(fs, []string{"--data", "/from/flag", "--threads", "1"}, (*Config).serviceFlags)
	if err != nil || cfg.Data != "/from/flag" || cfg.Inbox != "/inbox/env" || cfg.Threads != 1 {
		t.Fatalf("flags: %+v %v", cfg, err)
	}
	os.WriteFile(file, []byte("data: x\nno_such_setting: 1\n"), 0o644)
	if _, err := loadConfig(nil); err == nil || !strings.Contains(err.Error(), "no_such_setting") {
		t.Fatalf("unknown setting: %v", err)
	}
}

// The binary carries the shipped alert rules and dashboard, byte for byte.
func TestCLI_MonitorPrintsTheShippedRulesAndDashboard(t *testing.T) {
	for what, file := range map[string]string{"alerts": "../../deploy/prometheus/alerts.yml", "dashboard": "../../deploy/grafana/collider.json"} {
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		r := collider(t, nil, "monitor", what)
		if r.code != 0 || r.stdout != string(want) {
			t.Errorf("monitor %s: exit %d, %d bytes, want the %d of %s", what, r.code, len(r.stdout), len(want), file)
		}
	}
	if r := collider(t, nil, "monitor", "rules"); r.code != 2 || !strings.Contains(r.stderr, "alerts|dashboard") {
		t.Errorf("monitor rules: exit %d, %s", r.code, r.stderr)
	}
}
