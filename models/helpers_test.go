package models_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"collider/jobs"
	"collider/models"
	"collider/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// loadWithJobs is the production fixture loader: the jobs loader, given a
// directory as a delivery by hand.
func loadWithJobs(ctx context.Context, s *store.Store, feed, dir string) error {
	d, err := jobs.ManualDelivery(feed, dir)
	if err != nil {
		return err
	}
	return (&jobs.Loader{Store: s, Log: quiet}).Load(ctx, d).Err
}

func newTester(t *testing.T) *models.Tester {
	tester := &models.Tester{Load: loadWithJobs, Dir: t.TempDir(), Log: quiet, Runner: models.Runner{Log: quiet}, Keep: true}
	t.Cleanup(func() { tester.Close() })
	return tester
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), MemoryLimit: "1GB", Threads: 2, Files: []string{os.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func conn(t *testing.T, s *store.Store) *sql.Conn {
	t.Helper()
	c, err := s.DB.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// deliver writes the rows of a SQL query as a Parquet delivery of feed and
// loads it with the real loader.
func deliver(t *testing.T, s *store.Store, feed, query string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), feed)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.Exec(fmt.Sprintf("COPY (%s) TO '%s' (FORMAT parquet)", query, filepath.Join(dir, "part-0.parquet"))); err != nil {
		t.Fatalf("write %s: %v", feed, err)
	}
	if err := loadWithJobs(context.Background(), s, feed, dir); err != nil {
		t.Fatalf("load %s: %v", feed, err)
	}
	var rejected int64
	if err := s.DB.QueryRow("SELECT count(*) FROM rejects").Scan(&rejected); err != nil || rejected > 0 {
		t.Fatalf("load %s: %d rows rejected (%v)", feed, rejected, err)
	}
}

func embedded(t *testing.T) []*models.Model {
	t.Helper()
	ms, err := models.Load(models.Embedded())
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func model(t *testing.T, name string) *models.Model {
	t.Helper()
	for _, m := range embedded(t) {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no embedded model %s", name)
	return nil
}
