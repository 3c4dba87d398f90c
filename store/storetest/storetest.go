// Package storetest holds what tests of a store on a full disk share: a
// real small filesystem, and a way to fill it.
package storetest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// MountTmpfs mounts a tmpfs of the given size (e.g. "64m") on a new
// directory: a real small filesystem that really fills. It needs root,
// which CI has; there a failed mount fails the test rather than skipping it.
func MountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("mounting a tmpfs needs root (CI runs as root): %v %s", err, out)
		}
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// Fill takes every byte of dir's filesystem but leave; the returned
// function frees the room again.
func Fill(t *testing.T, dir string, leave int64) func() {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Write(buf)
		n += int64(k)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	if err := f.Truncate(max(0, n-leave)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return func() { os.Remove(path) }
}
