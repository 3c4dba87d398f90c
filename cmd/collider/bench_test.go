package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The benchmarks are measuring tools: at a small size they must still load
// every row both ways, run every model both ways with the same result, and
// print the ratios they exist for.
func TestBench_LoadAndModelsPrintTheirRatios(t *testing.T) {
	dir := t.TempDir()
	r := collider(t, nil, "bench", "load", "--dir", dir, "--settlements", "6000", "--persons", "2500", "--locations", "5000", "--memory-limit", "1GB")
	if r.code != 0 {
		t.Fatalf("bench load: exit %d\n%s", r.code, r.stderr)
	}
	rows := map[string]int64{}
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && (f[0] == "plain" || f[0] == "collider") {
			rows[f[0]], _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if rows["plain"] < 13000 || rows["plain"] != rows["collider"] {
		t.Fatalf("bench load rows: %v\n%s", rows, r.stdout)
	}
	if !regexp.MustCompile(`ratio collider/plain: \d+\.\d\dx`).MatchString(r.stdout) {
		t.Fatalf("bench load prints no ratio:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`pseudonymized snapshot for the drafts' sandbox: \d+\.\d s after the load, \d+\.\d\dx`).MatchString(r.stdout) {
		t.Fatalf("bench load prints no cost of the snapshot:\n%s", r.stdout)
	}

	data := filepath.Join(dir, "store")
	inbox := filepath.Join(dir, "inbox-6000-2500-5000")
	r = collider(t, nil, "bench", "models", "--data", data, "--inbox", inbox, "--rounds", "2", "--memory-limit", "1GB")
	if r.code != 0 {
		t.Fatalf("bench models: exit %d\n%s", r.code, r.stderr)
	}
	if got := strings.Count(r.stderr, "round "); got != 6 {
		t.Errorf("2 rounds of 3 phases ran %d phases:\n%s", got, r.stderr)
	}
	// model, flagged, by hand, collider query and ratio, with clues and
	// ratio, the sandboxed preview and its ratio to the live run.
	row := regexp.MustCompile(`(?m)^(\w+)\s+(\d+)\s+\d+\.\d\s+\d+\.\d\s+(\d+\.\d\d|NaN|\+Inf)x\s+\d+\.\d\s+(\d+\.\d\d|NaN|\+Inf)x\s+\d+\.\d\s+\d+\.\d\dx$`)
	seen := map[string]int64{}
	for _, m := range row.FindAllStringSubmatch(r.stdout, -1) {
		seen[m[1]], _ = strconv.ParseInt(m[2], 10, 64)
	}
	for _, name := range []string{"deceased_claims", "impossible_location", "overlapping_stays", "phantom_purchases", "unknown_identity"} {
		if seen[name] == 0 {
			t.Errorf("bench models: no row with flagged settlements for %s:\n%s", name, r.stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^all\s+\d+\.\d\s+\d+\.\d\s+\d+\.\d\dx`).MatchString(r.stdout) {
		t.Errorf("bench models prints no overall ratio:\n%s", r.stdout)
	}
}
