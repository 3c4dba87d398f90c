// Package models holds the collision models (碰撞模型): one SQL file per model
// with a YAML header, its fixture tests beside it, and the Go that parses,
// validates, tests, runs and previews them.
//
// A model file looks like this (the header is the leading block of `--`
// lines, read as YAML once the `-- ` prefixes are removed, so that a YAML
// error's line is the file's line):
//
//	-- name: deceased_claims
//	-- title: 死亡人员冒用结算
//	-- description: …
//	-- params:
//	--   - name: grace_days
//	--     type: integer
//	--     default: 0
//	--     description: …
//	-- reasons:
//	--   after_death: 死亡后结算
//	-- severity:
//	--   high: max(CAST(evidence->>'days_after_death' AS INTEGER)) >= 30
//	--   medium: count(*) >= 2
//	-- narrative:
//	--   after_death: 参保人{person_id}于{e.death_date}死亡……
//	-- scope: person
//	SELECT settlement_id, reason, evidence FROM …
//
// The query returns one row per flagged settlement with exactly the columns
// settlement_id, reason and evidence (a JSON object); parameters appear in it
// as DuckDB named parameters ($grace_days) and are always bound, never pasted.
// DuckDB is given the whole file, header included, so that the line of a
// parse or binder error is the line of the file.
//
// scope says what a settlement's verdict depends on, so that a nightly run
// re-examines only what the night's deliveries can change (see Scope).
package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Model is one parsed model file.
type Model struct {
	Name        string
	Title       string // Chinese title, as the bureau calls the rule
	Description string
	File        string // the file's path within the fs.FS it was read from
	Params      []Param
	Reasons     []Reason
	Severity    Severity
	Narratives  []Narrative
	// Scope is what a settlement's verdict depends on: ScopePerson or
	// ScopeFull (no declaration).
	Scope string
	// SQL is the whole file as DuckDB runs it: header comments, then the
	// query, with a trailing semicolon removed.
	SQL string
	// Text is the file as read; the version hashes it.
	Text string
	// Tests are the fixture cases kept beside the model (NAME.test.yaml);
	// nil when it has none.
	Tests *Suite

	queryLine int // first line of the query, for errors without a position
	rulesLine int // line of the header's severity rules
}

// Reason is one reason code a model may return, with its Chinese label.
type Reason struct {
	Code  string
	Label string
}

// Severity holds the model's severity rules: SQL boolean expressions over
// the flagged settlements of one clue (aggregates allowed), tried in order
// high, medium; a clue matching neither is low.
type Severity struct {
	High   string
	Medium string
}

// Narrative is the template of a clue's one-sentence narrative for a reason
// (or "default"); see narrative.go for the placeholders.
type Narrative struct {
	Reason   string
	Template string
}

// Scopes a model may declare in its header (scope: person).
const (
	// ScopeFull: nothing is promised; every run examines every settlement.
	ScopeFull = "full"
	// ScopePerson: a settlement's verdict (flagged or not, reason,
	// evidence) depends only on the rows of its own person in the person
	// feeds (settlements, civil_status, residents, floating, locations), on
	// the institutions of that person's settlements, on the regions and on
	// the parameters — never on another person's rows, nor on the clock.
	// Whether a feed has any rows at all is the one fact about everyone a
	// scoped model may use (unknown_identity waits for both police feeds):
	// a feed's first rows re-examine every settlement. The fixture tests
	// check the promise (Tester: each case again beside other persons).
	ScopePerson = "person"
)

