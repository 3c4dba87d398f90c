// Package synth generates a synthetic Gansu-like province for collider
// (collider gen): the six feeds as Parquet deliveries in inbox layout, with
// fraud planted for every model and near misses beside it, and the ground
// truth of both.
//
//	OUT/<feed>/<delivery>/part-NNNNN.parquet, _SUCCESS   the good delivery of every feed
//	OUT/truth.csv     expect,model,settlement_id,reason,scenario
//	                  flag: the model must flag the settlement with that reason;
//	                  clear: a near miss no model may flag (model: the one it is aimed at)
//	OUT/bad_rows.csv  with Options.Bad: the bad cells of settlements/9001-bad-rows
//	                  (see bad.go for the other bad deliveries)
//
// Every time is a China Standard Time wall-clock time: TIMESTAMP columns are
// TIMESTAMP(MILLIS, isAdjustedToUTC=false) carrying the wall-clock value.
//
// Generation streams person by person, so memory stays bounded from ten
// thousand to a hundred million settlements; the output is a function of
// the options alone (no clock, no map order, no race on order), so the same
// options give byte-identical files.
package synth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// Options says what to generate.
type Options struct {
	Out         string // output directory: OUT/<feed>/<delivery>/part-NNNNN.parquet + _SUCCESS, OUT/truth.csv
	Seed        int64
	Persons     int64  // default Settlements*25/63, at least 1000
	Settlements int64  // target number of settlements, planted ones included (default 10,000)
	Locations   int64  // target number of location records (default Settlements*50/63)
	Delivery    string // delivery directory name (default "0001")
	FileRows    int64  // rows per Parquet file before the next part starts (default 4,000,000)
	Bad         bool   // also write the bad deliveries and OUT/bad_rows.csv
	// Progress is called from one goroutine after every batch with the
	// settlements written so far and the target; may be nil.
	Progress func(done, total int64)
}

// Summary says what was generated.
type Summary struct {
	Out          string
	Persons      int64
	Institutions int
	Rows         map[string]int64 // rows written per feed in the good delivery
	Planted      int              // truth rows expected flagged (one per settlement)
	NearMisses   int              // truth rows expected clear
	Scenarios    map[string]int   // persons per scenario
	BadRows      int              // bad cells listed in bad_rows.csv
	Files        []string         // every file written, relative to Out, sorted
}

// Defaults.
const (
	DefaultSettlements = 10_000
	DefaultDelivery    = "0001"
	DefaultFileRows    = 4_000_000
	MinPersons         = 1000
)

func (o Options) withDefaults() (Options, error) {
	if o.Out == "" {
		return o, errors.New("synth: no output directory")
	}
	if o.Settlements <= 0 {
		o.Settlements = DefaultSettlements
	}
	if o.Persons == 0 {
		o.Persons = max(MinPersons, o.Settlements*25/63)
	}
	if o.Persons < MinPersons || o.Persons >= 1<<32 {
		return o, fmt.Errorf("synth: persons must be between %d and %d, not %d", MinPersons, int64(1)<<32-1, o.Persons)
	}
	if o.Locations == 0 {
		o.Locations = o.Settlements * 50 / 63
	}
	if o.Locations < 0 {
		o.Locations = 0
	}
	if o.Delivery == "" {
		o.Delivery = DefaultDelivery
	}
	if filepath.Base(o.Delivery) != o.Delivery || o.Delivery == "." || o.Delivery == ".." {
		return o, fmt.Errorf("synth: delivery %q must be a plain directory name", o.Delivery)
	}
	if o.FileRows <= 0 {
		o.FileRows = DefaultFileRows
	}
	return o, nil
}

// Feed names, as in feeds.Contracts.
const (
	feedInstitutions = "institutions"
	feedResidents    = "residents"
	feedCivil        = "civil_status"
	feedFloating     = "floating"
	feedLocations    = "locations"
	feedSettlements  = "settlements"
)

var goodFeeds = []string{feedInstitutions, feedResidents, feedCivil, feedFloating, feedLocations, feedSettlements}

