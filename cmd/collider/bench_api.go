// collider bench api: what a person's reads cost on a casebook of a
// province's size. A synthetic casebook (--clues, 48,000 by default: the
// Gansu run's; 1,000,000 for the worst case) is served in this process as
// `serve` serves it, and loopback clients read it: one lead at a time (the
// floor), then 100 clients with a day's mix (inboxes, lead pages and their
// events, the province's clue list, a lead action now and then) on an idle
// server, while a run started through the API loads and collides a
// province, and while a runaway draft preview runs into the sandbox's time
// limit; then the pages of issue 12 next to their API twins.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"collider/api"
	"collider/casebook"
	"collider/jobs"
	"collider/synth"
)

// loadResult is one load phase's latencies.
type loadResult struct {
	phase     string
	requests  int64
	errors    int64
	latencies []time.Duration
	byKind    map[string][]time.Duration
	seconds   float64
	note      string
}

func quantile(ls []time.Duration, q float64) time.Duration {
	if len(ls) == 0 {
		return 0
	}
	return ls[min(len(ls)-1, int(q*float64(len(ls))))]
}

func (r loadResult) quantile(q float64) time.Duration { return quantile(r.latencies, q) }

type benchAPIFlags struct {
	dir, memoryLimit, cpuProfile, mixProfile, pagesProfile string
	memProfile                                             string
	clues, settlements                                     int64
	clients, single, pageRounds, cacheMB                   int
	idle, draftTimeout                                     time.Duration
	busy, runaway, pages                                   bool
}

func benchAPI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f benchAPIFlags
	fs.StringVar(&f.dir, "dir", filepath.Join(os.TempDir(), "collider-bench-api"), "working directory")
	fs.Int64Var(&f.clues, "clues", 48_000, "clues of the synthetic casebook read")
	fs.Int64Var(&f.settlements, "settlements", 3_000_000, "settlements of the province the busy run loads")
	fs.IntVar(&f.clients, "clients", 100, "concurrent clients")
	fs.IntVar(&f.single, "single", 3000, "lead reads of the single client")
	fs.IntVar(&f.pageRounds, "page-rounds", 200, "requests of each page and of its API twin")
	fs.IntVar(&f.cacheMB, "read-cache-mb", 0, "the casebook's read cache in MB (0: serve's default, -1: none)")
	fs.DurationVar(&f.idle, "idle", 15*time.Second, "how long the idle phase lasts")
	fs.DurationVar(&f.draftTimeout, "draft-timeout", 30*time.Second, "the sandbox's time limit in the runaway-draft phase")
	fs.BoolVar(&f.busy, "busy", true, "measure the mix while a run is busy")
	fs.BoolVar(&f.runaway, "runaway", true, "measure the mix while a runaway draft preview runs")
	fs.BoolVar(&f.pages, "pages", true, "measure the pages /leads, /board, /batches/{id} next to the API")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the single-client lead reads to this file")
	fs.StringVar(&f.mixProfile, "mix-cpuprofile", "", "write a CPU profile of the idle phase's mix (server and clients: one process) to this file")
	fs.StringVar(&f.pagesProfile, "pages-cpuprofile", "", "write a CPU profile of the pages phase to this file")
	fs.StringVar(&f.memProfile, "memprofile", "", "write a heap profile to this file once the leads are in memory and the read cache is warm, and to this file .mix after the idle mix")
	fs.StringVar(&f.memoryLimit, "memory-limit", "8GB", "DuckDB memory limit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := runBenchAPI(ctx, f, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "collider bench api:", err)
		return 1
	}
	return 0
}

// benchServer is the server under test and what the clients need of it.
type benchServer struct {
	base     string
	client   *http.Client
	cb       *casebook.Casebook
	sandbox  *jobs.Sandbox
	cities   []benchCity
	province string // the province's token
	modeler  string
	batches  []int64
}

// benchCity is a city bureau's token and leads.
type benchCity struct {
	code, token string
	leads       []int64 // its leads
	fresh       []int64 // its new leads, taken one at a time for accept actions, across phases
	next        *atomic.Int64
}

