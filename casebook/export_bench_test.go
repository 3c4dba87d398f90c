// This file measures the one exporter on a batch of a million clues in each
// format: rows per second and peak memory, the goal being a bounded Go heap
// whatever the size. It is a benchmark, out of the default test run:
//
//	go test -run XXX -bench BenchmarkExport -benchtime 1x ./casebook/
//
// COLLIDER_BENCH_CLUES sets another size.
package casebook_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"collider/casebook"
	"collider/store"
)

// fillClues writes n clues and their leads in SQL, as a published batch
// would: realistic widths (a Chinese narrative, JSON evidence, ID numbers).
func fillClues(b *testing.B, cb *casebook.Casebook, n int) {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	_, err := cb.DB.ExecContext(ctx, `INSERT INTO casebook.clues
		SELECT i, 1,
			['deceased_claims', 'impossible_location', 'phantom_purchases', 'overlapping_stays', 'unknown_identity'][i % 5 + 1],
			md5(CAST(i % 5 AS VARCHAR)) || md5(CAST(i % 5 + 7 AS VARCHAR)),
			['high', 'medium', 'low'][i % 3 + 1],
			round(random() * 5000, 2),
			CASE WHEN i % 7 = 0 THEN 'after_death;hukou_cancelled' ELSE 'after_death' END,
			'620102' || CAST(1940 + i % 70 AS VARCHAR) || '0229' || lpad(CAST(i % 1000 AS VARCHAR), 3, '0') || 'X',
			['张三', '李四光', '欧阳建国', '王五'][i % 4 + 1],
			'P620102' || lpad(CAST(i % 100000 AS VARCHAR), 5, '0'),
			'城关区仁和大药房(' || CAST(i % 50 AS VARCHAR) || '店)',
			['620100', '620200', '620300', '620400', '620500', '620600', '620700', '620800', '620900', '621000', '621100', '621200', '622900', '623000'][i % 14 + 1],
			1 + i % 3,
			'S' || lpad(CAST(i AS VARCHAR), 12, '0') || ';S' || lpad(CAST(i + 1 AS VARCHAR), 12, '0'),
			TIMESTAMP '2025-01-01 08:00:00' + to_minutes(CAST(i % 500000 AS BIGINT)),
			TIMESTAMP '2025-01-01 09:30:00' + to_minutes(CAST(i % 500000 AS BIGINT)),
			CAST((i % 100000) / 100.0 + 10 AS DECIMAL(18,2)),
			CAST((i % 100000) / 150.0 + 5 AS DECIMAL(18,2)),
			'参保人620102' || CAST(1940 + i % 70 AS VARCHAR) || '0229' || lpad(CAST(i % 1000 AS VARCHAR), 3, '0') ||
				'X于2025-02-21死亡（公安生存状态），2025-03-04至2025-04-25在城关区仁和大药房（P62010200003）购药结算2次，基金支付420.17元。',
			'[{"n":1,"settlement_id":"S' || lpad(CAST(i AS VARCHAR), 12, '0') || '","reason":"after_death","visit_type":"pharmacy",' ||
				'"visit_start":"2025-03-04 10:34:00","visit_end":null,"total_amount":291.81,"fund_amount":289.19,' ||
				'"evidence":{"death_date":"2025-02-21","days_after_death":11,"visit_date":"2025-03-04"}}]',
			CASE WHEN i % 10 = 0 THEN i - 1 END
		FROM range(1, ? + 1) t(i)`, n)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cb.DB.ExecContext(ctx, `INSERT INTO casebook.leads
		SELECT clue_id, city_code, 'new', NULL, NULL, NULL, TIMESTAMP '2026-01-05 02:00:00', DATE '2026-03-06', TIMESTAMP '2026-01-05 02:00:00', NULL
		FROM casebook.clues`); err != nil {
		b.Fatal(err)
	}
	b.Logf("filled %d clues in %v", n, time.Since(start).Round(time.Millisecond))
}

// peakRSS reads the process's peak resident set (VmHWM), in bytes.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS starts VmHWM afresh from the current RSS (Linux clear_refs).
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// heapSampler records the peak Go heap in use while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func sampleHeap(every time.Duration) *heapSampler {
	s := &heapSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var m runtime.MemStats
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > s.peak.Load() {
				s.peak.Store(m.HeapInuse)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) done() uint64 {
	close(s.stop)
	s.wg.Wait()
	return s.peak.Load()
}

// countingDiscard counts what an export writes and throws it away.
type countingDiscard struct{ n int64 }

func (w *countingDiscard) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// Exporting a million clues in each format: rows/s and peak memory. The Go
// heap is the exporter's own; the process RSS also holds DuckDB's buffers,
// bounded by the store's memory_limit.
func BenchmarkExport(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("COLLIDER_BENCH_CLUES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("COLLIDER_BENCH_CLUES=%q", v)
		}
	}
	dir := b.TempDir()
	s, err := store.Open(context.Background(), store.Options{Dir: dir, MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	cb := casebook.New(s.DB)
	cb.TmpDir = dir
	fillClues(b, cb, n)
	users := []casebook.User{
		{ID: 1, Name: "省专班", Role: casebook.RoleProvince},
		{ID: 2, Name: "建模人员", Role: casebook.RoleModeler}, // masking on every row
	}
	for _, u := range users {
		for _, format := range casebook.Formats {
			b.Run(fmt.Sprintf("%s/%s", format, u.Role), func(b *testing.B) {
				runtime.GC()
				rssReset := resetPeakRSS()
				rssBefore := peakRSS()
				heap := sampleHeap(5 * time.Millisecond)
				var out countingDiscard
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					rows, err := cb.Export(context.Background(), u, casebook.ClueFilter{Batch: 1}, format, &out)
					if err != nil {
						b.Fatal(err)
					}
					if rows != int64(n) {
						b.Fatalf("exported %d rows of %d", rows, n)
					}
				}
				b.StopTimer()
				peakHeap := heap.done()
				rss := peakRSS()
				rowsPerSec := float64(n) * float64(b.N) / b.Elapsed().Seconds()
				b.ReportMetric(rowsPerSec, "rows/s")
				b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
				b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MB")
				// What the export itself costs the process: the peak RSS over
				// what it held before (the store, DuckDB's cache of the
				// clues just written), the Go heap and DuckDB's buffers alike.
				growth := rss - rssBefore
				rssNote := fmt.Sprintf("%d MB over the %d MB before", growth>>20, rssBefore>>20)
				if !rssReset {
					rssNote, growth = "since the previous format (no clear_refs here)", 0
				}
				b.ReportMetric(float64(growth)/(1<<20), "rss-growth-MB")
				fmt.Printf("export %-7s as %-8s %d rows, %d MB written in %v: %.0f rows/s, peak Go heap %d MB, peak RSS %d MB (%s)\n",
					format, u.Role, n, out.n/int64(b.N)>>20, (b.Elapsed() / time.Duration(b.N)).Round(time.Millisecond), rowsPerSec,
					peakHeap>>20, rss>>20, rssNote)
				if peakHeap > 200<<20 || growth > 200<<20 {
					b.Errorf("exporting %s took %d MB of Go heap and %d MB more RSS: over the 200 MB goal", format, peakHeap>>20, growth>>20)
				}
			})
		}
	}
}
