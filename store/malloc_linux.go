//go:build linux && cgo

package store

/*
#include <malloc.h>
*/
import "C"

// LimitMallocArenas caps the C allocator's arenas (glibc's mallopt
// M_ARENA_MAX) for the rest of the process: DuckDB allocates with malloc
// from whichever thread runs a query, and the Go runtime calls it from as
// many threads as requests are waiting in it, so glibc's default of eight
// arenas a core each keep their own freed memory. Call it before the
// store opens. MALLOC_ARENA_MAX in the environment wins.
func LimitMallocArenas(n int) bool {
	return C.mallopt(C.M_ARENA_MAX, C.int(n)) == 1
}

// CHeap is what the C allocator holds (glibc's mallinfo2): bytes in use by
// malloc's callers (DuckDB, the driver), bytes free but kept in its arenas,
// and bytes in chunks mapped on their own (large allocations).
type CHeap struct {
	InUse, Free, Mapped uint64
}

// ReadCHeap reads the C allocator's figures; ok is false where it cannot.
func ReadCHeap() (h CHeap, ok bool) {
	mi := C.mallinfo2()
	return CHeap{InUse: uint64(mi.uordblks), Free: uint64(mi.fordblks), Mapped: uint64(mi.hblkhd)}, true
}

// ReleaseMemory gives the C allocator's free memory back to the system
// (glibc's malloc_trim): what a run's queries freed stays resident
// otherwise, and the server's RSS creeps up run after run.
func ReleaseMemory() {
	C.malloc_trim(0)
}