// Generate writes the province into opt.Out. It refuses to write into a
// delivery directory that already holds files, so that a run never mixes
// with an earlier one.
func Generate(ctx context.Context, opt Options) (Summary, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return Summary{}, err
	}
	w, err := prepareWorld(opt)
	if err != nil {
		return Summary{}, err
	}

	dirs := map[string]string{}
	for _, feed := range goodFeeds {
		dirs[feed] = filepath.Join(opt.Out, feed, opt.Delivery)
		if err := prepareDir(dirs[feed]); err != nil {
			return Summary{}, err
		}
	}
	sum := Summary{Out: opt.Out, Persons: w.persons, Institutions: len(w.insts), Rows: map[string]int64{}, Scenarios: map[string]int{}}
	var files []string

	insts := make([]institutionRow, len(w.insts))
	for i, in := range w.insts {
		insts[i] = institutionRow{InstitutionID: in.id, Name: in.name, Kind: in.kind, RegionCode: in.region}
		if in.lat != 0 || in.lon != 0 {
			insts[i].Lat, insts[i].Lon = &w.insts[i].lat, &w.insts[i].lon
		}
	}
	fs, err := writeAll(dirs[feedInstitutions], insts)
	if err != nil {
		return Summary{}, err
	}
	files = append(files, fs...)
	sum.Rows[feedInstitutions] = int64(len(insts))

	fs, err = w.run(ctx, dirs, &sum)
	if err != nil {
		return Summary{}, err
	}
	files = append(files, fs...)
	for _, feed := range goodFeeds {
		if err := markComplete(dirs[feed]); err != nil {
			return Summary{}, err
		}
		files = append(files, filepath.Join(dirs[feed], "_SUCCESS"))
	}
	if opt.Bad {
		fs, n, err := w.writeBad()
		if err != nil {
			return Summary{}, err
		}
		files = append(files, fs...)
		sum.BadRows = n
	}
	for _, f := range files {
		rel, err := filepath.Rel(opt.Out, f)
		if err != nil {
			rel = f
		}
		sum.Files = append(sum.Files, filepath.ToSlash(rel))
	}
	sort.Strings(sum.Files)
	return sum, nil
}

// prepareWorld makes the province of opt: its counties, institutions, and
// how persons and settlements are spread over them.
func prepareWorld(opt Options) (*world, error) {
	w, err := newWorld(opt)
	if err != nil {
		return nil, err
	}
	w.scenarioCount = min(max(w.persons*3/1000, int64(4*len(scenarios))), w.persons/4)
	w.baseSettle = max(0, opt.Settlements-w.countPlanted())
	return w, nil
}

// prepareDir creates a delivery directory, refusing one that holds files.
func prepareDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err == nil && len(entries) > 0 {
		return fmt.Errorf("synth: %s already holds files; choose another delivery or an empty output directory", dir)
	}
	return os.MkdirAll(dir, 0o755)
}

// countPlanted counts the planted settlements of every scenario person, so
// that the baseline makes up exactly the rest of the settlement target.
// Planting comes first in a person's generation and does not depend on the
// baseline, so this dry run plants exactly what the real run will.
func (w *world) countPlanted() int64 {
	b := newBatch()
	g := newGen(w, b)
	g.countOnly = true
	var n int64
	for ord := int64(0); ord < w.scenarioCount; ord++ {
		g.person(ord * w.persons / w.scenarioCount)
		n += int64(len(b.settlements))
		b.reset()
	}
	return n
}

// truthRow is a settlement the truth file names, by its place in its batch.
type truthRow struct {
	local    int32
	scenario uint8
	flag     bool
	reason   string
}

// batch holds the rows of a run of consecutive persons on their way from a
// worker to the writers.
type batch struct {
	residents   []residentRow
	civil       []civilStatusRow
	floating    []floatingRow
	locations   []locationRow
	settlements []settlementRow
	truth       []truthRow
	scenarios   []int32 // persons per scenario

	// Values of optional columns, pointed to by the rows.
	i64 slab[int64]
	i32 slab[int32]
	f64 slab[float64]
	str slab[string]

	settleBase int64 // settlements before this batch, so ids follow output order
	eventBase  int64
	pending    atomic.Int32 // writers still to see it
}

func newBatch() *batch { return &batch{scenarios: make([]int32, len(scenarios))} }

