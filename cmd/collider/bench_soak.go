// collider bench soak: the real server, as a child process, under 100
// clients on loopback for a long while, with runs started back to back on a
// generated province (a new settlements delivery for each, while they
// last) and city bureaus acting on their leads. Each interval (a minute by
// default) prints the latencies, errors, the server's RSS and open file
// descriptors and the runs finished; at the end every acknowledged action
// is looked for in the store and the store is checked.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/duckdb/duckdb-go/v2"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"collider/casebook"
	"collider/jobs"
	"collider/synth"
)

// soakOptions are the soak's settings.
type soakOptions struct {
	dir         string
	duration    time.Duration
	interval    time.Duration
	settlements int64
	nights      int           // night deliveries after the history, each a 365th of the settlements
	nightEvery  time.Duration // how often a night arrives
	clients     int
	memoryLimit string
	threads     int
}

func benchSoak(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o soakOptions
	minutes := fs.Float64("minutes", 30, "how long the soak lasts, in minutes (fractions allowed)")
	fs.StringVar(&o.dir, "dir", filepath.Join(os.TempDir(), "collider-soak"), "working directory (the generated province is kept and reused)")
	fs.DurationVar(&o.interval, "interval", time.Minute, "how often a line of figures is printed")
	fs.Int64Var(&o.settlements, "settlements", 1_000_000, "settlements of the generated province")
	fs.IntVar(&o.nights, "nights", 30, "nights of settlements (each a 365th of the province's) held back from the history and delivered one every --night-every")
	fs.DurationVar(&o.nightEvery, "night-every", time.Minute, "how often the next night's settlements arrive")
	fs.IntVar(&o.clients, "clients", 100, "concurrent clients: city bureaus reading their leads and acting on them")
	fs.StringVar(&o.memoryLimit, "memory-limit", "4GB", "the server's DuckDB memory limit")
	fs.IntVar(&o.threads, "threads", 0, "the server's DuckDB threads (default: CPUs)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.duration = time.Duration(*minutes * float64(time.Minute))
	if o.duration <= 0 || o.interval <= 0 || o.nightEvery <= 0 || o.clients < 1 || o.nights < 0 || o.nights >= daysPerYear {
		fmt.Fprintf(stderr, "collider bench soak: --minutes, --interval, --night-every and --clients must be positive, --nights 0 to %d\n", daysPerYear-1)
		return 2
	}
	res, err := soak(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "collider bench soak:", err)
		return 1
	}
	if !res.ok() {
		return 1
	}
	return 0
}

// soakInterval is one line of the soak's figures.
type soakInterval struct {
	end       time.Duration
	requests  int64
	errors    int64
	latencies []time.Duration
	rssKB     int64
	fds       int
	mem       serverMemory
	runs      int
	actions   int64
}

func (s *soakInterval) quantile(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	return s.latencies[min(len(s.latencies)-1, int(q*float64(len(s.latencies))))]
}

// soakResult is what the soak found.
type soakResult struct {
	intervals []*soakInterval
	errors    int64
	errorSeen []string
	runs      int
	nights    int // night deliveries that arrived during the soak
	acked     int
	missing   int
	check     jobs.CheckReport
}

func (r soakResult) ok() bool {
	return r.errors == 0 && r.missing == 0 && r.check.OK && r.runs > 0 && r.acked > 0
}

// ack is an action the server acknowledged.
type ack struct {
	lead   int64
	action string
}

