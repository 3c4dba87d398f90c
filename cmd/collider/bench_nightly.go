// collider bench nightly and collider bench scale: the whole pipeline, as
// `collider run` runs it, on a generated province, each measured phase in
// a child process so that its peak memory is its own.
//
// nightly puts side by side, in one run: the same work written by hand in
// plain DuckDB over the year's Parquet (load with the derived columns the
// models read, the five models' SQL, one join back to settlements, clues
// per model, person and institution); the year's first run; a night (a
// 365th of the year's settlements and police records, with late deaths and
// corrections: collider gen --night); a night with nothing new; and a full
// recompute of the same store — seconds, peak memory, spill, and each
// night's ratio to the first run.
//
// scale runs the year's first run at several sizes (63 and 250 million
// settlements by default) under the same memory limit, and reports how its
// time, peak memory, spill and disk grow with the size.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"database/sql"

	"github.com/duckdb/duckdb-go/v2"

	"collider/jobs"
	"collider/models"
	"collider/regions"
	"collider/synth"
)

// pipelinePhase is what one measured phase of these benchmarks reports.
type pipelinePhase struct {
	Phase   string             `json:"phase"`
	Seconds float64            `json:"seconds"`
	Steps   map[string]float64 `json:"steps,omitempty"` // seconds by step name, from the run record
	Clues   int64              `json:"clues"`
	Persons int64              `json:"persons"` // persons re-examined by person
	Status  string             `json:"status,omitempty"`
	PeakMB  float64            `json:"peak_mb"`
	SpillMB float64            `json:"spill_mb"` // the most the spill directory held
	DiskMB  float64            `json:"disk_mb"`  // the store's files afterwards
}

// benchProvince are the flags both benchmarks share.
type benchProvince struct {
	dir                             string
	settlements, persons, locations int64
	memoryLimit                     string
	threads                         int
	sandbox                         bool
}

func (b *benchProvince) flags(fs *flag.FlagSet) {
	fs.StringVar(&b.dir, "dir", filepath.Join(os.TempDir(), "collider-bench"), "working directory (generated inboxes are kept and reused)")
	fs.Int64Var(&b.persons, "persons", 25_000_000, "persons (Gansu: 25 million); 0: settlements × 25/63")
	fs.Int64Var(&b.locations, "locations", 50_000_000, "location records (Gansu: 50 million); 0: settlements × 50/63")
	fs.StringVar(&b.memoryLimit, "memory-limit", "8GB", "DuckDB memory limit of every phase")
	fs.IntVar(&b.threads, "threads", 0, "DuckDB threads of every phase (default: CPUs)")
	fs.BoolVar(&b.sandbox, "sandbox", true, "refresh the drafts' pseudonymized snapshot in each run, as collider run does")
}

func (b *benchProvince) options(settlements int64) synth.Options {
	return synth.Options{Seed: 1, Settlements: settlements, Persons: b.persons, Locations: b.locations}
}

// year generates (or reuses) the province of a size; it returns its inbox.
func (b *benchProvince) year(ctx context.Context, settlements int64, stderr io.Writer) (string, error) {
	inbox := filepath.Join(b.dir, fmt.Sprintf("year-%d-%d-%d", settlements, b.persons, b.locations))
	if _, err := os.Stat(filepath.Join(inbox, synth.TruthFile)); err == nil {
		return inbox, nil
	}
	fmt.Fprintf(stderr, "generating %d settlements, %d persons, %d locations into %s\n", settlements, b.persons, b.locations, inbox)
	os.RemoveAll(inbox)
	opt := b.options(settlements)
	opt.Out = inbox
	_, err := generate(ctx, opt, stderr)
	return inbox, err
}

