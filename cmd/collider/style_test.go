package main

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// No function outside the synthetic province generator runs over 100
// lines (STYLE.md: functions a reader can hold); .ci/funclen counts them.
func TestStyle_FunctionsAReaderCanHold(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "./.ci/funclen", "-max", "100", "api", "jobs", "models", "casebook", "store", "domain", "metrics", "personid", "feeds", "regions", "cmd", "deploy")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("functions over 100 lines (split each into named phases):\n%s", out)
	}
}