func soak(ctx context.Context, o soakOptions, stdout, stderr io.Writer) (soakResult, error) {
	var res soakResult
	prov, err := prepareSoak(ctx, o, stderr)
	if err != nil {
		return res, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.clients + 4}, Timeout: time.Minute}
	srv, err := startSoakServer(ctx, o, prov, client)
	if err != nil {
		return res, err
	}
	defer srv.kill()
	fmt.Fprintf(stderr, "soak: %d clients on %s for %s, a line every %s; server pid %d, log %s\n",
		o.clients, srv.base, o.duration, o.interval, srv.cmd.Process.Pid, srv.log)
	acked, err := drive(ctx, o, prov, srv, client, &res, stdout)
	if err != nil {
		return res, err
	}
	// The server stops; every acknowledged action must be in the store.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-srv.done; err != nil {
		return res, fmt.Errorf("the server did not stop cleanly: %v (see %s)", err, srv.log)
	}
	if err := verifySoak(ctx, prov.cfg, acked, &res); err != nil {
		return res, err
	}
	printSoakSummary(stdout, o, res)
	return res, nil
}

// soakProvince is the soak's province: its inbox (the year's history of
// settlements at the start, then a night's delivery released every
// --night-every, while they last), its store's settings, and a token for
// the province and for the bureau of each city.
type soakProvince struct {
	cfg      Config
	inbox    string
	release  func() bool
	province string
	cities   []string
	bureaus  map[string]string
}

