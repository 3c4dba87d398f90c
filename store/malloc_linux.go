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

// ReleaseMemory gives the C allocator's free memory back to the system
// (glibc's malloc_trim): what a run's queries freed stays resident
// otherwise, and the server's RSS creeps up run after run.
func ReleaseMemory() {
	C.malloc_trim(0)
}