func runBenchAPI(ctx context.Context, f benchAPIFlags, stdout, stderr io.Writer) error {
	tuneGC() // as serve does
	os.RemoveAll(f.dir)
	big := filepath.Join(f.dir, "big")
	if f.busy {
		fmt.Fprintf(stderr, "generating a province of %d settlements (the busy run)\n", f.settlements)
		if _, err := synth.Generate(ctx, synth.Options{Out: big, Seed: 2, Settlements: f.settlements}); err != nil {
			return err
		}
	}
	cfg := defaultConfig()
	cfg.Data, cfg.MemoryLimit, cfg.Inbox, cfg.DraftTimeout = filepath.Join(f.dir, "data"), f.memoryLimit, big, f.draftTimeout
	if f.cacheMB != 0 {
		cfg.ReadCacheMB = f.cacheMB
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	cb := newCasebook(s, cfg)
	t0 := time.Now()
	batches, err := cb.Synthesize(ctx, int(f.clues))
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "synthesized %d clues in %d batches in %.1f s\n", f.clues, len(batches), time.Since(t0).Seconds())
	sb := newSandbox(s, cfg)
	wb, err := newWorkbench(ctx, s, cfg, cb, sb, slog.Default())
	if err != nil {
		return err
	}
	p := &jobs.Pipeline{Store: s, Casebook: cb, Catalog: wb.Previewer.Catalog, Inbox: big}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srvCtx, stop := context.WithCancel(ctx)
	defer stop()
	t0 = time.Now()
	if err := cb.LoadLeads(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "leads loaded into memory in %.2f s (Go heap %d MB)\n", time.Since(t0).Seconds(), liveHeapMB())
	t0 = time.Now()
	warmed, err := cb.WarmReadCache(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "read cache warmed with %d clues in %.2f s (as serve does in the background at start; Go heap %d MB)\n",
		warmed, time.Since(t0).Seconds(), liveHeapMB())
	if f.memProfile != "" {
		if err := writeHeapProfile(f.memProfile); err != nil {
			return err
		}
	}
	srv := api.New(api.Config{Store: s, Casebook: cb, Runs: api.PipelineRuns(srvCtx, p),
		Models: api.Models{Catalog: wb.Previewer.Catalog, Previewer: wb.Previewer, Workbench: wb}})
	go srv.Serve(srvCtx, ln, 5*time.Second)
	defer cb.Close()
	bs := &benchServer{base: "http://" + ln.Addr().String(), cb: cb, sandbox: sb, batches: batches,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: f.clients + 10}, Timeout: 60 * time.Second}}
	if err := bs.users(ctx, s.DB); err != nil {
		return err
	}
	return bs.phases(ctx, f, stdout, stderr)
}

func (bs *benchServer) phases(ctx context.Context, f benchAPIFlags, stdout, stderr io.Writer) error {
	fmt.Fprintf(stderr, "one client reading leads: %d reads\n", f.single)
	stopProfile, err := cpuProfile(f.cpuProfile)
	if err != nil {
		return err
	}
	single := bs.singleLeads(ctx, f.single)
	stopProfile()
	fmt.Fprintf(stdout, "casebook: %d clues; one client, GET /api/v1/leads/{id} ×%d: p50 %s, p99 %s, max %s, errors %d (goal: ≤ 2 ms)\n",
		f.clues, len(single.latencies), round(single.quantile(0.5)), round(single.quantile(0.99)), round(single.quantile(1)), single.errors)
	results := []loadResult{}
	fmt.Fprintf(stderr, "idle: %d clients with the mix for %s\n", f.clients, f.idle)
	idleCtx, cancelIdle := context.WithTimeout(ctx, f.idle)
	if stopProfile, err = cpuProfile(f.mixProfile); err != nil {
		cancelIdle()
		return err
	}
	results = append(results, bs.hammer(idleCtx, "idle", f.clients))
	stopProfile()
	cancelIdle()
	if f.memProfile != "" { // what the idle mix allocated: go tool pprof -sample_index=alloc_space -base F F.mix
		if err := writeHeapProfile(f.memProfile + ".mix"); err != nil {
			return err
		}
	}
	if f.busy {
		r, err := bs.busyPhase(ctx, f.clients, stderr)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	if f.runaway {
		r, err := bs.runawayPhase(ctx, f.clients, f.draftTimeout, stderr)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	printMix(stdout, f.clients, results)
	if f.pages {
		if stopProfile, err = cpuProfile(f.pagesProfile); err != nil {
			return err
		}
		defer stopProfile()
		return bs.pagesPhase(ctx, f.pageRounds, stdout, stderr)
	}
	return nil
}

// cpuProfile starts a CPU profile into path (none if path is empty) and
// returns what stops it.
func cpuProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func round(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}

func printMix(stdout io.Writer, clients int, results []loadResult) {
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tclients\trequests\terrors\treq/s\tp50\tp99\tmax\tp99 inbox\tp99 lead\tp99 events\tp99 clues\tp99 action")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s", r.phase, clients, r.requests, r.errors, float64(r.requests)/r.seconds,
			round(r.quantile(0.50)), round(r.quantile(0.99)), round(r.quantile(1)))
		for _, k := range []string{"inbox", "lead", "events", "clues", "action"} {
			fmt.Fprintf(tw, "\t%s", round(quantile(r.byKind[k], 0.99)))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for _, r := range results {
		if r.note != "" {
			fmt.Fprintf(stdout, "%s: %s\n", r.phase, r.note)
		}
	}
	fmt.Fprintln(stdout, "goal: p99 < 50 ms in every phase, zero errors, ≥ 3,000 requests/s")
}

func sortDurations(ls []time.Duration) {
	sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
}

// liveHeapMB is the Go heap's live size after a collection, in MB.
func liveHeapMB() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc >> 20
}

// writeHeapProfile writes a heap profile (pprof) to path, as of a
// collection made now (a profile shows the last one's).
func writeHeapProfile(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
