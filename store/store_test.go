package store

import (
	"context"
	"testing"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpen_MigratesOnceAndSeedsRegions(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 2; i++ { // the second open finds everything applied
		s, err := Open(ctx, Options{Dir: dir, MemoryLimit: "1GB"})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		var n, lookups, noPoint int
		if err := s.DB.QueryRowContext(ctx, "SELECT count(*), (SELECT count(*) FROM region_lookup), count(*) FILTER (WHERE lon IS NULL) FROM regions").Scan(&n, &lookups, &noPoint); err != nil {
			t.Fatal(err)
		}
		if n != 3511 || lookups < 300000 || noPoint > 1 {
			t.Fatalf("regions %d, lookups %d, without point %d", n, lookups, noPoint)
		}
		var migrations int
		s.DB.QueryRowContext(ctx, "SELECT count(*) FROM feeds.schema_migrations").Scan(&migrations)
		if migrations == 0 {
			t.Fatal("no migration recorded")
		}
		s.Close()
	}
}

func TestRegionLookup_FallsBack(t *testing.T) {
	s := openTemp(t)
	cases := map[string]string{"620102": "620102", "620199": "620100", "629999": "620000"}
	for code, want := range cases {
		var got string
		if err := s.DB.QueryRow("SELECT resolved FROM region_lookup WHERE code = ?", code).Scan(&got); err != nil || got != want {
			t.Errorf("%s resolved to %q (%v), want %s", code, got, err, want)
		}
	}
	var n int
	s.DB.QueryRow("SELECT count(*) FROM region_lookup WHERE code = '990101'").Scan(&n)
	if n != 0 {
		t.Error("990101 resolved")
	}
}

func TestHaversineMacro(t *testing.T) {
	s := openTemp(t)
	var d float64
	s.DB.QueryRow("SELECT haversine_km(36.061089, 103.834303, 39.904211, 116.407394)").Scan(&d)
	if d < 1170 || d > 1200 {
		t.Fatalf("Lanzhou–Beijing %.1f km", d)
	}
}
