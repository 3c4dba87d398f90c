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

// bench nightly at a small size: the five phases, the night re-examining a
// few persons and issuing the late deaths' clues, nothing new examining
// nobody, the recompute finding nothing the nights missed, the hand-written
// work finding the same clues as the first run, and the ratios; bench
// scale: a row per size and the growth.
func TestBench_NightlyAndScalePrintTheirRatios(t *testing.T) {
	dir := t.TempDir()
	r := collider(t, nil, "bench", "nightly", "--dir", dir, "--settlements", "20000", "--persons", "0", "--locations", "0", "--memory-limit", "1GB")
	if r.code != 0 {
		t.Fatalf("bench nightly: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	row := regexp.MustCompile(`(?m)^(by hand|first run \(the year\)|a night \(1/365\)|nothing new|full recompute)\s+(\d+\.\d)\s+(\d+)\s+(\d+)\s+(\d+)\s+(all|\d+)\s+(\d+\.\d{3})$`)
	phases := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(r.stdout, -1) {
		phases[m[1]] = m
	}
	if len(phases) != 5 {
		t.Fatalf("bench nightly: %d phase rows, want 5:\n%s", len(phases), r.stdout)
	}
	clues := func(p string) int { n, _ := strconv.Atoi(phases[p][5]); return n }
	persons := func(p string) string { return phases[p][6] }
	if clues("by hand") == 0 || clues("by hand") != clues("first run (the year)") {
		t.Errorf("by hand %d clues, the first run %d", clues("by hand"), clues("first run (the year)"))
	}
	if clues("a night (1/365)") == 0 || persons("a night (1/365)") == "0" || persons("a night (1/365)") == "all" {
		t.Errorf("the night: %d clues, %s persons", clues("a night (1/365)"), persons("a night (1/365)"))
	}
	if clues("nothing new") != 0 || persons("nothing new") != "0" || clues("full recompute") != 0 {
		t.Errorf("nothing new: %d clues, %s persons; recompute %d clues", clues("nothing new"), persons("nothing new"), clues("full recompute"))
	}
	for _, want := range []string{`first run / by hand: \d+\.\d\dx`, `a night / first run: \d+\.\d%`, `nothing new: \d+\.\d s`,
		`the full recompute published no clue`, `(?m)^a night \(1/365\)\s+\d+\.\d\s+\d+\.\d\s+\d+\.\d\s+\d+\.\d`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("bench nightly prints no %s:\n%s", want, r.stdout)
		}
	}

	r = collider(t, nil, "bench", "scale", "--dir", dir, "--settlements", "10000,20000", "--persons", "0", "--locations", "0", "--memory-limit", "1GB")
	if r.code != 0 {
		t.Fatalf("bench scale: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := len(regexp.MustCompile(`(?m)^(10000|20000)\s+\d+\.\d\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+(1\.00|2\.00)\s`).FindAllString(r.stdout, -1)); n != 2 ||
		!regexp.MustCompile(`time grows \d+\.\d\dx for 2\.00x the settlements`).MatchString(r.stdout) {
		t.Fatalf("bench scale:\n%s", r.stdout)
	}
}

// bench api at a small size: every phase runs, the mix answers without
// errors, and the pages print their ratio to the API.
func TestBench_APIPrintsEveryPhase(t *testing.T) {
	r := collider(t, nil, "bench", "api", "--dir", t.TempDir(), "--clues", "3000", "--settlements", "3000", "--clients", "8",
		"--idle", "1s", "--single", "50", "--page-rounds", "3", "--draft-timeout", "3s", "--memory-limit", "1GB")
	if r.code != 0 {
		t.Fatalf("bench api: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`one client, GET /api/v1/leads/\{id\} ×50: p50 \S+, p99 \S+, max \S+, errors 0`),
		regexp.MustCompile(`(?m)^idle\s+8\s+\d+\s+0\s`),
		regexp.MustCompile(`(?m)^during a run\s+8\s+\d+\s+0\s`),
		regexp.MustCompile(`(?m)^runaway draft\s+8\s+\d+\s+0\s`),
		regexp.MustCompile(`during a run: run \d+ succeeded`),
		regexp.MustCompile(`runaway draft: the draft answered 400 after`),
		regexp.MustCompile(`(?m)^/board\s+province\s+\S+\s+\S+\s+/api/v1/metrics\?by=city\s+\S+\s+\S+\s+\d+\.\dx$`),
		regexp.MustCompile(`(?m)^/batches/\d+\s+province\s`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("bench api prints no %s:\n%s\n%s", want, r.stdout, r.stderr)
		}
	}
}