// prepareSoak generates the province (once, kept in o.dir), lays out its
// inbox and adds the users to a new store.
func prepareSoak(ctx context.Context, o soakOptions, stderr io.Writer) (*soakProvince, error) {
	generated := filepath.Join(o.dir, fmt.Sprintf("province-%d", o.settlements))
	if _, err := os.Stat(filepath.Join(generated, synth.TruthFile)); err != nil {
		fmt.Fprintf(stderr, "generating a province of %d settlements into %s\n", o.settlements, generated)
		os.RemoveAll(generated)
		if _, err := generate(ctx, synth.Options{Out: generated, Seed: 1, Settlements: o.settlements}, stderr); err != nil {
			return nil, err
		}
	}
	inbox, pending, data := filepath.Join(o.dir, "inbox"), filepath.Join(o.dir, "pending"), filepath.Join(o.dir, "data")
	for _, d := range []string{inbox, pending, data} {
		os.RemoveAll(d)
	}
	if err := layOutSoakInbox(ctx, generated, inbox, pending, o.nights); err != nil {
		return nil, err
	}
	p := &soakProvince{cfg: defaultConfig(), inbox: inbox, bureaus: map[string]string{}}
	p.release = func() bool { // the next settlements delivery arrives (the history first)
		entries, _ := os.ReadDir(pending)
		if len(entries) == 0 {
			return false
		}
		os.MkdirAll(filepath.Join(inbox, "settlements"), 0o755)
		return os.Rename(filepath.Join(pending, entries[0].Name()), filepath.Join(inbox, "settlements", entries[0].Name())) == nil
	}
	p.release()

	// Users: the province starts runs; a bureau for every city of the
	// province's institutions acts on its leads.
	p.cfg.Data, p.cfg.MemoryLimit, p.cfg.Threads = data, o.memoryLimit, o.threads
	s, err := openStore(ctx, p.cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	cb := casebook.New(s.DB)
	if _, p.province, err = cb.AddUser(ctx, "soak province", casebook.RoleProvince, ""); err != nil {
		return nil, err
	}
	if p.cities, err = soakCities(ctx, generated); err != nil {
		return nil, err
	}
	for _, city := range p.cities {
		if _, p.bureaus[city], err = cb.AddUser(ctx, "soak "+city, casebook.RoleCity, city); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// soakServer is collider serve as a child process, so that its RSS and
// descriptors are its own.
type soakServer struct {
	cmd  *exec.Cmd
	done chan error
	base string
	log  string
}

func startSoakServer(ctx context.Context, o soakOptions, p *soakProvince, client *http.Client) (*soakServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(o.dir, "serve.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{"serve", "--data", p.cfg.Data, "--inbox", p.inbox, "--addr", addr, "--schedule", "off", "--memory-limit", o.memoryLimit}
	if o.threads > 0 {
		args = append(args, "--threads", strconv.Itoa(o.threads))
	}
	srv := &soakServer{cmd: exec.Command(self, args...), done: make(chan error, 1), base: "http://" + addr, log: logFile.Name()}
	srv.cmd.Stdout, srv.cmd.Stderr = logFile, logFile
	if err := srv.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { srv.done <- srv.cmd.Wait() }()
	if err := waitForServer(ctx, client, srv.base, srv.done); err != nil {
		srv.kill()
		return nil, err
	}
	return srv, nil
}

// kill ends the server if it has not stopped.
func (s *soakServer) kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		<-s.done
	}
}

// soakMeter gathers the figures of the current interval.
type soakMeter struct {
	mu      sync.Mutex
	current *soakInterval
	acked   []ack
	res     *soakResult
}

func (m *soakMeter) record(d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.current.requests++
	if err != nil {
		m.current.errors++
		m.res.errors++
		if len(m.res.errorSeen) < 10 {
			m.res.errorSeen = append(m.res.errorSeen, err.Error())
		}
		return
	}
	m.current.latencies = append(m.current.latencies, d)
}

// next ends the current interval and starts another.
func (m *soakMeter) next() *soakInterval {
	m.mu.Lock()
	defer m.mu.Unlock()
	iv := m.current
	m.current = &soakInterval{}
	return iv
}

// drive runs the soak for o.duration: runs back to back, the clients, and
// a line of figures every interval. It returns the acknowledged actions.
func drive(ctx context.Context, o soakOptions, p *soakProvince, srv *soakServer, client *http.Client, res *soakResult, stdout io.Writer) ([]ack, error) {
	start := time.Now()
	// The soak ends at its last interval's tick (or at o.duration, when
	// that comes first), its figures sampled before the clients stop.
	soakCtx, stop := context.WithCancel(ctx)
	defer stop()
	deadline := time.After(o.duration)
	m := &soakMeter{current: &soakInterval{}, res: res}
	var runs, nights atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)   // the nights and the runs
	go func() { // a night's settlements arrive every o.nightEvery, while they last
		defer wg.Done()
		tick := time.NewTicker(o.nightEvery)
		defer tick.Stop()
		for {
			select {
			case <-soakCtx.Done():
				return
			case <-tick.C:
				if p.release() {
					nights.Add(1)
				}
			}
		}
	}()
	go func() { // runs back to back
		defer wg.Done()
		for soakCtx.Err() == nil {
			status, err := soakRun(ctx, client, srv.base, p.province)
			if err == nil && status != jobs.RunSucceeded && status != jobs.RunPartial {
				err = fmt.Errorf("a run ended %s", status)
			}
			if err != nil {
				m.record(0, fmt.Errorf("run: %w", err))
				time.Sleep(time.Second)
				continue
			}
			runs.Add(1)
			m.mu.Lock()
			m.current.runs++
			m.mu.Unlock()
		}
	}()
	startClerks(soakCtx, o, p, srv, client, m, &wg)

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\trequests\treq/s\terrors\tp50 ms\tp99 ms\tactions\truns\tRSS MB\tDuckDB MB\tGo MB\tC used MB\tC free MB\tfds\t")
	tw.Flush()
	// The server's RSS, memory and descriptors are sampled as an interval
	// ends, the last one's while the clients are still connected.
	type sampled struct {
		rssKB int64
		fds   int
		mem   serverMemory
	}
	sample := func() sampled {
		return sampled{procRSS(srv.cmd.Process.Pid), procFDs(srv.cmd.Process.Pid), scrapeMemory(ctx, client, srv.base)}
	}
	closeInterval := func(at sampled) {
		iv := m.next()
		iv.end = time.Since(start)
		iv.rssKB, iv.fds, iv.mem = at.rssKB, at.fds, at.mem
		sort.Slice(iv.latencies, func(a, b int) bool { return iv.latencies[a] < iv.latencies[b] })
		seconds := iv.end.Seconds()
		if n := len(res.intervals); n > 0 {
			seconds = (iv.end - res.intervals[n-1].end).Seconds()
		}
		res.intervals = append(res.intervals, iv)
		fmt.Fprintf(tw, "%.2f\t%d\t%.0f\t%d\t%.2f\t%.2f\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t\n", iv.end.Minutes(), iv.requests, float64(iv.requests)/seconds,
			iv.errors, ms(iv.quantile(0.5)), ms(iv.quantile(0.99)), iv.actions, iv.runs, float64(iv.rssKB)/1024, iv.mem.duckdb, iv.mem.gosys, iv.mem.cInUse, iv.mem.cFree, iv.fds)
		tw.Flush()
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-tick.C:
			if time.Since(start) >= o.duration-o.interval/10 {
				running = false // the last interval, closed below
				break
			}
			closeInterval(sample())
		case <-deadline:
			running = false
		case <-ctx.Done():
			running = false
		case err := <-srv.done:
			return nil, fmt.Errorf("the server stopped during the soak: %v (see %s)", err, srv.log)
		}
	}
	last := sample()
	stop()
	wg.Wait() // the clients stop; the last run finishes
	closeInterval(last)
	res.runs, res.nights = int(runs.Load()), int(nights.Load())
	return m.acked, nil
}

