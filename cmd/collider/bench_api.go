// collider bench api: the API's latency under load while a run is busy, next
// to the same load on an idle server, in the same process as `serve`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
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
	seconds   float64
}

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]
}

func benchAPI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", filepath.Join(os.TempDir(), "collider-bench-api"), "working directory")
	settlements := fs.Int64("settlements", 3_000_000, "settlements of the province the busy run loads")
	clients := fs.Int("clients", 100, "concurrent clients reading lead inboxes")
	idle := fs.Duration("idle", 10*time.Second, "how long the idle baseline lasts")
	memoryLimit := fs.String("memory-limit", "8GB", "DuckDB memory limit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "collider bench api:", err); return 1 }
	os.RemoveAll(*dir)
	small, big := filepath.Join(*dir, "small"), filepath.Join(*dir, "big")
	fmt.Fprintf(stderr, "generating a small province (leads to read) and one of %d settlements (the busy run)\n", *settlements)
	if _, err := synth.Generate(ctx, synth.Options{Out: small, Seed: 1, Settlements: 50_000}); err != nil {
		return fail(err)
	}
	if _, err := synth.Generate(ctx, synth.Options{Out: big, Seed: 2, Settlements: *settlements, Delivery: "0002"}); err != nil {
		return fail(err)
	}
	cfg := defaultConfig()
	cfg.Data, cfg.MemoryLimit, cfg.Inbox = filepath.Join(*dir, "data"), *memoryLimit, small
	s, err := openStore(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	cat, err := liveCatalog(ctx, "", stderr)
	if err != nil {
		return fail(err)
	}
	cb := newCasebook(s, cfg)
	p := &jobs.Pipeline{Store: s, Casebook: cb, Catalog: cat, Inbox: small}
	if _, err := p.Run(ctx, "cli", "bench"); err != nil {
		return fail(err)
	}
	// One token per city that has leads.
	rows, err := s.DB.QueryContext(ctx, "SELECT DISTINCT city_code FROM casebook.leads WHERE city_code NOT LIKE '__0000' ORDER BY 1")
	if err != nil {
		return fail(err)
	}
	var tokens []string
	for rows.Next() {
		var city string
		rows.Scan(&city)
		_, tok, err := cb.AddUser(ctx, "bench "+city, casebook.RoleCity, city)
		if err != nil {
			rows.Close()
			return fail(err)
		}
		tokens = append(tokens, tok)
	}
	rows.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	srvCtx, stop := context.WithCancel(ctx)
	defer stop()
	srv := api.New(api.Config{Store: s, Casebook: cb, Runs: api.PipelineRuns(srvCtx, p)})
	go srv.Serve(srvCtx, ln, 5*time.Second)
	base := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}, Timeout: 30 * time.Second}

	fmt.Fprintf(stderr, "idle baseline: %d clients for %s\n", *clients, *idle)
	idleCtx, cancelIdle := context.WithTimeout(ctx, *idle)
	baseline := hammer(idleCtx, "idle", client, base, tokens, *clients)
	cancelIdle()

	// The busy phase: a run loading the big province, models, publishing.
	p.Inbox = big
	busyCtx, cancelBusy := context.WithCancel(ctx)
	var busy loadResult
	done := make(chan struct{})
	go func() { busy = hammer(busyCtx, "during run", client, base, tokens, *clients); close(done) }()
	fmt.Fprintln(stderr, "busy: the same clients while a run loads and collides the big province")
	start := time.Now()
	out, err := p.Run(ctx, "cli", "bench")
	runSeconds := time.Since(start).Seconds()
	cancelBusy()
	<-done
	if err != nil {
		return fail(err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tclients\trequests\terrors\treq/s\tp50\tp99\tmax")
	for _, r := range []loadResult{baseline, busy} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\n", r.phase, *clients, r.requests, r.errors, float64(r.requests)/r.seconds,
			r.quantile(0.50).Round(10*time.Microsecond), r.quantile(0.99).Round(10*time.Microsecond), r.quantile(1).Round(10*time.Microsecond))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "the run: %d settlements loaded and collided in %.1f s (batch %d); p99 during the run / idle: %.2fx (goal: p99 < 50 ms, zero errors)\n",
		*settlements, runSeconds, out.BatchID, float64(busy.quantile(0.99))/float64(max(1, baseline.quantile(0.99))))
	return 0
}

// hammer runs n clients reading lead inboxes until ctx ends.
func hammer(ctx context.Context, phase string, client *http.Client, base string, tokens []string, n int) loadResult {
	var mu sync.Mutex
	res := loadResult{phase: phase}
	var errs, reqs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			token := tokens[i%len(tokens)]
			var local []time.Duration
			for ctx.Err() == nil {
				req, _ := http.NewRequest("GET", base+"/api/v1/leads?limit=50", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if ctx.Err() != nil {
					break // cut off by the end of the phase, not an answer
				}
				reqs.Add(1)
				if err != nil || resp.StatusCode != 200 {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			res.latencies = append(res.latencies, local...)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	res.seconds = time.Since(start).Seconds()
	res.requests, res.errors = reqs.Load(), errs.Load()
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	return res
}
