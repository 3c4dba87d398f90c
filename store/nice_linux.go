package store

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
)

// onNicedThread runs f on an OS thread of its own whose nice value is
// raised by nice, and lets the thread end with it: the threads DuckDB
// starts from there (its workers) inherit the value, and no goroutine
// ever runs on a lowered thread again.
func onNicedThread(nice int, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if syscall.Gettid() == syscall.Getpid() {
			// The main thread outlives its goroutines: hold it while
			// another thread does the work.
			errc <- onNicedThread(nice, f)
			runtime.UnlockOSThread()
			return
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice); err != nil {
			errc <- err
			return
		}
		f()
		errc <- nil
	}()
	return <-errc
}

// LowerProcess raises the nice value of every thread of the process by
// setting it to nice: threads started afterwards inherit it from the
// thread that starts them. For a process that is all batch work (a
// draft's sandbox).
func LowerProcess(nice int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && err != syscall.ESRCH {
			return err
		}
	}
	return nil
}
