// This file is the sandbox drafts run in. A draft model is SQL written by
// the least trusted role that writes SQL, so it never runs in the server:
// it runs in a child process (this same binary, started again with
// COLLIDER_SANDBOX=1) whose DuckDB instances
//
//   - open the pseudonymized snapshot read-only (snapshot.go): the feed
//     tables as tokens, no casebook, no other database;
//   - have external access off before the draft's first statement: no file
//     is read or written (read_*, glob, COPY, ATTACH, INSTALL and LOAD all
//     fail), except that the fixture store reads and writes its own
//     scratch directory;
//   - have their configuration locked: no setting, limit or path changes;
//   - run under a memory limit, a thread limit and a limit on spilled data,
//     with the process itself at a lower CPU priority;
//
// and the parent kills the child when its time limit is up. What DuckDB
// refuses comes back as an error that says what a draft may not do.
package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"collider/domain"
	"collider/models"
	"collider/store"
)

// sandboxNice is a draft's nice value.
const sandboxNice = 10

// SandboxEnv is set in a sandbox child's environment.
const SandboxEnv = "COLLIDER_SANDBOX"

// SandboxLimits bound one draft.
type SandboxLimits struct {
	Timeout     time.Duration // 120 s when 0
	MemoryLimit string        // DuckDB memory_limit; 2GB when empty
	Threads     int           // DuckDB threads; half the CPUs (at least 1) when 0
	TempLimit   string        // spilled data; 20GB when empty
}

// WithDefaults fills the zero limits.
func (l SandboxLimits) WithDefaults() SandboxLimits {
	if l.Timeout <= 0 {
		l.Timeout = 120 * time.Second
	}
	if l.MemoryLimit == "" {
		l.MemoryLimit = "2GB"
	}
	if l.Threads <= 0 {
		l.Threads = max(1, runtime.NumCPU()/2)
	}
	if l.TempLimit == "" {
		l.TempLimit = "20GB"
	}
	return l
}

// Sandbox runs drafts in child processes over the snapshot.
type Sandbox struct {
	Snapshot *Snapshot
	Limits   SandboxLimits
	// Scratch is where each draft gets a directory of its own (fixture
	// store, spilled data), removed afterwards.
	Scratch string
	Log     *slog.Logger
}

// ModelText is a model file as it travels to the sandbox: the file and its
// fixture cases, parsed again on the other side.
type ModelText struct {
	File      string `json:"file"`
	Text      string `json:"text"`
	TestsFile string `json:"tests_file,omitempty"`
	TestsText string `json:"tests_text,omitempty"`
}

// TextOf is a parsed model's text.
func TextOf(m *models.Model) ModelText {
	t := ModelText{File: m.File, Text: m.Text}
	if m.Tests != nil {
		t.TestsFile, t.TestsText = m.Tests.File, m.Tests.Text
	}
	return t
}

