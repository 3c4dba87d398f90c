// collider bench models: every live model over a loaded store, through
// collider's runner and as the same SQL run by hand in DuckDB, each phase in
// its own process so that its peak memory is its own.
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
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"collider/casebook"
	"collider/jobs"
	"collider/models"
)

type modelTiming struct {
	Model   string  `json:"model"`
	Flagged int64   `json:"flagged"`
	Flag    float64 `json:"flag_seconds"`  // the model's query into a temp table
	Total   float64 `json:"total_seconds"` // with joining back, suppressions and grouping into clues
}

type modelsPhase struct {
	Phase  string        `json:"phase"`
	Models []modelTiming `json:"models"`
	PeakMB float64       `json:"peak_mb"`
}

func benchModels(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench models", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "a store with the feeds loaded (e.g. by collider load)")
	inbox := fs.String("inbox", "", "load this inbox into --data first, if given (not timed)")
	memoryLimit := fs.String("memory-limit", "8GB", "DuckDB memory limit for both phases")
	rounds := fs.Int("rounds", 2, "run both phases this many times, in alternating order, and keep each model's best time")
	phase := fs.String("phase", "", "internal: run one phase (hand|collider|sandbox) and print its JSON result")
	if err := fs.Parse(args); err != nil || *data == "" || *rounds < 1 {
		fmt.Fprintln(stderr, "usage: collider bench models --data DIR [--inbox DIR] [--memory-limit 8GB] [--rounds N]")
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "collider bench models:", err); return 1 }
	if *phase != "" {
		res, err := runModelsPhase(ctx, *phase, *data, *memoryLimit, stderr)
		if err != nil {
			return fail(err)
		}
		json.NewEncoder(stdout).Encode(res)
		return 0
	}
	if *inbox != "" {
		s, err := openStore(ctx, Config{Data: *data, MemoryLimit: *memoryLimit}, *inbox)
		if err != nil {
			return fail(err)
		}
		ds, _ := jobs.Discover(*inbox)
		printLoadSummary(stderr, loadWithProgress(ctx, &jobs.Loader{Store: s}, ds, stderr))
		s.Close()
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	// One run of each phase is at the mercy of the machine's noise (a model
	// of a few seconds varies by a third from run to run here), so both run
	// several times, hand first in odd rounds and collider first in even
	// ones, and each model keeps its best time.
	best := map[string]*modelsPhase{}
	for r := 0; r < *rounds; r++ {
		order := []string{"hand", "collider", "sandbox"}
		if r%2 == 1 {
			order = []string{"sandbox", "collider", "hand"}
		}
		for _, p := range order {
			fmt.Fprintf(stderr, "round %d/%d, phase %s …\n", r+1, *rounds, p)
			// No phase should pay for a cold cache, nor for the phase before
			// it: the page cache does not hold both the store and the drafts'
			// snapshot, so each phase's files are read first.
			if n, err := warmCache(*data, p == "sandbox"); err != nil {
				return fail(err)
			} else {
				fmt.Fprintf(stderr, "  read %d MB of its files to warm the page cache\n", n>>20)
			}
			var res modelsPhase
			peak, err := runPhaseChild(ctx, self, "phase "+p, []string{"bench", "models", "--phase", p, "--data", *data, "--memory-limit", *memoryLimit}, stderr, &res)
			if err != nil {
				return fail(err)
			}
			res.PeakMB = peak
			if b := best[p]; b == nil {
				best[p] = &res
			} else {
				b.keepBest(res)
			}
		}
	}
	hand, coll, sand := *best["hand"], *best["collider"], *best["sandbox"]
	bySandbox := map[string]modelTiming{}
	for _, m := range sand.Models {
		bySandbox[m.Model] = m
	}
	byModel := map[string]modelTiming{}
	for _, m := range hand.Models {
		byModel[m.Model] = m
	}
	// Times of two queries that disagree compare nothing.
	for _, m := range coll.Models {
		if h, ok := byModel[m.Model]; !ok || h.Flagged != m.Flagged {
			return fail(fmt.Errorf("%s: collider flagged %d settlements, the same SQL by hand %d", m.Model, m.Flagged, h.Flagged))
		}
		if sb, ok := bySandbox[m.Model]; !ok || sb.Flagged != m.Flagged {
			return fail(fmt.Errorf("%s: collider flagged %d settlements, the sandbox over pseudonymized people %d", m.Model, m.Flagged, sb.Flagged))
		}
	}
	printModelsTable(ctx, stdout, *data, *memoryLimit, *rounds, hand, coll, sand)
	return 0
}

