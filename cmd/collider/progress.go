// Progress bars for long work, on standard error and only on a terminal, so
// that standard output stays clean for scripts.
package main

import (
	"io"
	"os"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
)

// newBar returns a bar for total units, or nil when stderr is not a terminal.
func newBar(stderr io.Writer, total int64, what string) *progressbar.ProgressBar {
	f, ok := stderr.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) || total <= 0 {
		return nil
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionShowIts(),
		progressbar.OptionThrottle(200_000_000),
		progressbar.OptionClearOnFinish(),
	)
}

// addFunc adapts a bar to a progress callback; nil-safe.
func addFunc(bar *progressbar.ProgressBar) func(int64) {
	if bar == nil {
		return nil
	}
	return func(n int64) { bar.Add64(n) }
}
