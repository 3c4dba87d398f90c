package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The soak at a tiny size: the real server under clients while runs follow
// each other; it prints a line of figures per interval (latencies, errors,
// the server's RSS, how much of it DuckDB, Go and the C allocator account
// for, descriptors, runs), finds every acknowledged action
// in the store afterwards and the store's invariants holding, and exits 0.
// (Its timing goals are printed, not asserted: they are for the 30-minute
// soak on a quiet machine.)
func TestBench_SoakPrintsFiguresPerIntervalAndFindsEveryAction(t *testing.T) {
	dir := t.TempDir()
	r := collider(t, nil, "bench", "soak", "--dir", filepath.Join(dir, "soak"), "--minutes", "0.25", "--interval", "4s",
		"--settlements", "10000", "--nights", "3", "--night-every", "3s", "--clients", "10", "--memory-limit", "1GB")
	if r.code != 0 {
		t.Fatalf("bench soak: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Log("\n" + r.stdout)
	if !regexp.MustCompile(`minute\s+requests\s+req/s\s+errors\s+p50 ms\s+p99 ms\s+actions\s+runs\s+RSS MB\s+DuckDB MB\s+Go MB\s+C used MB\s+C free MB\s+fds`).MatchString(r.stdout) {
		t.Fatalf("no header:\n%s", r.stdout)
	}
	line := regexp.MustCompile(`(?m)^\s*(\d+\.\d\d)\s+(\d+)\s+\d+\s+(\d+)\s+\d+\.\d\d\s+\d+\.\d\d\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$`)
	rows := line.FindAllStringSubmatch(r.stdout, -1)
	if len(rows) < 3 {
		t.Fatalf("%d lines of figures, want one per 4 s of 15 s:\n%s", len(rows), r.stdout)
	}
	var runs int
	for _, m := range rows {
		requests, _ := strconv.Atoi(m[2])
		errors, _ := strconv.Atoi(m[3])
		n, _ := strconv.Atoi(m[5])
		rss, _ := strconv.Atoi(m[6])
		duck, _ := strconv.Atoi(m[7])
		gosys, _ := strconv.Atoi(m[8])
		cUsed, _ := strconv.Atoi(m[9])
		fds, _ := strconv.Atoi(m[11])
		runs += n
		if requests == 0 || errors != 0 || rss == 0 || fds == 0 {
			t.Fatalf("a line with %d requests, %d errors, RSS %d MB, %d descriptors: %q", requests, errors, rss, fds, m[0])
		}
		// /metrics accounts for part of the RSS: DuckDB's buffers (the
		// store's blocks, at least) and what Go took from the system.
		if duck <= 0 || gosys <= 0 || cUsed <= 0 || duck >= rss || cUsed >= rss {
			t.Fatalf("a line with RSS %d MB of which DuckDB %d MB, Go %d MB, the C allocator %d MB: %q", rss, duck, gosys, cUsed, m[0])
		}
	}
	if runs == 0 {
		t.Fatal("no run finished during the soak")
	}
	// The last line is sampled while the clients are still connected.
	firstFDs, _ := strconv.Atoi(rows[0][11])
	lastFDs, _ := strconv.Atoi(rows[len(rows)-1][11])
	if lastFDs < firstFDs*3/4 {
		t.Fatalf("the last line's %d descriptors against the first's %d: sampled after the clients hung up", lastFDs, firstFDs)
	}
	m := regexp.MustCompile(`acknowledged actions checked present: (\d+) of (\d+) \(0 missing\)`).FindStringSubmatch(r.stdout)
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Fatalf("acknowledged actions not all found:\n%s", r.stdout)
	}
	for _, want := range []string{"nights of settlements delivered after the history: 3 of 3", "collider check: all 5 invariants hold", "goal zero errors: met", "goal no acknowledged action missing: met", "goal p99 under 50 ms in every minute:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the summary lacks %q", want)
		}
	}
}

// The soak judges flatness on the highest sample after minute 5: a memory
// that climbs past 10% and falls back by the end is not flat.
func TestSoakGrowth_JudgesTheHighestSampleNotTheLast(t *testing.T) {
	iv := func(min int, rssMB int64, fds int) *soakInterval {
		return &soakInterval{end: time.Duration(min) * time.Minute, rssKB: rssMB << 10, fds: fds}
	}
	rss, fds, peak, _ := soakGrowth([]*soakInterval{iv(5, 343, 114), iv(20, 405, 115), iv(30, 375, 114)})
	if rss < 18 || rss > 18.1 || peak.end != 20*time.Minute || fds < 0.8 || fds > 0.9 {
		t.Fatalf("RSS %+.2f%% (peak at %v), descriptors %+.2f%%: want +18.08%% at minute 20, +0.88%%", rss, peak.end, fds)
	}
	if rss, _, _, _ := soakGrowth([]*soakInterval{iv(5, 343, 114), iv(6, 300, 114)}); rss != 0 {
		t.Fatalf("a memory that only fell grew %+.2f%%", rss)
	}
}
