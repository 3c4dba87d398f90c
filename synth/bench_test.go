// bench_test.go measures generation speed in settlements per second of
// total output (every feed written). SYNTH_BENCH_SETTLEMENTS sets the size
// of one run (default 200,000).

package synth

import (
	"context"
	"os"
	"strconv"
	"testing"
)

func BenchmarkGenerate(b *testing.B) {
	n := int64(200_000)
	if s := os.Getenv("SYNTH_BENCH_SETTLEMENTS"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		n = v
	}
	var total int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		sum, err := Generate(context.Background(), Options{Out: dir, Seed: int64(i), Settlements: n})
		if err != nil {
			b.Fatal(err)
		}
		total += sum.Rows[feedSettlements]
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "settlements/s")
}