func benchNightly(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench nightly", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var b benchProvince
	b.flags(fs)
	fs.Int64Var(&b.settlements, "settlements", 63_000_000, "settlements in the year (Gansu: 63 million)")
	phase := fs.String("phase", "", "internal: run one phase (hand|run|full) and print its JSON result")
	data := fs.String("data", "", "internal: the phase's store")
	inbox := fs.String("inbox", "", "internal: the phase's inbox")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "collider bench nightly:", err); return 1 }
	if *phase != "" {
		res, err := runPipelinePhase(ctx, *phase, *data, *inbox, b)
		if err != nil {
			return fail(err)
		}
		json.NewEncoder(stdout).Encode(res)
		return 0
	}
	if b.persons == 0 {
		b.persons = max(synth.MinPersons, b.settlements*25/63)
	}
	if b.locations == 0 {
		b.locations = b.settlements * 50 / 63
	}
	year, err := b.year(ctx, b.settlements, stderr)
	if err != nil {
		return fail(err)
	}
	night := filepath.Join(b.dir, fmt.Sprintf("night-%d-%d-%d", b.settlements, b.persons, b.locations))
	if _, err := os.Stat(filepath.Join(night, "settlements")); err != nil {
		os.RemoveAll(night)
		if _, err := synth.Night(ctx, synth.NightOptions{Province: b.options(b.settlements), Out: night, Night: 1}); err != nil {
			return fail(err)
		}
	}
	work := filepath.Join(b.dir, "nightly")
	os.RemoveAll(work)
	defer os.RemoveAll(work)
	store, in := filepath.Join(work, "data"), filepath.Join(work, "inbox")
	if err := linkDeliveries(in, year); err != nil {
		return fail(err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	run := func(name, phase, data, inbox string) (pipelinePhase, error) {
		fmt.Fprintf(stderr, "phase %s …\n", name)
		var res pipelinePhase
		args := []string{"bench", "nightly", "--phase", phase, "--data", data, "--inbox", inbox, "--dir", b.dir,
			"--memory-limit", b.memoryLimit, fmt.Sprint("--threads=", b.threads), fmt.Sprint("--sandbox=", b.sandbox)}
		peak, spill, err := runWatched(ctx, self, "phase "+name, args, filepath.Join(data, "tmp"), stderr, &res)
		res.Phase, res.PeakMB, res.SpillMB = name, peak, spill
		return res, err
	}
	var phases []pipelinePhase
	for _, p := range []struct{ name, phase, data, inbox string }{
		{"by hand", "hand", filepath.Join(work, "hand"), year},
		{"first run (the year)", "run", store, in},
		{"a night (1/365)", "run", store, in},
		{"nothing new", "run", store, in},
		{"full recompute", "full", store, in},
	} {
		if p.name == "a night (1/365)" {
			if err := linkDeliveries(in, night); err != nil {
				return fail(err)
			}
		}
		res, err := run(p.name, p.phase, p.data, p.inbox)
		if err != nil {
			return fail(err)
		}
		phases = append(phases, res)
	}
	if !reportNightly(stdout, b, night, phases) {
		return 1
	}
	return 0
}

// reportNightly prints the phases side by side with their ratios, and says
// whether the full recompute found nothing the incremental runs had not.
func reportNightly(stdout io.Writer, b benchProvince, night string, phases []pipelinePhase) bool {
	hand, full, recompute := phases[0], phases[1], phases[4]

	var counts struct{ settlements, nightSettlements, nightPolice int64 }
	counts.settlements = b.settlements
	for _, feed := range []string{"settlements", "civil_status", "residents", "floating", "locations"} {
		n, _ := parquetRows(filepath.Join(night, feed))
		if feed == "settlements" {
			counts.nightSettlements = n
		} else {
			counts.nightPolice += n
		}
	}
	fmt.Fprintf(stdout, "province: %d settlements, %d persons, %d locations; a night: %d settlements, %d police records; memory limit %s\n",
		b.settlements, b.persons, b.locations, counts.nightSettlements, counts.nightPolice, b.memoryLimit)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tseconds\tpeak MB\tspill MB\tclues\tpersons re-examined\tratio to the first run")
	for i, p := range phases {
		persons := "all"
		if i == 2 || i == 3 { // the night and nothing new
			persons = fmt.Sprint(p.Persons)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t%d\t%s\t%.3f\n", p.Phase, p.Seconds, p.PeakMB, p.SpillMB, p.Clues, persons, p.Seconds/full.Seconds)
	}
	tw.Flush()
	fmt.Fprintln(stdout, "\nseconds by step:")
	printSteps(stdout, phases[1:])
	sandbox := full.Steps["sandbox"]
	fmt.Fprintf(stdout, "\nfirst run / by hand: %.2fx (goal ≤ 1.2x); without the drafts' snapshot, which the hand-written SQL does not make: %.2fx\n",
		full.Seconds/hand.Seconds, (full.Seconds-sandbox)/hand.Seconds)
	fmt.Fprintf(stdout, "a night / first run: %.1f%% (goal ≤ 5%%); nothing new: %.1f s (goal ≤ 5 s); full recompute / first run: %.2fx\n",
		100*phases[2].Seconds/full.Seconds, phases[3].Seconds, recompute.Seconds/full.Seconds)
	if recompute.Clues != 0 {
		fmt.Fprintf(stdout, "WRONG: the full recompute published %d clues the incremental runs did not\n", recompute.Clues)
		return false
	}
	fmt.Fprintln(stdout, "the full recompute published no clue the incremental runs had not (as it must)")
	if hand.Clues != full.Clues {
		fmt.Fprintf(stdout, "note: by hand %d clues, collider %d\n", hand.Clues, full.Clues)
	}
	return true
}

func benchScale(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var b benchProvince
	b.flags(fs)
	sizes := fs.String("settlements", "63000000,250000000", "the sizes to run, in settlements; persons and locations grow with them")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "collider bench scale:", err); return 1 }
	var ns []int64
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n <= 0 {
			return fail(fmt.Errorf("--settlements %q: a list of sizes", *sizes))
		}
		ns = append(ns, n)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	persons, locations := b.persons, b.locations
	first := ns[0]
	var results []pipelinePhase
	var inboxMB []float64
	for _, n := range ns {
		// Persons and locations keep the proportions of the first size.
		b.persons, b.locations = persons*n/first, locations*n/first
		if persons == 0 {
			b.persons = max(synth.MinPersons, n*25/63)
		}
		if locations == 0 {
			b.locations = n * 50 / 63
		}
		year, err := b.year(ctx, n, stderr)
		if err != nil {
			return fail(err)
		}
		work := filepath.Join(b.dir, fmt.Sprintf("scale-%d", n))
		os.RemoveAll(work)
		data := filepath.Join(work, "data")
		fmt.Fprintf(stderr, "first run of %d settlements …\n", n)
		var res pipelinePhase
		args := []string{"bench", "nightly", "--phase", "run", "--data", data, "--inbox", year, "--dir", b.dir,
			"--memory-limit", b.memoryLimit, fmt.Sprint("--threads=", b.threads), fmt.Sprint("--sandbox=", b.sandbox)}
		peak, spill, err := runWatched(ctx, self, fmt.Sprintf("run of %d", n), args, filepath.Join(data, "tmp"), stderr, &res)
		if err != nil {
			return fail(err)
		}
		res.Phase, res.PeakMB, res.SpillMB = fmt.Sprint(n), peak, spill
		results = append(results, res)
		inboxMB = append(inboxMB, dirMB(year))
		os.RemoveAll(work)
	}
	fmt.Fprintf(stdout, "the first run (load, models, clues, publish) at each size; memory limit %s\n", b.memoryLimit)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "settlements\tseconds\tpeak MB\tspill MB\tstore MB\tinbox MB\tclues\tsize ×\ttime ×\tstore ×\tspill ×")
	for i, r := range results {
		size := float64(ns[i]) / float64(ns[0])
		spill := "-"
		if results[0].SpillMB > 0 {
			spill = fmt.Sprintf("%.2f", r.SpillMB/results[0].SpillMB)
		}
		fmt.Fprintf(tw, "%d\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%.2f\t%.2f\t%.2f\t%s\n", ns[i], r.Seconds, r.PeakMB, r.SpillMB, r.DiskMB, inboxMB[i], r.Clues,
			size, r.Seconds/results[0].Seconds, r.DiskMB/results[0].DiskMB, spill)
	}
	tw.Flush()
	fmt.Fprintln(stdout, "\nseconds by step:")
	printSteps(stdout, results)
	last := results[len(results)-1]
	size := float64(ns[len(ns)-1]) / float64(ns[0])
	fmt.Fprintf(stdout, "\ntime grows %.2fx for %.2fx the settlements (goal: linear or better, %s)\n", last.Seconds/results[0].Seconds, size,
		map[bool]string{true: "met", false: "not met"}[last.Seconds/results[0].Seconds <= size*1.05])
	return 0
}