func (b *batch) reset() {
	b.residents = b.residents[:0]
	b.civil = b.civil[:0]
	b.floating = b.floating[:0]
	b.locations = b.locations[:0]
	b.settlements = b.settlements[:0]
	b.truth = b.truth[:0]
	clear(b.scenarios)
	b.i64.reset()
	b.i32.reset()
	b.f64.reset()
	b.str.reset()
}

// chunkPersons is how many consecutive persons one batch holds.
const chunkPersons = 2048

// run generates all persons with one worker per CPU and streams the batches,
// in person order, to one writer per feed and one for the truth file.
func (w *world) run(parent context.Context, dirs map[string]string, sum *Summary) ([]string, error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	nChunks := (w.persons + chunkPersons - 1) / chunkPersons
	workers := max(1, runtime.GOMAXPROCS(0))
	inflight := 2*workers + 4 // every batch that exists: memory stays bounded
	free := make(chan *batch, inflight)
	for i := 0; i < inflight; i++ {
		free <- newBatch()
	}

	outs := make([]chan *batch, workers)
	var workersDone sync.WaitGroup
	for wi := range outs {
		outs[wi] = make(chan *batch, 1)
		workersDone.Add(1)
		go func(wi int) {
			defer workersDone.Done()
			defer close(outs[wi])
			g := newGen(w, nil)
			for c := int64(wi); c < nChunks; c += int64(workers) {
				var b *batch
				select {
				case b = <-free:
				case <-ctx.Done():
					return
				}
				g.b = b
				for p := c * chunkPersons; p < min(w.persons, (c+1)*chunkPersons); p++ {
					g.person(p)
				}
				select {
				case outs[wi] <- b:
				case <-ctx.Done():
					return
				}
			}
		}(wi)
	}

	sinks := w.sinks(dirs, sum)
	var (
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		cancel(err)
	}
	var sinksDone sync.WaitGroup
	for _, s := range sinks {
		s.ch = make(chan *batch, 2)
		sinksDone.Add(1)
		go func(s *sink) {
			defer sinksDone.Done()
			failed := false
			for b := range s.ch {
				if !failed {
					if err := s.write(b); err != nil {
						failed = true
						fail(err)
					}
				}
				if b.pending.Add(-1) == 0 {
					b.reset()
					free <- b // never blocks: free holds every batch there is
				}
			}
			if failed {
				s.abort()
			} else if err := s.close(); err != nil {
				fail(err)
			}
		}(s)
	}

	var settleBase, eventBase int64
	perScenario := make([]int64, len(scenarios))
sequence:
	for c := int64(0); c < nChunks; c++ {
		var b *batch
		var ok bool
		select {
		case b, ok = <-outs[c%int64(workers)]:
		case <-ctx.Done():
			break sequence
		}
		if !ok {
			break sequence
		}
		b.settleBase, b.eventBase = settleBase, eventBase
		settleBase += int64(len(b.settlements))
		eventBase += int64(len(b.locations))
		for j, n := range b.scenarios {
			perScenario[j] += int64(n)
		}
		b.pending.Store(int32(len(sinks)))
		for _, s := range sinks {
			s.ch <- b // writers always drain their channel, even after an error
		}
	}
	for _, s := range sinks {
		close(s.ch)
	}
	sinksDone.Wait()
	cancel(nil)
	workersDone.Wait()

	if firstErr != nil {
		return nil, firstErr
	}
	if err := parent.Err(); err != nil {
		return nil, err
	}
	var files []string
	for _, s := range sinks {
		files = append(files, s.files()...)
	}
	for j, n := range perScenario {
		if n > 0 {
			sum.Scenarios[scenarios[j].name] = int(n)
		}
	}
	return files, nil
}

// sink is one writer goroutine's work: a feed or the truth file.
type sink struct {
	ch    chan *batch
	write func(*batch) error
	close func() error
	abort func()
	files func() []string
}

