//go:build !linux

package store

// onNicedThread runs f; only Linux lowers DuckDB's workers.
func onNicedThread(nice int, f func()) error {
	f()
	return nil
}

// LowerProcess does nothing but on Linux.
func LowerProcess(nice int) error { return nil }
