package store

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// niceOf is a thread's nice value, from /proc.
func niceOf(t *testing.T, stat string) int {
	t.Helper()
	b, err := os.ReadFile(stat)
	if err != nil {
		return -100 // the thread ended
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(fields[16]) // field 19 of stat: nice
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// DuckDB's workers of a store opened with WorkerNice run at that nice
// value; the process's other threads (Go's, the caller's) do not.
func TestOpen_WorkerNiceLowersDuckDBsWorkersOnly(t *testing.T) {
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), MemoryLimit: "1GB", Threads: 4, WorkerNice: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A query big enough to be worked on in parallel.
	if _, err := s.DB.Exec("SELECT count(DISTINCT i % 1000003) FROM range(20000000) t(i)"); err != nil {
		t.Fatal(err)
	}
	tasks, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil {
		t.Fatal(err)
	}
	niced := 0
	for _, stat := range tasks {
		switch n := niceOf(t, stat); n {
		case 7:
			niced++
		case 0, -100:
		default:
			t.Fatalf("%s: nice %d", stat, n)
		}
	}
	if niced < 3 {
		t.Fatalf("%d threads at nice 7 of %d, want DuckDB's 3 workers", niced, len(tasks))
	}
	if n := niceOf(t, "/proc/self/stat"); n != 0 {
		t.Fatalf("the process's main thread is at nice %d", n)
	}
	// Go's threads stay as they were: a goroutine started now runs at 0.
	done := make(chan int)
	go func() { done <- niceOf(t, "/proc/thread-self/stat") }()
	if n := <-done; n != 0 {
		t.Fatalf("a goroutine's thread is at nice %d", n)
	}
}