// printSteps writes each phase's seconds by step, the steps in run order.
func printSteps(w io.Writer, phases []pipelinePhase) {
	order := []string{"discover", "load", "sandbox", "scope", "model", "clues", "publish", "route"}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\t"+strings.Join(order, "\t"))
	for _, p := range phases {
		cells := []string{p.Phase}
		for _, s := range order {
			cells = append(cells, fmt.Sprintf("%.1f", p.Steps[s]))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// runWatched runs a phase as a child (runPhaseChild) while watching how
// much its spill directory holds; it returns the peak memory and the most
// the directory held, in MB.
func runWatched(ctx context.Context, self, what string, args []string, spillDir string, stderr io.Writer, res any) (float64, float64, error) {
	var mu sync.Mutex
	var most float64
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := dirMB(spillDir)
				mu.Lock()
				most = max(most, n)
				mu.Unlock()
			}
		}
	}()
	peak, err := runPhaseChild(ctx, self, what, args, stderr, res)
	close(done)
	mu.Lock()
	defer mu.Unlock()
	return peak, most, err
}

// dirMB is what a directory's files hold, in MB (0 when it is missing).
func dirMB(dir string) float64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return float64(total) / (1 << 20)
}

// linkDeliveries links every delivery of src into the inbox dst
// (dst/<feed>/<delivery> → src/<feed>/<delivery>): the nights join the
// year's deliveries in one inbox, as they would arrive.
func linkDeliveries(dst, src string) error {
	feedDirs, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, f := range feedDirs {
		if !f.IsDir() {
			continue
		}
		ds, err := os.ReadDir(filepath.Join(src, f.Name()))
		if err != nil {
			return err
		}
		for _, d := range ds {
			if !d.IsDir() {
				continue
			}
			if err := os.MkdirAll(filepath.Join(dst, f.Name()), 0o755); err != nil {
				return err
			}
			link := filepath.Join(dst, f.Name(), d.Name())
			if _, err := os.Lstat(link); err == nil {
				continue
			}
			if err := os.Symlink(filepath.Join(src, f.Name(), d.Name()), link); err != nil {
				return err
			}
		}
	}
	return nil
}

