package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"collider/store"
)

// server is a running `collider serve` subprocess.
type server struct {
	cmd  *exec.Cmd
	base string
	log  *serverLog
}

// serverLog is the server's output, read while the server writes it.
type serverLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *serverLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *serverLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitLog waits until the server's log holds want.
func (s *server) waitLog(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(s.log.String(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server log lacks %s after %s:\n%s", want, timeout, s.log)
		}
	}
}

func startServe(t *testing.T, data, inbox, schedule string, extra ...string) *server {
	t.Helper()
	addr := freeAddr(t)
	args := append([]string{"serve", "--data", data, "--inbox", inbox, "--addr", addr, "--schedule", schedule, "--shutdown-grace", "10s"}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "COLLIDER_LOG=info")
	log := &serverLog{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, base: "http://" + addr, log: log}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	waitHealthy(t, s.base, 30*time.Second)
	return s
}

func (s *server) do(t *testing.T, method, path, token string, body io.Reader) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, s.base+path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func addUser(t *testing.T, data, role, city string) string {
	t.Helper()
	args := []string{"users", "add", "--data", data, "--role", role, "--name", role + city}
	if city != "" {
		args = append(args, "--city", city)
	}
	r := collider(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("users add: %s", r.stderr)
	}
	return lastLine(r.stdout)
}

type runJSON struct {
	ID       int64  `json:"run_id"`
	Trigger  string `json:"trigger"`
	Status   string `json:"status"`
	BatchID  *int64 `json:"batch_id"`
	Progress *struct {
		Step    string   `json:"step"`
		Done    int64    `json:"rows_done"`
		Total   int64    `json:"rows_total"`
		Percent *float64 `json:"percent"`
	} `json:"progress"`
}