// FileError is a problem in a model or fixture file, at a line (0 when the
// problem has no single line).
type FileError struct {
	File string
	Line int
	Err  error
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// LoadError lists the files that were refused while loading a directory; the
// models that parsed are returned beside it.
type LoadError struct {
	Refused []*FileError
}

func (e *LoadError) Error() string {
	msgs := make([]string, len(e.Refused))
	for i, r := range e.Refused {
		msgs[i] = r.Error()
	}
	return "models refused: " + strings.Join(msgs, "; ")
}

// TestsSuffix names a model's fixture file: deceased_claims.sql has its
// cases in deceased_claims.test.yaml.
const TestsSuffix = ".test.yaml"

var (
	nameRe       = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	reasonCodeRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// reservedParamPrefix is kept for the runner's own parameters
// ($collider_model, $collider_now, …) so that they never meet a model's.
const reservedParamPrefix = "collider_"

// Load parses every *.sql file at the root of fsys, with its NAME.test.yaml
// when present. The embedded models and a --models directory go through
// this same code. Files that do not parse are refused, each named with its
// line in a *LoadError; the models that parsed are returned beside it.
// Load checks what can be checked without a database; Tester.Validate
// checks the query and runs the fixtures.
func Load(fsys fs.FS) ([]*Model, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	var out []*Model
	var refused []*FileError
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		m, err := ReadFile(fsys, e.Name())
		if err != nil {
			refused = append(refused, asFileError(e.Name(), err))
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(refused) > 0 {
		return out, &LoadError{Refused: refused}
	}
	return out, nil
}

// ReadFile parses one model file of fsys and its fixture file, and checks
// that the model's name is the file's base name.
func ReadFile(fsys fs.FS, file string) (*Model, error) {
	text, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, &FileError{File: file, Err: err}
	}
	m, err := Parse(file, text)
	if err != nil {
		return nil, err
	}
	if base := strings.TrimSuffix(path.Base(file), ".sql"); m.Name != base {
		return nil, &FileError{File: file, Line: 1, Err: fmt.Errorf("model name %q must be the file's name %q", m.Name, base)}
	}
	testsFile := strings.TrimSuffix(file, ".sql") + TestsSuffix
	tests, err := fs.ReadFile(fsys, testsFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return m, nil
	case err != nil:
		return nil, &FileError{File: testsFile, Err: err}
	}
	if m.Tests, err = ParseSuite(testsFile, tests); err != nil {
		return nil, err
	}
	return m, m.checkSuite()
}

// header is the YAML of a model's header.
type header struct {
	Name        string      `yaml:"name"`
	Title       string      `yaml:"title"`
	Description string      `yaml:"description"`
	Params      []yaml.Node `yaml:"params"`
	Reasons     yaml.Node   `yaml:"reasons"`
	Severity    struct {
		High   string `yaml:"high"`
		Medium string `yaml:"medium"`
	} `yaml:"severity"`
	Narrative yaml.Node `yaml:"narrative"`
	Scope     string    `yaml:"scope"`
}

type paramYAML struct {
	Name        string    `yaml:"name"`
	Type        string    `yaml:"type"`
	Default     yaml.Node `yaml:"default"`
	Description string    `yaml:"description"`
}

// Parse parses a model file's text; file names it in errors. It does not
// touch a database.
func Parse(file string, text []byte) (*Model, error) {
	fail := func(line int, format string, args ...any) error {
		return &FileError{File: file, Line: line, Err: fmt.Errorf(format, args...)}
	}
	yamlLines, queryLine, err := splitHeader(text, fail)
	if err != nil {
		return nil, err
	}
	var h header
	dec := yaml.NewDecoder(bytes.NewReader([]byte(strings.Join(yamlLines, "\n"))))
	dec.KnownFields(true)
	if err := dec.Decode(&h); err != nil {
		return nil, fail(yamlErrorLine(err), "header: %s", cleanYAMLError(err))
	}
	m := &Model{
		Name: h.Name, Title: h.Title, Description: strings.TrimSpace(h.Description),
		File: file, Text: string(text), queryLine: queryLine,
		Severity: Severity{High: strings.TrimSpace(h.Severity.High), Medium: strings.TrimSpace(h.Severity.Medium)},
		Scope:    ScopeFull,
	}
	switch {
	case m.Name == "":
		return nil, fail(1, "header: name is required")
	case !nameRe.MatchString(m.Name):
		return nil, fail(headerLine(yamlLines, "name:"), "header: name %q must be lower snake case", m.Name)
	case m.Title == "":
		return nil, fail(1, "header: title is required")
	case m.Description == "":
		return nil, fail(1, "header: description is required")
	}
	if m.Scope, err = parseScope(h.Scope, headerLine(yamlLines, "scope:"), fail); err != nil {
		return nil, err
	}
	if m.Params, err = parseParams(h.Params, fail); err != nil {
		return nil, err
	}
	if err := m.parseReasons(h, fail); err != nil {
		return nil, err
	}
	for _, rule := range []struct{ level, expr string }{{"high", m.Severity.High}, {"medium", m.Severity.Medium}} {
		if strings.Contains(rule.expr, ";") {
			return nil, fail(headerLine(yamlLines, rule.level+":"), "header: severity %s: one SQL expression, no semicolons", rule.level)
		}
	}
	m.SQL = queryText(text, queryLine)
	m.rulesLine = headerLine(yamlLines, "severity:")
	return m, nil
}

type failFunc func(line int, format string, args ...any) error

// splitHeader returns the header's lines with their `-- ` removed (YAML
// whose line numbers are the file's) and the line the query starts on.
func splitHeader(text []byte, fail failFunc) ([]string, int, error) {
	lines := strings.Split(string(text), "\n")
	var yamlLines []string
	queryLine := 0
	for i, l := range lines {
		t := strings.TrimRight(l, "\r")
		if !strings.HasPrefix(strings.TrimSpace(t), "--") {
			queryLine = i + 1
			break
		}
		t = strings.TrimPrefix(strings.TrimSpace(t), "--")
		t = strings.TrimPrefix(t, " ")
		yamlLines = append(yamlLines, t)
	}
	if len(yamlLines) == 0 {
		return nil, 0, fail(1, "no header: a model file starts with `-- name: …` comment lines")
	}
	if queryLine == 0 || strings.TrimSpace(strings.Join(lines[queryLine-1:], "\n")) == "" {
		return nil, 0, fail(len(lines), "no query after the header")
	}
	return yamlLines, queryLine, nil
}

// parseScope reads what a run may re-examine of the model (ScopeFull when
// the header says nothing).
func parseScope(scope string, line int, fail failFunc) (string, error) {
	switch strings.TrimSpace(scope) {
	case "", ScopeFull:
		return ScopeFull, nil
	case ScopePerson:
		return ScopePerson, nil
	}
	return "", fail(line, "header: scope %q: %s (a settlement's verdict depends only on its person's rows, its institutions and the regions) or %s (every run examines everything; the default)",
		scope, ScopePerson, ScopeFull)
}

// parseParams reads the header's parameters.
func parseParams(nodes []yaml.Node, fail failFunc) ([]Param, error) {
	var out []Param
	seen := map[string]bool{}
	for _, pn := range nodes {
		line := pn.Line
		var py paramYAML
		for i := 0; pn.Kind == yaml.MappingNode && i+1 < len(pn.Content); i += 2 {
			switch k := pn.Content[i]; k.Value {
			case "name", "type", "default", "description":
			default:
				return nil, fail(k.Line, "header: params: unknown field %q (name, type, default, description)", k.Value)
			}
		}
		if err := pn.Decode(&py); err != nil {
			return nil, fail(yamlErrorLine(err), "header: params: %s", cleanYAMLError(err))
		}
		p, err := newParam(py)
		if err != nil {
			return nil, fail(line, "param %s: %v", py.Name, err)
		}
		if seen[p.Name] {
			return nil, fail(line, "param %s declared twice", p.Name)
		}
		seen[p.Name] = true
		out = append(out, p)
	}
	return out, nil
}

// parseReasons reads the reason codes and their narrative templates: every
// reason has a template, or there is a default.
func (m *Model) parseReasons(h header, fail failFunc) error {
	reasons, err := orderedMap(h.Reasons)
	if err != nil {
		return fail(h.Reasons.Line, "header: reasons: %v", err)
	}
	if len(reasons) == 0 {
		return fail(1, "header: reasons is required: the reason codes the query returns, with their Chinese labels")
	}
	for _, kv := range reasons {
		if !reasonCodeRe.MatchString(kv.key) {
			return fail(kv.line, "header: reason code %q must be lower snake case", kv.key)
		}
		m.Reasons = append(m.Reasons, Reason{Code: kv.key, Label: kv.value})
	}
	narr, err := orderedMap(h.Narrative)
	if err != nil {
		return fail(h.Narrative.Line, "header: narrative: %v", err)
	}
	for _, kv := range narr {
		if kv.key != "default" && !m.HasReason(kv.key) {
			return fail(kv.line, "header: narrative for %q, which is not one of the reasons", kv.key)
		}
		if _, err := compileTemplate(kv.value, m); err != nil {
			return fail(kv.line, "header: narrative %s: %v", kv.key, err)
		}
		m.Narratives = append(m.Narratives, Narrative{Reason: kv.key, Template: kv.value})
	}
	for _, r := range m.Reasons {
		if m.narrativeFor(r.Code) == "" {
			return fail(h.Narrative.Line, "header: narrative: no template for reason %q and no default", r.Code)
		}
	}
	return nil
}

// queryText is the file as DuckDB gets it: the query's trailing semicolon
// removed; the header stays, as comments, so that error lines are file
// lines. Trailing comment lines go too, or they would swallow what the
// runner puts after the query.
func queryText(text []byte, queryLine int) string {
	body := strings.Split(strings.TrimRight(string(text), " \t\r\n"), "\n")
	for len(body) > queryLine && strings.HasPrefix(strings.TrimSpace(body[len(body)-1]), "--") {
		body = body[:len(body)-1]
	}
	sqlText := strings.TrimRight(strings.Join(body, "\n"), " \t\r\n")
	return strings.TrimRight(strings.TrimSuffix(sqlText, ";"), " \t\r\n")
}

// HasReason reports whether code is one of the model's declared reasons.
func (m *Model) HasReason(code string) bool {
	for _, r := range m.Reasons {
		if r.Code == code {
			return true
		}
	}
	return false
}

// ReasonLabel is the Chinese label of a reason code, or the code itself.
func (m *Model) ReasonLabel(code string) string {
	for _, r := range m.Reasons {
		if r.Code == code {
			return r.Label
		}
	}
	return code
}

func (m *Model) narrativeFor(reason string) string {
	def := ""
	for _, n := range m.Narratives {
		if n.Reason == reason {
			return n.Template
		}
		if n.Reason == "default" {
			def = n.Template
		}
	}
	return def
}

// Param returns the declared parameter of that name.
func (m *Model) Param(name string) (Param, bool) {
	for _, p := range m.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// lineOf returns the first line of the file containing s, or the query's
// first line: where to point a modeler when DuckDB gives no position.
func (m *Model) lineOf(s string) int {
	for i, l := range strings.Split(m.Text, "\n") {
		if i+1 >= m.queryLine && strings.Contains(l, s) {
			return i + 1
		}
	}
	return m.queryLine
}

// Version is the model version: the SHA-256 of the model file's text and its
// effective parameters as canonical JSON (sorted keys), so that a batch can
// name exactly what produced it and be reproduced.
func Version(m *Model, v Values) string {
	h := sha256.New()
	h.Write([]byte(m.Text))
	h.Write([]byte{0})
	h.Write([]byte(v.JSON()))
	return hex.EncodeToString(h.Sum(nil))
}

type keyValue struct {
	key, value string
	line       int
}

// orderedMap reads a YAML mapping of strings keeping its order and lines.
func orderedMap(n yaml.Node) ([]keyValue, error) {
	if n.Kind == 0 {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("must be a mapping")
	}
	var out []keyValue
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s: must be a text", k.Value)
		}
		if seen[k.Value] {
			return nil, fmt.Errorf("%s given twice", k.Value)
		}
		seen[k.Value] = true
		out = append(out, keyValue{key: k.Value, value: strings.TrimSpace(v.Value), line: k.Line})
	}
	return out, nil
}

var yamlLineRe = regexp.MustCompile(`line (\d+):? ?`)

// yamlErrorLine finds the line yaml.v3 names in its error.
func yamlErrorLine(err error) int {
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 1
}

func cleanYAMLError(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.ReplaceAll(s, "unmarshal errors:\n  ", "")
	return yamlLineRe.ReplaceAllString(s, "")
}

func headerLine(lines []string, prefix string) int {
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "- ")), prefix) {
			return i + 1
		}
	}
	return 1
}

func asFileError(file string, err error) *FileError {
	var fe *FileError
	if errors.As(err, &fe) {
		return fe
	}
	return &FileError{File: file, Err: err}
}

// canonicalJSON marshals with sorted keys (encoding/json sorts map keys).
func canonicalJSON(v map[string]any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "{}"
	}
	return string(b)
}