// parquetRows counts the rows of the Parquet files under dir, from their footers.
func parquetRows(dir string) (int64, error) {
	ds, errs := jobs.Discover(filepath.Dir(dir))
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	var n int64
	for _, d := range ds {
		if d.Feed != filepath.Base(dir) {
			continue
		}
		in, err := jobs.Inspect(d)
		if err != nil {
			return 0, err
		}
		n += in.Rows
	}
	return n, nil
}

// runPipelinePhase runs one phase in this (child) process: the pipeline as
// collider run runs it (run, or full for --full), or the same work by hand.
func runPipelinePhase(ctx context.Context, phase, data, inbox string, b benchProvince) (pipelinePhase, error) {
	res := pipelinePhase{Phase: phase}
	switch phase {
	case "run", "full":
		cfg := Config{Data: data, Inbox: inbox, MemoryLimit: b.memoryLimit, Threads: b.threads}
		// The inbox's deliveries are links into the generated provinces.
		s, err := openStore(ctx, cfg, b.dir)
		if err != nil {
			return res, err
		}
		defer s.Close()
		if err := jobs.MarkInterrupted(ctx, s.DB); err != nil {
			return res, err
		}
		ms, err := models.Load(models.Embedded())
		if err != nil {
			return res, err
		}
		cat := models.NewCatalog()
		cat.Set(ms...)
		p := &jobs.Pipeline{Store: s, Casebook: newCasebook(s, cfg), Catalog: cat, Inbox: inbox, Full: phase == "full"}
		if b.sandbox {
			p.Snapshot = newSandbox(s, cfg).Snapshot
		}
		start := time.Now()
		out, err := p.Run(ctx, "cli", "bench")
		res.Seconds = time.Since(start).Seconds()
		if out.BatchID == 0 {
			return res, fmt.Errorf("no batch: %w", err)
		}
		res.Clues, res.Status = out.Batch.Clues, out.Status
		res.Steps = map[string]float64{}
		rec, err := p.Get(ctx, out.RunID)
		if err != nil {
			return res, err
		}
		for _, st := range rec.Steps {
			if st.Seconds != nil {
				res.Steps[st.Name] += *st.Seconds
			}
			if st.Name == "scope" && st.Rows != nil {
				res.Persons = *st.Rows
			}
		}
		if _, err := s.DB.ExecContext(ctx, "CHECKPOINT"); err != nil {
			return res, err
		}
		res.DiskMB = dirMB(data) - dirMB(filepath.Join(data, "tmp"))
		return res, nil
	case "hand":
		return runByHand(ctx, data, inbox, b)
	}
	return res, fmt.Errorf("unknown phase %q", phase)
}

