package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The lifecycle from the command line, against a real server: a changed
// file of --models DIR becomes a pending draft, never live by itself; a
// modeler submits; the province approves, rejects and rolls back; the
// history names each step.
func TestModels_LifecycleFromTheCommandLine(t *testing.T) {
	dir := t.TempDir()
	inbox, data, mdir := filepath.Join(dir, "inbox"), filepath.Join(dir, "data"), filepath.Join(dir, "models")
	if r := collider(t, nil, "gen", "--out", inbox, "--settlements", "3000"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 0 {
		t.Fatal(r.stderr)
	}
	// A --models directory whose deceased_claims differs from the shipped one.
	shipped, err := os.ReadFile("../../models/deceased_claims.sql")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(mdir, 0o755)
	changed := strings.Replace(string(shipped), "--     default: 0", "--     default: 3", 1)
	if err := os.WriteFile(filepath.Join(mdir, "deceased_claims.sql"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	province, modeler := addUser(t, data, "province", ""), addUser(t, data, "modeler", "")
	tokens := map[string]string{}
	for role, tok := range map[string]string{"province": province, "modeler": modeler} {
		f := filepath.Join(dir, role+".token")
		os.WriteFile(f, []byte(tok), 0o600)
		tokens[role] = f
	}
	s := startServe(t, data, inbox, "off", "--models", mdir)
	as := func(role string, args ...string) result {
		return collider(t, nil, append(append([]string{"models"}, args...), "--server", s.base, "--token-file", tokens[role])...)
	}
	// The file is previewed and submitted in the background, once the
	// sandbox's snapshot is there.
	var pending result
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if pending = as("province", "pending"); pending.code == 0 && strings.Contains(pending.stdout, "from "+mdir) {
			break
		}
	}
	fileDraft := regexp.MustCompile(`(?m)^(\d+)\s+deceased_claims\s+\w{12}\s+pass\s.*from ` + regexp.QuoteMeta(mdir)).FindStringSubmatch(pending.stdout)
	if fileDraft == nil {
		t.Fatalf("the changed file is not a pending draft:\n%s\n%s", pending.stdout, s.log)
	}
	h := as("modeler", "history", "deceased_claims")
	if h.code != 0 || !regexp.MustCompile(`(?m)ship\s+\w{12}\s+\d+\s+live\s`).MatchString(h.stdout) || regexp.MustCompile(`(?m)submit\s+\w{12}\s+\d+\s+live\s`).MatchString(h.stdout) {
		t.Fatalf("history before any decision (the shipped version alone live): %s %s", h.stdout, h.stderr)
	}
	shippedVersion := regexp.MustCompile(`ship\s+(\w{12})`).FindStringSubmatch(h.stdout)[1]

	// A modeler submits; the province approves it.
	r := as("modeler", "submit", "deceased_claims", "--set", "grace_days=9", "--note", "九日宽限")
	if r.code != 0 {
		t.Fatalf("submit: %s", r.stderr)
	}
	id := lastLine(r.stdout)
	if !strings.Contains(r.stdout, "fixture cases") {
		t.Errorf("submit shows no preview: %s", r.stdout)
	}
	if r := as("modeler", "approve", id); r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Errorf("a modeler approving: %d %s", r.code, r.stderr)
	}
	if r := as("province", "approve", id, "--note", "同意"); r.code != 0 || !strings.Contains(r.stdout, "live from the next run") {
		t.Fatalf("approve: %s %s", r.stdout, r.stderr)
	}
	// The file's draft was submitted against the shipped version, which is
	// no longer live: it cannot be approved; the province rejects it.
	if r := as("province", "approve", fileDraft[1]); r.code != 1 || !strings.Contains(r.stderr, "changed since") {
		t.Errorf("approving a draft of an older live version: %d %s", r.code, r.stderr)
	}
	if r := as("province", "reject", fileDraft[1], "--reason", "已有新版本"); r.code != 0 {
		t.Fatalf("reject: %s", r.stderr)
	}
	if r := as("province", "rollback", "deceased_claims", shippedVersion, "--note", "回退"); r.code != 0 {
		t.Fatalf("rollback: %s", r.stderr)
	}
	h = as("province", "history", "deceased_claims")
	for _, want := range []string{"rollback", "reject", "approve", "submit", "ship", "九日宽限", "已有新版本", "回退"} {
		if !strings.Contains(h.stdout, want) {
			t.Errorf("history lacks %q:\n%s", want, h.stdout)
		}
	}
	lines := strings.Split(strings.TrimSpace(h.stdout), "\n")
	if len(lines) < 2 || !regexp.MustCompile(`rollback\s+`+shippedVersion+`\s+\d+\s+live\s`).MatchString(lines[1]) {
		t.Errorf("the newest event is not the roll back to %s:\n%s", shippedVersion, h.stdout)
	}
}
