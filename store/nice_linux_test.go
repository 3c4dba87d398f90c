package store

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// Lowered runs its function on a thread at WorkerNice, whose DuckDB work
// (a query's share done on the calling thread) runs there too; the thread
// ends with it, so no goroutine runs lowered afterwards; a panic comes
// back as an error.
func TestLowered_RunsOnALoweredThreadThatEndsWithIt(t *testing.T) {
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), MemoryLimit: "1GB", Threads: 2, WorkerNice: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var nice int
	var stat string
	if err := s.Lowered(func() {
		stat = "/proc/self/task/" + strconv.Itoa(syscall.Gettid()) + "/stat"
		nice = niceOf(t, stat)
		if _, err := s.DB.Exec("SELECT count(DISTINCT i % 1000003) FROM range(5000000) t(i)"); err != nil {
			t.Error(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if nice != 7 {
		t.Fatalf("Lowered ran at nice %d, want 7", nice)
	}
	for deadline := time.Now().Add(5 * time.Second); niceOf(t, stat) != -100; {
		if time.Now().After(deadline) {
			t.Fatalf("the lowered thread %s outlived its function", stat)
		}
		time.Sleep(10 * time.Millisecond)
	}
	err = s.Lowered(func() { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("a panic in Lowered: %v", err)
	}
	plain, err := Open(context.Background(), Options{Dir: t.TempDir(), MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Lowered(func() { nice = niceOf(t, "/proc/thread-self/stat") }); err != nil || nice != 0 {
		t.Fatalf("without WorkerNice Lowered ran at nice %d (%v)", nice, err)
	}
}

// The C allocator takes the arena limit (glibc's mallopt answers 1), and
// giving its free memory back leaves the store working.
func TestMalloc_ArenasLimitedAndFreeMemoryGivenBack(t *testing.T) {
	if !LimitMallocArenas(2) {
		t.Fatal("mallopt(M_ARENA_MAX, 2) refused")
	}
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int64
	if err := s.DB.QueryRow("SELECT count(DISTINCT i % 1000003) FROM range(5000000) t(i)").Scan(&n); err != nil || n != 1000003 {
		t.Fatal(n, err)
	}
	ReleaseMemory()
	if err := s.DB.QueryRow("SELECT count(*) FROM range(1000) t(i)").Scan(&n); err != nil || n != 1000 {
		t.Fatal(n, err)
	}
}