// runByHand does the first run's essential work in plain DuckDB, as a
// person would write it over the same Parquet files: each feed loaded with
// the derived columns the models read (IDs normalized, points and cities
// from the regions), the five models' SQL with their parameters written in,
// one join of all flags back to the settlements, and clues per model,
// person and institution. No validation, rejects, lineage, suppressions,
// severity, narratives, leads or run records.
func runByHand(ctx context.Context, work, inbox string, b benchProvince) (pipelinePhase, error) {
	res := pipelinePhase{Phase: "hand"}
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o750); err != nil {
		return res, err
	}
	csvPath := filepath.Join(work, "regions.csv")
	if err := os.WriteFile(csvPath, regions.CSV(), 0o644); err != nil {
		return res, err
	}
	connector, err := duckdb.NewConnector(filepath.Join(work, "hand.duckdb"), nil)
	if err != nil {
		return res, err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	settings := []string{
		fmt.Sprintf("SET memory_limit = '%s'", b.memoryLimit),
		fmt.Sprintf("SET temp_directory = '%s'", filepath.Join(work, "tmp")),
		"SET preserve_insertion_order = false",
	}
	if b.threads > 0 {
		settings = append(settings, fmt.Sprintf("SET threads = %d", b.threads))
	}
	for _, q := range settings {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return res, err
		}
	}
	files := func(feed string) string {
		fs, _ := filepath.Glob(filepath.Join(inbox, feed, "0001", "*.parquet"))
		return "['" + strings.Join(fs, "', '") + "']"
	}
	start := time.Now()
	script := strings.NewReplacer("REGIONS_CSV", csvPath,
		"INSTITUTIONS", files("institutions"), "RESIDENTS", files("residents"), "CIVIL", files("civil_status"),
		"FLOATING", files("floating"), "LOCATIONS", files("locations"), "SETTLEMENTS", files("settlements")).Replace(handLoad)
	for _, q := range strings.Split(script, ";\n") {
		if strings.TrimSpace(q) == "" {
			continue
		}
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return res, fmt.Errorf("by hand: %w\n%s", err, q)
		}
	}
	ms, err := models.Load(models.Embedded())
	if err != nil {
		return res, err
	}
	var flags []string
	for _, m := range ms {
		vals, err := m.Values(nil)
		if err != nil {
			return res, err
		}
		if _, err := conn.ExecContext(ctx, "CREATE TABLE flags_"+m.Name+" AS "+handSQL(m, vals)); err != nil {
			return res, fmt.Errorf("%s by hand: %w", m.Name, err)
		}
		flags = append(flags, fmt.Sprintf("SELECT '%s' AS model, settlement_id, reason, evidence FROM flags_%s", m.Name, m.Name))
	}
	clues := `CREATE TABLE clues AS
SELECT f.model, s.person_id, s.institution_id, count(*) AS settlements, sum(s.fund_amount) AS fund_amount,
       min(s.visit_start) AS first_visit, max(s.visit_start) AS last_visit,
       string_agg(f.settlement_id, ';' ORDER BY s.visit_start) AS settlement_ids,
       '[' || string_agg(CAST(f.evidence AS VARCHAR), ',' ORDER BY s.visit_start) || ']' AS evidence
FROM (` + strings.Join(flags, "\nUNION ALL ") + `) f
JOIN settlements s ON s.settlement_id = f.settlement_id
GROUP BY f.model, s.person_id, s.institution_id`
	if _, err := conn.ExecContext(ctx, clues); err != nil {
		return res, fmt.Errorf("clues by hand: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "CHECKPOINT"); err != nil {
		return res, err
	}
	res.Seconds = time.Since(start).Seconds()
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM clues").Scan(&res.Clues); err != nil {
		return res, err
	}
	res.DiskMB = dirMB(work)
	return res, nil
}

