//go:build !linux || !cgo

package store

// LimitMallocArenas does nothing but on Linux with glibc.
func LimitMallocArenas(n int) bool { return false }

// ReleaseMemory does nothing but on Linux with glibc.
func ReleaseMemory() {}

// CHeap is what the C allocator holds; see the Linux build.
type CHeap struct {
	InUse, Free, Mapped uint64
}

// ReadCHeap is not available but on Linux with glibc.
func ReadCHeap() (h CHeap, ok bool) { return CHeap{}, false }