// A trigger while a run is busy answers 409 naming the running run; the
// schedule fires on its own (a seconds-level spec); SIGTERM stops the
// server gracefully with exit 0.
func TestServe_SecondTriggerConflictsAndScheduleFires(t *testing.T) {
	dir := t.TempDir()
	inbox, data := filepath.Join(dir, "inbox"), filepath.Join(dir, "data")
	if r := collider(t, nil, "gen", "--out", inbox, "--settlements", "200000"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	token := addUser(t, data, "province", "")
	s := startServe(t, data, inbox, "off")

	code, body := s.do(t, "POST", "/api/v1/runs", token, nil)
	var first runJSON
	json.Unmarshal(body, &first)
	if code != http.StatusAccepted || first.ID == 0 {
		t.Fatalf("first trigger: %d %s", code, body)
	}
	code, body = s.do(t, "POST", "/api/v1/runs", token, nil)
	if code != http.StatusConflict || !strings.Contains(string(body), fmt.Sprintf("run %d is still running", first.ID)) {
		t.Fatalf("second trigger: %d %s", code, body)
	}
	// `collider run` beside the server cannot open the store; it says why
	// and where runs start instead.
	if r := collider(t, nil, "run", "--data", data, "--inbox", inbox); r.code != 1 ||
		!strings.Contains(r.stderr, "in use") || !strings.Contains(r.stderr, "POST /api/v1/runs") {
		t.Fatalf("collider run beside the server: %d %s", r.code, r.stderr)
	}
	// While it runs, its progress is visible: the step, and while a
	// delivery loads, the rows so far out of the rows it holds.
	var sawLoad bool
	for {
		code, body = s.do(t, "GET", fmt.Sprintf("/api/v1/runs/%d", first.ID), token, nil)
		var during runJSON
		json.Unmarshal(body, &during)
		if code != 200 {
			t.Fatalf("run during: %d %s", code, body)
		}
		if during.Status != "running" {
			break
		}
		p := during.Progress
		if p == nil || p.Step == "" {
			t.Fatalf("a running run without progress: %s", body)
		}
		if p.Step == "load" && p.Total > 0 {
			if p.Percent == nil || *p.Percent < 0 || *p.Percent > 100 || p.Done > p.Total {
				t.Fatalf("load progress out of bounds: %s", body)
			}
			sawLoad = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawLoad {
		t.Fatal("never saw the load step's progress while the run was busy")
	}
	waitRun(t, s, token, first.ID, 120*time.Second)
	for _, want := range []string{`msg="step started"`, `step=load`, `step=model`, `step=publish`, `msg="step finished"`} {
		if !strings.Contains(s.log.String(), want) {
			t.Fatalf("the server log lacks %s:\n%s", want, s.log)
		}
	}

	// Restart with a schedule every 2 seconds: it fires by itself.
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, s.log)
	}
	s = startServe(t, data, inbox, "*/2 * * * * *")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, body = s.do(t, "GET", "/api/v1/runs", token, nil)
		var page struct{ Items []runJSON }
		json.Unmarshal(body, &page)
		for _, r := range page.Items {
			if r.Trigger == "schedule" && r.Status == "succeeded" {
				t.Logf("scheduled run %d succeeded, batch %d", r.ID, *r.BatchID)
				s.cmd.Process.Signal(syscall.SIGTERM)
				if err := s.cmd.Wait(); err != nil {
					t.Fatalf("SIGTERM: %v", err)
				}
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the schedule did not fire a successful run\n%s", s.log)
}

func waitRun(t *testing.T, s *server, token string, id int64, within time.Duration) runJSON {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		_, body := s.do(t, "GET", fmt.Sprintf("/api/v1/runs/%d", id), token, nil)
		var r runJSON
		json.Unmarshal(body, &r)
		if r.Status != "running" {
			if r.Status != "succeeded" {
				t.Fatalf("run %d: %s", id, body)
			}
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("run %d did not finish in %s", id, within)
	return runJSON{}
}

// SIGTERM during a run: the server stops taking work, the running step rolls
// back, and the process exits within the grace period with the run recorded
// as interrupted; the next run completes.
func TestServe_ShutdownDuringRunRollsBackAndExits(t *testing.T) {
	dir := t.TempDir()
	inbox, data := filepath.Join(dir, "inbox"), filepath.Join(dir, "data")
	if r := collider(t, nil, "gen", "--out", inbox, "--settlements", "400000"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	token := addUser(t, data, "province", "")
	s := startServe(t, data, inbox, "off")
	code, body := s.do(t, "POST", "/api/v1/runs", token, nil)
	if code != http.StatusAccepted {
		t.Fatalf("%d %s", code, body)
	}
	time.Sleep(1500 * time.Millisecond) // well inside the loading
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, s.log)
	}
	took := time.Since(start)
	if took > 10*time.Second {
		t.Fatalf("shutdown took %s, grace is 10s", took)
	}
	t.Logf("stopped %s after SIGTERM", took.Round(time.Millisecond))
	if !strings.Contains(s.log.String(), `msg="shutting down"`) {
		t.Fatalf("no orderly shutdown in the log:\n%s", s.log)
	}
	// The server itself recorded the run as interrupted (nothing else has
	// opened the store since), and rolled its step back.
	var status string
	var running, steps int
	st := openForCheck(t, data)
	if err := st.DB.QueryRow(`SELECT status, (SELECT count(*) FROM casebook.run_steps WHERE run_id = r.run_id AND status = 'running'),
		(SELECT count(*) FROM casebook.run_steps WHERE run_id = r.run_id)
		FROM casebook.runs r ORDER BY run_id DESC LIMIT 1`).Scan(&status, &running, &steps); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if status != "interrupted" || running != 0 || steps == 0 {
		t.Fatalf("after SIGTERM the run is %q with %d of %d steps still running", status, running, steps)
	}
	checkAfterKill(t, data, nil)
	r := collider(t, nil, "run", "--data", data, "--inbox", inbox)
	if r.code != 0 {
		t.Fatalf("the next run: %d %s", r.code, r.stderr)
	}
}

// The server's garbage collector runs at GOGC 400 under a fifth of the
// memory, unless the environment says otherwise.
func TestTuneGC_UnlessTheEnvironmentSays(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	tuneGC()
	if got := debug.SetGCPercent(100); got != 400 {
		t.Fatalf("GOGC %d", got)
	}
	if got, want := debug.SetMemoryLimit(-1), int64(store.PhysicalMemory()/5); got != want {
		t.Fatalf("memory limit %d, want %d", got, want)
	}
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	tuneGC()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Fatalf("GOGC %d with GOGC=150 in the environment", got)
	}
}