// handLoad loads the feeds by hand, with the columns the models read.
const handLoad = `
CREATE TABLE regions AS
SELECT code, name, level, nullif(parent, '') AS parent, province, nullif(city, '') AS city,
       CAST(nullif(lon, '') AS DOUBLE) AS lon, CAST(nullif(lat, '') AS DOUBLE) AS lat
FROM read_csv('REGIONS_CSV', header = true, all_varchar = true);
UPDATE regions SET lon = p.lon, lat = p.lat FROM regions p WHERE regions.lon IS NULL AND p.code = regions.parent;
UPDATE regions SET lon = p.lon, lat = p.lat FROM regions p WHERE regions.lon IS NULL AND p.code = regions.parent;
CREATE TABLE region_lookup AS
WITH codes AS (
    SELECT substr(p.code, 1, 2) || lpad(CAST(t.i AS VARCHAR), 4, '0') AS code
    FROM regions p CROSS JOIN range(10000) t(i) WHERE p.level = 'province')
SELECT c.code, coalesce(r1.code, r2.code, r3.code) AS resolved, substr(c.code, 1, 4) || '00' AS city_code,
       coalesce(r1.lon, r2.lon, r3.lon) AS lon, coalesce(r1.lat, r2.lat, r3.lat) AS lat
FROM codes c
LEFT JOIN regions r1 ON r1.code = c.code
LEFT JOIN regions r2 ON r2.code = substr(c.code, 1, 4) || '00'
JOIN regions r3 ON r3.code = substr(c.code, 1, 2) || '0000';
CREATE MACRO haversine_km(lat1, lon1, lat2, lon2) AS
    2 * 6371 * asin(least(1, sqrt(
        power(sin(radians(lat2 - lat1) / 2), 2)
      + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lon2 - lon1) / 2), 2))));
CREATE MACRO id17(s) AS CASE WHEN length(s) = 15 THEN substr(s, 1, 6) || '19' || substr(s, 7, 9) ELSE substr(s, 1, 17) END;
CREATE MACRO id_check(d) AS substr('10X98765432', 1 + CAST(list_sum([(ascii(d[i]) - 48) * [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2][i] FOR i IN range(1, 18)]) % 11 AS INTEGER), 1);
CREATE MACRO norm_id(s) AS CASE WHEN length(s) = 15 THEN id17(s) || id_check(id17(s)) ELSE upper(s) END;
CREATE TABLE institutions AS
SELECT i.institution_id, i.name, i.kind, i.region_code, i.lat, i.lon, l.city_code,
       coalesce(i.lat, l.lat) AS point_lat, coalesce(i.lon, l.lon) AS point_lon
FROM read_parquet(INSTITUTIONS) i LEFT JOIN region_lookup l ON l.code = i.region_code;
CREATE TABLE residents AS
SELECT norm_id(r.person_id) AS person_id, r.name, r.hukou_region, CAST(strptime(r.birth_date, '%Y%m%d') AS DATE) AS birth_date,
       l.city_code AS hukou_city, l.lat AS hukou_lat, l.lon AS hukou_lon
FROM read_parquet(RESIDENTS) r LEFT JOIN region_lookup l ON l.code = r.hukou_region;
CREATE TABLE civil_status AS
SELECT norm_id(person_id) AS person_id, status, CAST(death_date AS DATE) AS death_date,
       strptime(updated_at, '%Y%m%d%H%M%S') AS updated_at
FROM read_parquet(CIVIL);
CREATE TABLE floating AS
SELECT norm_id(f.person_id) AS person_id, f.region_code, f.valid_from, f.valid_to, l.city_code
FROM read_parquet(FLOATING) f LEFT JOIN region_lookup l ON l.code = f.region_code;
CREATE TABLE locations AS
SELECT x.event_id, norm_id(x.person_id) AS person_id, x.kind, x.start_time, x.end_time, x.region_code, x.lat, x.lon,
       l.city_code, CASE WHEN x.kind = 'abroad' THEN NULL ELSE coalesce(x.lat, l.lat) END AS point_lat,
       CASE WHEN x.kind = 'abroad' THEN NULL ELSE coalesce(x.lon, l.lon) END AS point_lon
FROM read_parquet(LOCATIONS) x LEFT JOIN region_lookup l ON l.code = x.region_code;
CREATE TABLE settlements AS
SELECT settlement_id, norm_id(person_id) AS person_id, person_name, institution_id, visit_type, visit_start, visit_end, settled_at,
       CAST(total_amount AS DECIMAL(18,2)) AS total_amount, CAST(fund_amount AS DECIMAL(18,2)) AS fund_amount, insured_region
FROM read_parquet(SETTLEMENTS);
`
