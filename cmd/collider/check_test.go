package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// mustCheck runs `collider check --data data` and fails the test with its
// report unless every invariant holds.
func mustCheck(t *testing.T, data string) {
	t.Helper()
	r := collider(t, nil, "check", "--data", data)
	if r.code != 0 || lastLine(r.stdout) != "all 5 invariants hold" {
		t.Fatalf("collider check --data %s: exit %d\n%s%s", data, r.code, r.stdout, r.stderr)
	}
}

// collider check exits 0 on a store whose invariants hold, 1 naming what
// breaks one, and 2 when there is no store to check.
func TestCheck_ExitsByWhatItFinds(t *testing.T) {
	dir := t.TempDir()
	inbox, data := filepath.Join(dir, "inbox"), filepath.Join(dir, "data")
	if r := collider(t, nil, "gen", "--out", inbox, "--settlements", "3000", "--bad"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 3 {
		t.Fatalf("run: %d %s", r.code, r.stderr)
	}
	mustCheck(t, data)

	s := openForCheck(t, data)
	if _, err := s.DB.ExecContext(context.Background(), `UPDATE casebook.leads SET status = 'closed' WHERE lead_id = 1`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r := collider(t, nil, "check", "--data", data)
	if r.code != 1 || !strings.Contains(r.stdout, "BROKEN  events_follow_the_workflow") || !strings.Contains(r.stdout, "lead 1 is closed but its last event left it new") ||
		lastLine(r.stdout) != "1 of 5 invariants broken" {
		t.Fatalf("a broken store: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Log(r.stdout)
	if r := collider(t, nil, "check", "--data", filepath.Join(dir, "nothing")); r.code != 2 || !strings.Contains(r.stderr, "no store in") {
		t.Fatalf("no store: exit %d %s", r.code, r.stderr)
	}
}