// startClerks starts the clients: each a city bureau's clerk, owning a
// share of its city's leads (no two clients act on one lead), reading the
// inbox and a lead and, now and then, moving one of its leads on.
func startClerks(ctx context.Context, o soakOptions, p *soakProvince, srv *soakServer, client *http.Client, m *soakMeter, wg *sync.WaitGroup) {
	byCity := map[string][]int{}
	for i := 0; i < o.clients; i++ {
		city := p.cities[i%len(p.cities)]
		byCity[city] = append(byCity[city], i)
	}
	for i := 0; i < o.clients; i++ {
		city := p.cities[i%len(p.cities)]
		share, of := slicesIndex(byCity[city], i), len(byCity[city])
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &soakClient{http: client, base: srv.base, token: p.bureaus[city], record: m.record, rng: rand.New(rand.NewPCG(uint64(i), 7))}
			for ctx.Err() == nil {
				if a, ok := c.step(ctx, share, of); ok {
					m.mu.Lock()
					m.acked = append(m.acked, a)
					m.current.actions++
					m.mu.Unlock()
				}
			}
		}()
	}
}

// verifySoak looks for every acknowledged action in the stopped server's
// store, once each, and checks the store's invariants.
func verifySoak(ctx context.Context, cfg Config, acked []ack, res *soakResult) error {
	s, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	res.acked = len(acked)
	for _, a := range acked {
		var n int
		if err := s.DB.QueryRowContext(ctx, "SELECT count(*) FROM casebook.lead_events WHERE lead_id = ? AND action = ?", a.lead, a.action).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			res.missing++
		}
	}
	res.check, err = jobs.Check(ctx, s.DB)
	return err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func slicesIndex(xs []int, x int) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// printSoakSummary says what the soak found and how it stands against its goals.
