//go:build !linux || !cgo

package store

// LimitMallocArenas does nothing but on Linux with glibc.
func LimitMallocArenas(n int) bool { return false }

// ReleaseMemory does nothing but on Linux with glibc.
func ReleaseMemory() {}