func (t ModelText) parse() (*models.Model, error) {
	m, err := models.Parse(t.File, []byte(t.Text))
	if err != nil {
		return nil, err
	}
	if t.TestsText != "" {
		if m.Tests, err = models.ParseSuite(t.TestsFile, []byte(t.TestsText)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// sandboxRequest is what the child is asked to do.
type sandboxRequest struct {
	Draft        ModelText            `json:"draft"`
	Live         *ModelText           `json:"live,omitempty"`
	Params       map[string]string    `json:"params,omitempty"`
	Sample       int                  `json:"sample"`
	Top          int                  `json:"top"`
	Now          time.Time            `json:"now"`
	Snapshot     string               `json:"snapshot"`
	Scratch      string               `json:"scratch"`
	Limits       SandboxLimits        `json:"limits"`
	Issued       []string             `json:"issued"`
	Suppressions []models.Suppression `json:"suppressions"`
	Outcomes     []models.Outcome     `json:"outcomes"`
	Precision    bool                 `json:"precision"`
}

// sandboxResponse is the child's answer: a preview or an error.
type sandboxResponse struct {
	Preview *models.Preview `json:"preview,omitempty"`
	Error   *sandboxError   `json:"error,omitempty"`
}

type sandboxError struct {
	Code    domain.Code `json:"code"`
	Message string      `json:"message"`
}

// run runs a request in a child process and returns its preview.
func (sb *Sandbox) run(ctx context.Context, req sandboxRequest) (*models.Preview, error) {
	lim := sb.Limits.WithDefaults()
	req.Limits = lim
	if err := os.MkdirAll(sb.Scratch, 0o750); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	scratch, err := os.MkdirTemp(sb.Scratch, "draft-*")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer os.RemoveAll(scratch)
	req.Scratch = scratch
	var out *models.Preview
	err = sb.Snapshot.Read(ctx, func(path string) error {
		// The child opens the snapshot through a hard link in its own
		// directory: what a draft can list of its databases names no file
		// of the store. (A symbolic link, where the two are on different
		// file systems, shows the snapshot's path: nothing a draft could
		// open, with no file access.)
		req.Snapshot = filepath.Join(scratch, filepath.Base(path))
		if err := os.Link(path, req.Snapshot); err != nil {
			if err := os.Symlink(path, req.Snapshot); err != nil {
				return fmt.Errorf("sandbox: %w", err)
			}
		}
		out, err = sb.spawn(ctx, req, lim)
		return err
	})
	return out, err
}

func (sb *Sandbox) spawn(ctx context.Context, req sandboxRequest, lim SandboxLimits) (*models.Preview, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	runCtx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, exe)
	// Nothing of the server's environment: no paths, no settings.
	cmd.Env = []string{SandboxEnv + "=1", "TZ=Asia/Shanghai", "HOME=" + req.Scratch}
	cmd.Dir = req.Scratch
	cmd.Stdin = bytes.NewReader(body)
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	// The API and the nightly run come first.
	syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, sandboxNice)
	waitErr := cmd.Wait()
	log := sb.log().With("seconds", time.Since(start).Seconds())
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case runCtx.Err() != nil:
		log.Warn("draft stopped at its time limit", "limit", lim.Timeout)
		return nil, domain.Errorf(domain.EINVALID, "the draft ran longer than its time limit of %s and was stopped; narrow it, or ask the operator for a longer draft_timeout", lim.Timeout)
	}
	var resp sandboxResponse
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil || (resp.Preview == nil && resp.Error == nil) {
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) && ee.ProcessState != nil && strings.Contains(ee.ProcessState.String(), "killed") {
			log.Warn("draft killed", "state", ee.ProcessState.String(), "stderr", stderr.String())
			return nil, domain.Errorf(domain.EINVALID, "the draft was stopped by the system (%s), most likely for using more memory than the machine allows", ee.ProcessState)
		}
		log.Error("sandbox failed", "err", waitErr, "stderr", stderr.String())
		return nil, fmt.Errorf("sandbox: no answer (%v): %s", waitErr, stderr.String())
	}
	if resp.Error != nil {
		log.Info("draft refused", "code", resp.Error.Code, "message", resp.Error.Message)
		return nil, domain.Errorf(resp.Error.Code, "%s", resp.Error.Message)
	}
	log.Info("draft previewed", "model", resp.Preview.Model, "flagged", resp.Preview.Flagged)
	return resp.Preview, nil
}