func printSoakSummary(w io.Writer, o soakOptions, r soakResult) {
	var all []time.Duration
	var requests int64
	worst := time.Duration(0)
	for _, iv := range r.intervals {
		all = append(all, iv.latencies...)
		requests += iv.requests
		worst = max(worst, iv.quantile(0.99))
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	overall := &soakInterval{latencies: all}
	fmt.Fprintf(w, "\n%d requests, %d errors; p50 %.2f ms, p99 %.2f ms overall, worst minute's p99 %.2f ms; %d runs finished\n",
		requests, r.errors, ms(overall.quantile(0.5)), ms(overall.quantile(0.99)), ms(worst), r.runs)
	fmt.Fprintf(w, "nights of settlements delivered after the history: %d of %d (one every %s)\n", r.nights, o.nights, o.nightEvery)
	for _, e := range r.errorSeen {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
	fmt.Fprintf(w, "acknowledged actions checked present: %d of %d (%d missing)\n", r.acked-r.missing, r.acked, r.missing)
	if broken := r.check.Broken(); len(broken) > 0 {
		fmt.Fprintf(w, "collider check: %d of %d invariants broken\n", len(broken), len(r.check.Invariants))
		for _, inv := range broken {
			fmt.Fprintf(w, "  %s: %v\n", inv.Name, inv.Examples)
		}
	} else {
		fmt.Fprintf(w, "collider check: all %d invariants hold\n", len(r.check.Invariants))
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(w, "goal zero errors: %s\n", verdict(r.errors == 0))
	fmt.Fprintf(w, "goal p99 under 50 ms in every minute: %s (worst %.2f ms)\n", verdict(worst < 50*time.Millisecond), ms(worst))
	// Growth from minute 5 to the end: memory and descriptors stay flat.
	from := -1
	for i, iv := range r.intervals {
		if iv.end >= 5*time.Minute {
			from = i
			break
		}
	}
	last := r.intervals[len(r.intervals)-1]
	if from < 0 || from == len(r.intervals)-1 {
		fmt.Fprintf(w, "goal RSS and descriptors flat from minute 5: not judged (the soak ended at minute %.2f)\n", last.end.Minutes())
	} else {
		first := r.intervals[from]
		rss, fds, peak, peakFDs := soakGrowth(r.intervals[from:])
		fmt.Fprintf(w, "goal RSS and descriptors flat from minute 5 (growth under 10%%): %s (RSS %+.1f%% at most, %d MB at minute 5, %d MB at minute %.0f, %d MB at the end; descriptors %+.1f%% at most, %d → %d)\n",
			verdict(rss < 10 && fds < 10), rss, first.rssKB/1024, peak.rssKB/1024, peak.end.Minutes(), last.rssKB/1024, fds, first.fds, peakFDs.fds)
		fmt.Fprintf(w, "  from minute 5 to the end: DuckDB's %s → %s MB, Go's %s → %s MB, the C allocator's in use %s → %s MB and free %s → %s MB\n",
			first.mem.duckdb, last.mem.duckdb, first.mem.gosys, last.mem.gosys, first.mem.cInUse, last.mem.cInUse, first.mem.cFree, last.mem.cFree)
	}
	fmt.Fprintf(w, "goal no acknowledged action missing: %s\n", verdict(r.missing == 0 && r.acked > 0))
}

// soakGrowth is how far the RSS and the descriptors grew from the first
// interval given, judged on the highest sample, not the last one alone: a
// memory that climbs and falls back is not flat. It returns the growths in
// percent and the intervals of the highest samples.
func soakGrowth(ivs []*soakInterval) (rss, fds float64, peak, peakFDs *soakInterval) {
	first := ivs[0]
	peak, peakFDs = first, first
	for _, iv := range ivs {
		if iv.rssKB > peak.rssKB {
			peak = iv
		}
		if iv.fds > peakFDs.fds {
			peakFDs = iv
		}
	}
	growth := func(a, b int64) float64 { return 100 * float64(b-a) / float64(max(1, a)) }
	return growth(first.rssKB, peak.rssKB), growth(int64(first.fds), int64(peakFDs.fds)), peak, peakFDs
}

// soakClient is one clerk of a city bureau.
type soakClient struct {
	http   *http.Client
	base   string
	token  string
	record func(time.Duration, error)
	rng    *rand.Rand
	status int // which inbox it reads next
}

// soakNext is the action that moves a lead on from a status.
var soakNext = map[string]struct{ action, body string }{
	casebook.StatusNew:           {"accept", `{"action":"accept"}`},
	casebook.StatusAccepted:      {"investigate", `{"action":"investigate"}`},
	casebook.StatusInvestigating: {"close", `{"action":"close","outcome":"dismissed","note":"核查无误（压力测试）"}`},
}

// step reads an inbox page and one of its leads, and one time in four
// moves a lead of its share on; it returns the action when the server
// acknowledged one.
func (c *soakClient) step(ctx context.Context, share, of int) (ack, bool) {
	statuses := []string{casebook.StatusNew, casebook.StatusAccepted, casebook.StatusInvestigating}
	status := statuses[c.status%len(statuses)]
	c.status++
	var page struct {
		Items []struct {
			ID int64 `json:"lead_id"`
		} `json:"items"`
	}
	if !c.call(ctx, "GET", "/api/v1/leads?limit=50&status="+status, "", http.StatusOK, &page) {
		return ack{}, false
	}
	var mine []int64
	for _, l := range page.Items {
		if int(l.ID%int64(of)) == share {
			mine = append(mine, l.ID)
		}
	}
	if len(page.Items) > 0 {
		l := page.Items[c.rng.IntN(len(page.Items))]
		if !c.call(ctx, "GET", fmt.Sprintf("/api/v1/leads/%d", l.ID), "", http.StatusOK, nil) {
			return ack{}, false
		}
	}
	if len(mine) == 0 || c.rng.IntN(4) != 0 {
		return ack{}, false
	}
	lead := mine[c.rng.IntN(len(mine))]
	next := soakNext[status]
	if !c.call(ctx, "POST", fmt.Sprintf("/api/v1/leads/%d/events", lead), next.body, http.StatusCreated, nil) {
		return ack{}, false
	}
	return ack{lead, next.action}, true
}

// call makes a request and records its latency, or an error for any other
// status than want; a request cut off by the end of the soak is neither.
func (c *soakClient) call(ctx context.Context, method, path, body string, want int, out any) bool {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	t0 := time.Now()
	resp, err := c.http.Do(req)
	if ctx.Err() != nil {
		if err == nil {
			resp.Body.Close()
		}
		return false
	}
	if err != nil {
		c.record(0, fmt.Errorf("%s %s: %w", method, path, err))
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	d := time.Since(t0)
	if resp.StatusCode != want {
		c.record(0, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b[:min(len(b), 200)]))))
		return false
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.record(0, fmt.Errorf("%s %s: %w", method, path, err))
			return false
		}
	}
	c.record(d, nil)
	return true
}