// printModelsTable prints each model's timings by hand, through the runner
// and in the sandbox, with their ratios.
func printModelsTable(ctx context.Context, stdout io.Writer, data, memoryLimit string, rounds int, hand, coll, sand modelsPhase) {
	byModel, bySandbox := map[string]modelTiming{}, map[string]modelTiming{}
	for _, m := range hand.Models {
		byModel[m.Model] = m
	}
	for _, m := range sand.Models {
		bySandbox[m.Model] = m
	}
	var rows struct{ settlements, persons, locations int64 }
	if s, err := openStore(ctx, Config{Data: data, MemoryLimit: memoryLimit}); err == nil {
		s.DB.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM settlements), (SELECT count(*) FROM residents), (SELECT count(*) FROM locations)").
			Scan(&rows.settlements, &rows.persons, &rows.locations)
		s.Close()
	}
	fmt.Fprintf(stdout, "store: %d settlements, %d residents, %d locations; memory limit %s; best of %d rounds\n", rows.settlements, rows.persons, rows.locations, memoryLimit, rounds)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "model\tflagged\tby hand s\tcollider query s\tratio\tcollider with clues s\tratio\tsandboxed preview s\tratio to the live run")
	for _, m := range coll.Models {
		h, sb := byModel[m.Model], bySandbox[m.Model]
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.2fx\t%.1f\t%.2fx\t%.1f\t%.2fx\n", m.Model, m.Flagged, h.Flag, m.Flag, m.Flag/h.Flag, m.Total, m.Total/h.Flag, sb.Total, sb.Total/m.Total)
	}
	handAll, collAll, collTotal, sandAll := sumOf(hand.Models, false), sumOf(coll.Models, false), sumOf(coll.Models, true), sumOf(sand.Models, true)
	fmt.Fprintf(tw, "all\t\t%.1f\t%.1f\t%.2fx\t%.1f\t%.2fx\t%.1f\t%.2fx\n", handAll, collAll, collAll/handAll, collTotal, collTotal/handAll, sandAll, sandAll/collTotal)
	tw.Flush()
	fmt.Fprintf(stdout, "peak memory: by hand %.0f MB, collider %.0f MB (goal: the query ≤ 1.2x the same SQL by hand; a sandboxed preview ≤ 1.3x the live run)\n", hand.PeakMB, coll.PeakMB)
}