func (sb *Sandbox) log() *slog.Logger {
	if sb.Log == nil {
		return slog.Default()
	}
	return sb.Log
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// IsSandboxChild reports whether this process was started as a sandbox.
func IsSandboxChild() bool { return os.Getenv(SandboxEnv) == "1" }

// SandboxMain is the child's whole life: read the request on standard
// input, answer on standard output, exit. Binaries that start sandboxes
// (collider, and test binaries in their TestMain) call it first thing when
// IsSandboxChild.
func SandboxMain() {
	// The child's own log goes to standard error, which the parent keeps
	// for diagnostics; standard output is the answer alone.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	// The API and the nightly run come first: every thread of the child,
	// DuckDB's included (they inherit it), runs at nice 10. (The parent
	// renices the child's first thread too, for the moments before this.)
	if err := store.LowerProcess(sandboxNice); err != nil {
		slog.Warn("sandbox: could not lower the draft's priority", "err", err)
	}
	resp := serveSandbox(context.Background(), os.Stdin)
	json.NewEncoder(os.Stdout).Encode(resp)
	os.Exit(0)
}

func serveSandbox(ctx context.Context, in io.Reader) sandboxResponse {
	var req sandboxRequest
	if err := json.NewDecoder(io.LimitReader(in, 256<<20)).Decode(&req); err != nil {
		return refusal(domain.Errorf(domain.EINVALID, "sandbox: bad request: %v", err))
	}
	p, err := previewInSandbox(ctx, req)
	if err != nil {
		return refusal(err)
	}
	return sandboxResponse{Preview: p}
}

// previewInSandbox validates the draft on its fixture cases, then previews
// it on the snapshot. It runs in the child.
func previewInSandbox(ctx context.Context, req sandboxRequest) (*models.Preview, error) {
	draft, err := req.Draft.parse()
	if err != nil {
		return nil, domain.Errorf(domain.EINVALID, "%w", err)
	}
	var live *models.Model
	if req.Live != nil {
		if live, err = req.Live.parse(); err != nil {
			return nil, fmt.Errorf("live version: %w", err)
		}
	}
	limits := store.Options{MemoryLimit: req.Limits.MemoryLimit, Threads: req.Limits.Threads, MaxTempSize: req.Limits.TempLimit, Lock: true}
	runner := models.Runner{Now: func() time.Time { return req.Now }}

	// 1. The fixture cases, in a scratch store that reads and writes files
	// only in the draft's own directory, beside the preview: on a
	// province's data the preview takes the time, and the cases ride along.
	type outcome struct {
		verdicts []models.Verdict
		err      error
	}
	fixtures := make(chan outcome, 1)
	go func() {
		small := store.Options{MemoryLimit: "512MB", Threads: 1, MaxTempSize: "1GB", Lock: true,
			TempDir: filepath.Join(req.Scratch, "fixtures", "tmp")}
		tester := &models.Tester{Load: FixtureLoader, Dir: filepath.Join(req.Scratch, "fixtures"), Store: small, Runner: runner}
		v, err := tester.Validate(ctx, draft)
		fixtures <- outcome{v, err}
	}()

	// 2. The preview, on the snapshot: read-only, no file, no setting.
	pv, perr := previewSnapshot(ctx, req, limits, runner, draft, live)
	f := <-fixtures
	switch {
	case f.err != nil:
		return nil, draftError(f.err)
	case f.verdicts[0].Err != nil && len(f.verdicts[0].Cases) == 0:
		return nil, draftError(f.verdicts[0].Err) // the query's shape: said first, with its line
	case perr != nil:
		return nil, draftError(perr)
	}
	pv.Tests = f.verdicts[0].Cases
	return pv, nil
}

// previewSnapshot opens the snapshot read-only under the draft's limits and
// previews the draft on it.
func previewSnapshot(ctx context.Context, req sandboxRequest, limits store.Options, runner models.Runner, draft, live *models.Model) (*models.Preview, error) {
	s, err := openSandboxed(ctx, req.Snapshot, req.Scratch, limits)
	if err != nil {
		return nil, fmt.Errorf("sandbox snapshot: %w", err)
	}
	defer s.Close()
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	popt := models.PreviewOptions{Draft: draft, Params: req.Params, Live: live, Sample: req.Sample, Top: req.Top,
		Issued: req.Issued, Suppressions: req.Suppressions, Outcomes: req.Outcomes}
	if req.Precision && popt.Outcomes == nil {
		popt.Outcomes = []models.Outcome{}
	}
	return runner.Preview(ctx, conn, popt)
}

// openSandboxed opens a snapshot as a draft sees it: read-only, the feeds
// alone, external access off, the configuration locked, under the limits,
// spilling into the draft's own directory.
func openSandboxed(ctx context.Context, snapshot, scratch string, limits store.Options) (*store.Store, error) {
	opts := limits
	opts.Dir, opts.ReadOnly, opts.FeedsOnly, opts.Lock = filepath.Dir(snapshot), true, true, true
	opts.TempDir = filepath.Join(scratch, "tmp")
	return store.Open(ctx, opts)
}

// draftError says what a draft may not do when DuckDB refused it for that,
// and otherwise passes the error on (with its file and line) as bad input.
func draftError(err error) error {
	var de *duckdb.Error
	msg := err.Error()
	if errors.As(err, &de) {
		switch {
		case de.Type == duckdb.ErrorTypePermission && strings.Contains(de.Msg, "extension"):
			return domain.Errorf(domain.EINVALID, "not allowed in a draft: extensions (INSTALL, LOAD); a draft reads the feed tables and nothing else — %s", msg)
		case de.Type == duckdb.ErrorTypePermission:
			return domain.Errorf(domain.EINVALID, "not allowed in a draft: files (read_*, glob, COPY, ATTACH, EXPORT); a draft reads the feed tables and nothing else — %s", msg)
		case strings.Contains(de.Msg, "configuration has been locked"):
			return domain.Errorf(domain.EINVALID, "not allowed in a draft: settings (SET, PRAGMA, RESET); a draft runs with the sandbox's limits — %s", msg)
		case de.Type == duckdb.ErrorTypeOutOfMemory:
			return domain.Errorf(domain.EINVALID, "the draft needs more memory than its limit allows; narrow it, or ask the operator for a larger draft_memory_limit — %s", msg)
		case de.Type == duckdb.ErrorTypeCatalog && strings.Contains(de.Msg, "casebook"):
			return domain.Errorf(domain.EINVALID, "not allowed in a draft: the casebook; a draft reads the feed tables (%s) and nothing else — %s", strings.Join(SandboxTables, ", "), msg)
		case de.Type == duckdb.ErrorTypeCatalog:
			return domain.Errorf(domain.EINVALID, "%s (a draft reads the feed tables %s and nothing else)", msg, strings.Join(SandboxTables, ", "))
		}
	}
	var fe *models.FileError
	if errors.As(err, &fe) || domain.ErrorCode(err) == domain.EINVALID {
		return domain.Errorf(domain.EINVALID, "%s", msg)
	}
	return err
}

// SandboxTables are the tables a draft reads.
var SandboxTables = []string{"settlements", "institutions", "residents", "civil_status", "floating", "locations", "regions", "region_lookup"}

func refusal(err error) sandboxResponse {
	code := domain.ErrorCode(err)
	msg := domain.ErrorMessage(err)
	if code == domain.EINTERNAL {
		msg = err.Error() // the parent logs it and answers "internal error"
	}
	return sandboxResponse{Error: &sandboxError{Code: code, Message: msg}}
}