// soakRun starts a run as the province and waits for its end.
func soakRun(ctx context.Context, client *http.Client, base, token string) (string, error) {
	do := func(method, path string) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, method, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	var r jobs.RunRecord
	for tries := 0; ; tries++ {
		code, body, err := do("POST", "/api/v1/runs")
		if err == nil && code == http.StatusAccepted {
			if err := json.Unmarshal(body, &r); err != nil {
				return "", err
			}
			break
		}
		// 409: the run before is still letting go of the lock (it shows
		// finished a moment before); anything else is an error.
		if err != nil || code != http.StatusConflict || tries >= 50 {
			return "", fmt.Errorf("POST /api/v1/runs: %d %v %s", code, err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for r.Status == jobs.RunRunning {
		time.Sleep(200 * time.Millisecond)
		code, body, err := do("GET", fmt.Sprintf("/api/v1/runs/%d", r.ID))
		if err == nil && code == http.StatusOK {
			err = json.Unmarshal(body, &r)
		}
		if err != nil || code != http.StatusOK {
			return "", fmt.Errorf("GET /api/v1/runs/%d: %d %v", r.ID, code, err)
		}
	}
	return r.Status, nil
}

// waitForServer waits until the server answers /healthz.
func waitForServer(ctx context.Context, client *http.Client, base string, done <-chan error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("the server exited at start: %v", err)
		default:
		}
		if resp, err := client.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the server did not answer /healthz within 2 minutes")
}

// megabytes is a figure in MB, "-" when it could not be read.
type megabytes float64

func (m megabytes) String() string {
	if m < 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(m), 'f', 0, 64)
}

// serverMemory is what of the server's memory its /metrics accounts for:
// DuckDB's (duckdb_memory(), every tag), what Go took from the system, and
// what the C allocator holds in use (DuckDB's included) and free.
type serverMemory struct {
	duckdb, gosys, cInUse, cFree megabytes
}

// scrapeMemory reads the server's memory from /metrics, as Prometheus
// would; a figure it cannot read is -1.
func scrapeMemory(ctx context.Context, client *http.Client, base string) serverMemory {
	mem := serverMemory{duckdb: -1, gosys: -1, cInUse: -1, cFree: -1}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return mem
	}
	resp, err := client.Do(req)
	if err != nil {
		return mem
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return mem
	}
	// sum adds a family's gauges whose labels include the pairs given.
	sum := func(name string, states ...string) megabytes {
		f, ok := fams[name]
		if !ok {
			return -1
		}
		var total float64
		for _, m := range f.GetMetric() {
			in := len(states) == 0
			for _, l := range m.GetLabel() {
				in = in || (l.GetName() == "state" && slices.Contains(states, l.GetValue()))
			}
			if in {
				total += m.GetGauge().GetValue()
			}
		}
		return megabytes(total / (1 << 20))
	}
	mem.duckdb, mem.gosys = sum("collider_duckdb_memory_bytes"), sum("go_memstats_sys_bytes")
	mem.cInUse, mem.cFree = sum("collider_c_heap_bytes", "in_use", "mapped"), sum("collider_c_heap_bytes", "free")
	return mem
}