// warmCache reads the files a phase reads — the store's, or for the
// sandbox the casebook and the drafts' snapshot (once it exists) — so that
// the operating system's page cache holds them for every phase alike.
func warmCache(data string, sandbox bool) (int64, error) {
	var total int64
	names := []string{"feeds.duckdb", "casebook.duckdb"}
	if sandbox {
		names = []string{filepath.Join("sandbox", "feeds.duckdb"), "casebook.duckdb"}
	}
	for _, name := range names {
		f, err := os.Open(filepath.Join(data, name))
		if errors.Is(err, fs.ErrNotExist) && sandbox {
			continue // the phase makes the snapshot first
		}
		if err != nil {
			return total, err
		}
		n, err := io.Copy(io.Discard, f)
		f.Close()
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// sumOf adds the models' query seconds, or their total seconds.
func sumOf(ms []modelTiming, total bool) float64 {
	var t float64
	for _, m := range ms {
		if total {
			t += m.Total
		} else {
			t += m.Flag
		}
	}
	return t
}

// keepBest keeps, model by model, the faster of p's timings and r's, and
// the higher peak memory.
func (p *modelsPhase) keepBest(r modelsPhase) {
	for i := range p.Models {
		for _, m := range r.Models {
			if m.Model != p.Models[i].Model {
				continue
			}
			p.Models[i].Flag = min(p.Models[i].Flag, m.Flag)
			p.Models[i].Total = min(p.Models[i].Total, m.Total)
		}
	}
	p.PeakMB = max(p.PeakMB, r.PeakMB)
}

// runModelsPhase runs every embedded model once, by hand or through the runner.
func runModelsPhase(ctx context.Context, phase, data, memoryLimit string, stderr io.Writer) (modelsPhase, error) {
	res := modelsPhase{Phase: phase}
	s, err := openStore(ctx, Config{Data: data, MemoryLimit: memoryLimit})
	if err != nil {
		return res, err
	}
	defer s.Close()
	ms, err := models.Load(models.Embedded())
	if err != nil {
		return res, err
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	runner := &models.Runner{}
	var pv *jobs.Previewer
	if phase == "sandbox" {
		cfg := Config{Data: data, MemoryLimit: memoryLimit, DraftMemoryLimit: memoryLimit, DraftThreads: s.Options().Threads, DraftTimeout: 24 * time.Hour}
		cat := models.NewCatalog()
		cat.Set(ms...)
		pv = &jobs.Previewer{Store: s, Casebook: newCasebook(s, cfg), Catalog: cat, Sandbox: newSandbox(s, cfg)}
		if _, err := pv.Sandbox.Snapshot.Refresh(ctx); err != nil { // built once, not timed with the first model
			return res, err
		}
	}
	for _, m := range ms {
		vals, err := m.Values(nil)
		if err != nil {
			return res, err
		}
		t := modelTiming{Model: m.Name}
		t0 := time.Now()
		switch phase {
		case "hand":
			if _, err := conn.ExecContext(ctx, "CREATE TEMP TABLE hand_"+m.Name+" AS "+handSQL(m, vals)); err != nil {
				return res, fmt.Errorf("%s by hand: %w", m.Name, err)
			}
			conn.QueryRowContext(ctx, "SELECT count(*) FROM hand_"+m.Name).Scan(&t.Flagged)
			t.Flag = time.Since(t0).Seconds()
			t.Total = t.Flag
		case "collider":
			run, err := runner.Run(ctx, conn, m, models.RunOptions{Exclude: "casebook.issued", Prefix: "bench"})
			if err != nil {
				return res, err
			}
			t.Flagged, t.Flag, t.Total = run.Flagged, run.FlagSeconds, run.Seconds
		case "sandbox":
			// The model previewed as a modeler would: in the sandbox's
			// child process, over the pseudonymized snapshot, with the
			// same memory and threads as the live run.
			p, err := pv.Preview(ctx, casebook.User{Name: "bench", Role: casebook.RoleModeler}, jobs.PreviewRequest{Model: m.Name})
			if err != nil {
				return res, fmt.Errorf("%s in the sandbox: %w", m.Name, err)
			}
			t.Flagged, t.Flag, t.Total = p.Flagged, time.Since(t0).Seconds(), time.Since(t0).Seconds()
			fmt.Fprintf(stderr, "  sandbox %s: the preview's queries %.1f s of %.1f s\n", m.Name, p.Seconds, t.Total)
		default:
			return res, fmt.Errorf("unknown phase %q", phase)
		}
		fmt.Fprintf(stderr, "  %s %s: %d flagged, %.1f s\n", phase, m.Name, t.Flagged, t.Total)
		res.Models = append(res.Models, t)
	}
	return res, nil
}

// handSQL is a model's SQL as a person would run it by hand: its parameters
// written in (longest name first, so that $min_days is not read as $min).
func handSQL(m *models.Model, vals map[string]any) string {
	q := m.SQL
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, k := range names {
		q = strings.ReplaceAll(q, "$"+k, fmt.Sprint(vals[k]))
	}
	return q
}
