package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The backup benchmark at a tiny size: it times the snapshot, the writing,
// the verifying, the restore and the check of the restored store, and says
// how big the backup is next to the store.
func TestBench_BackupTimesEveryStep(t *testing.T) {
	dir := t.TempDir()
	inbox, data := filepath.Join(dir, "inbox"), filepath.Join(dir, "data")
	if r := collider(t, nil, "gen", "--out", inbox, "--settlements", "3000"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := collider(t, nil, "bench", "backup", "--data", data, "--dir", filepath.Join(dir, "work"), "--memory-limit", "1GB")
	if r.code != 0 {
		t.Fatalf("bench backup: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Log("\n" + r.stdout)
	for _, name := range []string{"snapshot", "write", "verify", "restore", "check"} {
		if !regexp.MustCompile(`(?m)^` + name + `\s+\d+\.\d\s`).MatchString(r.stdout) {
			t.Errorf("no %s step:\n%s", name, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "all 5 invariants hold") || !regexp.MustCompile(`backup \d+(\.\d)? MiB \(\d+\.\d\dx the store\), taken in \d+\.\d s`).MatchString(r.stdout) {
		t.Errorf("no summary:\n%s", r.stdout)
	}
}