func feedSink[T any](dir string, fileRows int64, rows func(*batch) []T, fill func(*batch, []T), done func(int64)) *sink {
	fw := newFeedWriter[T](dir, fileRows)
	return &sink{
		write: func(b *batch) error {
			rs := rows(b)
			if fill != nil {
				fill(b, rs)
			}
			if err := fw.write(rs); err != nil {
				return err
			}
			if done != nil {
				done(fw.rows)
			}
			return nil
		},
		close: func() error { return fw.close() },
		abort: fw.abort,
		files: func() []string { return fw.files },
	}
}

func (w *world) sinks(dirs map[string]string, sum *Summary) []*sink {
	opt := w.opt
	var mu sync.Mutex // the sinks report their counts from their own goroutines
	count := func(feed string) func(int64) {
		return func(n int64) {
			mu.Lock()
			sum.Rows[feed] = n
			mu.Unlock()
		}
	}
	settleCount := count(feedSettlements)
	progress := func(n int64) {
		settleCount(n)
		if opt.Progress != nil {
			opt.Progress(n, opt.Settlements)
		}
	}
	// Every feed gets its rows counted even when a batch brings none.
	for _, feed := range goodFeeds[1:] {
		sum.Rows[feed] = 0
	}
	ss := []*sink{
		feedSink(dirs[feedResidents], opt.FileRows, func(b *batch) []residentRow { return b.residents }, nil, count(feedResidents)),
		feedSink(dirs[feedCivil], opt.FileRows, func(b *batch) []civilStatusRow { return b.civil }, nil, count(feedCivil)),
		feedSink(dirs[feedFloating], opt.FileRows, func(b *batch) []floatingRow { return b.floating }, nil, count(feedFloating)),
		feedSink(dirs[feedLocations], opt.FileRows, func(b *batch) []locationRow { return b.locations },
			func(b *batch, rs []locationRow) {
				var buf [13]byte
				for i := range rs {
					rs[i].EventID = string(appendID(buf[:0], 'E', b.eventBase+int64(i)+1))
				}
			}, count(feedLocations)),
		feedSink(dirs[feedSettlements], opt.FileRows, func(b *batch) []settlementRow { return b.settlements },
			func(b *batch, rs []settlementRow) {
				var buf [13]byte
				for i := range rs {
					rs[i].SettlementID = string(appendID(buf[:0], 'S', b.settleBase+int64(i)+1))
				}
			}, progress),
		w.truthSink(sum),
	}
	return ss
}

// TruthFile and BadRowsFile sit directly in the output directory.
const (
	TruthFile   = "truth.csv"
	BadRowsFile = "bad_rows.csv"
)

// truthSink writes OUT/truth.csv: one row per planted settlement (expect
// flag) and per near-miss settlement (expect clear).
func (w *world) truthSink(sum *Summary) *sink {
	path := filepath.Join(w.opt.Out, TruthFile)
	var f *os.File
	var bw *bufio.Writer
	open := func() error {
		var err error
		if f, err = os.Create(path); err != nil {
			return err
		}
		bw = bufio.NewWriterSize(f, 256<<10)
		_, err = bw.WriteString("expect,model,settlement_id,reason,scenario\n")
		return err
	}
	var openErr error
	opened := false
	line := make([]byte, 0, 128)
	return &sink{
		write: func(b *batch) error {
			if !opened {
				opened, openErr = true, open()
			}
			if openErr != nil {
				return openErr
			}
			for _, t := range b.truth {
				sc := &scenarios[t.scenario]
				line = line[:0]
				if t.flag {
					line = append(line, "flag,"...)
					sum.Planted++
				} else {
					line = append(line, "clear,"...)
					sum.NearMisses++
				}
				line = append(line, sc.model...)
				line = append(line, ',')
				line = appendID(line, 'S', b.settleBase+int64(t.local)+1)
				line = append(line, ',')
				line = append(line, t.reason...)
				line = append(line, ',')
				line = append(line, sc.name...)
				line = append(line, '\n')
				if _, err := bw.Write(line); err != nil {
					return err
				}
			}
			return nil
		},
		close: func() error {
			if !opened {
				if err := open(); err != nil {
					return err
				}
			}
			if openErr != nil {
				return openErr
			}
			err := bw.Flush()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		},
		abort: func() {
			if f != nil {
				f.Close()
			}
		},
		files: func() []string { return []string{path} },
	}
}