// procRSS is a process's resident memory in KiB (0 if unknown).
func procRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(fields[1], 10, 64)
			return n
		}
	}
	return 0
}

// procFDs counts a process's open file descriptors.
func procFDs(pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(entries)
}

// daysPerYear cuts the generated settlements into a year of nights.
const daysPerYear = 365

// layOutSoakInbox copies every delivery of the generated province to the
// inbox but settlements, which it cuts into a year of nights held back in
// pending: the history (every night but the last nights), then the nights
// one by one, each a 365th of the settlements — a month of operations in
// a 30-minute soak, on a store that already holds the year.
func layOutSoakInbox(ctx context.Context, generated, inbox, pending string, nights int) error {
	entries, _ := filepath.Glob(filepath.Join(generated, "*", "*"))
	for _, src := range entries {
		rel, _ := filepath.Rel(generated, src)
		if strings.HasPrefix(rel, "settlements"+string(filepath.Separator)) {
			continue
		}
		if err := copyDir(src, filepath.Join(inbox, rel)); err != nil {
			return err
		}
	}
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	src := filepath.Join(generated, "settlements", synth.DefaultDelivery, "*.parquet")
	cut := func(name, where string) error {
		dir := filepath.Join(pending, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		q := fmt.Sprintf(`COPY (SELECT * EXCLUDE (n) FROM (SELECT *, row_number() OVER (ORDER BY settlement_id) AS n FROM read_parquet('%s'))
			WHERE %s) TO '%s' (FORMAT parquet)`, src, where, filepath.Join(dir, "part-00000.parquet"))
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "_SUCCESS"), nil, 0o644)
	}
	if err := cut("0000", fmt.Sprintf("n %% %d >= %d", daysPerYear, nights)); err != nil {
		return err
	}
	for i := 1; i <= nights; i++ {
		if err := cut(fmt.Sprintf("%04d", i), fmt.Sprintf("n %% %d = %d", daysPerYear, i-1)); err != nil {
			return err
		}
	}
	return nil
}

// copyDir copies a delivery directory's files.
func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// soakCities are the cities of the generated province's institutions: a
// lead of any of them may be routed during the soak.
func soakCities(ctx context.Context, generated string) ([]string, error) {
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	rows, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT DISTINCT substr(region_code, 1, 4) || '00' FROM read_parquet('%s')
		WHERE substr(region_code, 3, 4) <> '0000' ORDER BY 1`, filepath.Join(generated, "institutions", synth.DefaultDelivery, "*.parquet")))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("the generated province has no institution in a city")
	}
	return out, rows.Err()
}
