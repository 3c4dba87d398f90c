// collider models: list, show, test and preview the collision models. The
// work is the models package's (catalog, tester, preview engine); this file
// parses flags, wires the jobs loader into the fixture tester and prints.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"collider/casebook"
	"collider/jobs"
	"collider/models"
	"collider/store"
)

const modelsUsage = `usage: collider models <command> [flags]

commands:
  list                      the models that ship with collider, or the files of --models DIR
  show NAME                 a model's header, parameters, rules and SQL
  test [NAME]               run the models' fixture tests (exit 1 if any fails)
  preview NAME --data DIR [--file F] [--set key=value ...] [--unmasked]
                            run a draft in the sandbox against the loaded data,
                            publish nothing, and compare it with the live version

flags of list, show and test:
  --models DIR              the files of DIR instead of the embedded ones; a file
                            that does not parse or fails its tests is refused
` + workbenchUsage

func cmdModels(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, modelsUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if code, ok := workbenchCommand(ctx, args[0], args[1:], stdout, stderr); ok {
		return code
	}
	switch args[0] {
	case "list":
		return modelsList(ctx, args[1:], stdout, stderr)
	case "show":
		return modelsShow(ctx, args[1:], stdout, stderr)
	case "test":
		return modelsTest(ctx, args[1:], stdout, stderr)
	case "preview":
		return modelsPreview(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "collider models: unknown command %q\n\n%s", args[0], modelsUsage)
		return 2
	}
}

// fixtureLoader loads fixture rows with the real loader, so that fixtures
// meet the same checks and derived columns as deliveries.
func fixtureLoader(ctx context.Context, s *store.Store, feed, dir string) error {
	d, err := jobs.ManualDelivery(feed, dir)
	if err != nil {
		return err
	}
	return (&jobs.Loader{Store: s}).Load(ctx, d).Err
}

func newTester() *models.Tester { return &models.Tester{Load: fixtureLoader} }

// parseInterleaved parses flags that may come after positional arguments
// (preview NAME --file F), returning the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// setFlags collects repeated --set key=value.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, ",") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

// liveCatalog holds the embedded models, replaced by the valid ones of dir
// when given; refused files are reported on stderr.
func liveCatalog(ctx context.Context, dir string, stderr io.Writer) (*models.Catalog, error) {
	embedded, err := models.Load(models.Embedded())
	if err != nil {
		return nil, fmt.Errorf("embedded models: %w", err)
	}
	cat := models.NewCatalog()
	cat.Log = slog.New(slog.DiscardHandler) // refusals are printed below
	cat.Set(embedded...)                    // tested when collider was built
	if dir == "" {
		return cat, nil
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--models %s: not a directory", dir)
	}
	err = cat.Reload(ctx, os.DirFS(dir), newTester())
	var le *models.LoadError
	if errors.As(err, &le) {
		for _, r := range le.Refused {
			fmt.Fprintf(stderr, "collider models: refused %s\n", prefixDir(dir, r.Error()))
		}
		return cat, nil
	}
	return cat, err
}

// dirModels are the valid models of a --models directory (refused files
// are reported on stderr): versions to submit, not live ones.
func dirModels(ctx context.Context, dir string, stderr io.Writer) ([]*models.Model, error) {
	if dir == "" {
		return nil, nil
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--models %s: not a directory", dir)
	}
	cat := models.NewCatalog()
	cat.Log = slog.New(slog.DiscardHandler)
	err := cat.Reload(ctx, os.DirFS(dir), newTester())
	var le *models.LoadError
	if errors.As(err, &le) {
		for _, r := range le.Refused {
			fmt.Fprintf(stderr, "collider models: refused %s\n", prefixDir(dir, r.Error()))
		}
	} else if err != nil {
		return nil, err
	}
	return cat.Models(), nil
}

// newWorkbench wires the preview engine and the model lifecycle over a
// store: the catalog holds the shipped models, then what the store's
// history made live.
func newWorkbench(ctx context.Context, s *store.Store, cfg Config, cb *casebook.Casebook, sb *jobs.Sandbox, log *slog.Logger) (*jobs.Workbench, error) {
	shipped, err := models.Load(models.Embedded())
	if err != nil {
		return nil, fmt.Errorf("embedded models: %w", err)
	}
	cat := models.NewCatalog()
	cat.Set(shipped...) // tested when collider was built
	wb := &jobs.Workbench{Previewer: &jobs.Previewer{Store: s, Casebook: cb, Catalog: cat, Sandbox: sb}, Log: log}
	if err := wb.Start(ctx, shipped); err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	return wb, nil
}

// submitFiles makes the changed files of --models DIR pending versions.
func submitFiles(ctx context.Context, wb *jobs.Workbench, dir string, ms []*models.Model, stderr io.Writer) error {
	subs, err := wb.SubmitFiles(ctx, ms, dir)
	for _, d := range subs {
		fmt.Fprintf(stderr, "collider: %s is a new version of %s, submitted as draft %d for the province to approve (never live by itself)\n",
			prefixDir(dir, d.File), d.Model, d.ID)
	}
	return err
}

// prefixDir names a refused file by its path: errors from os.DirFS name
// files relative to the directory.
func prefixDir(dir, msg string) string { return strings.TrimRight(dir, "/") + "/" + msg }

func modelsList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("models list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("models", "", "read models from this directory")
	if _, err := parseInterleaved(fs, args); err != nil {
		return 2
	}
	cat, err := liveCatalog(ctx, *dir, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "collider models list:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	// The Chinese title goes last: tabwriter counts bytes, not display width.
	fmt.Fprintln(tw, "# name\tversion\ttests\treasons\tparameters\ttitle")
	for _, m := range cat.Models() {
		vals, _ := m.Values(nil)
		var reasons []string
		for _, r := range m.Reasons {
			reasons = append(reasons, r.Code)
		}
		tests := 0
		if m.Tests != nil {
			tests = len(m.Tests.Cases)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", m.Name, models.Version(m, vals)[:12], tests, strings.Join(reasons, ","), vals.JSON(), m.Title)
	}
	tw.Flush()
	return 0
}

func modelsShow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("models show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("models", "", "read models from this directory")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: collider models show NAME [--models DIR]")
		return 2
	}
	cat, err := liveCatalog(ctx, *dir, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "collider models show:", err)
		return 1
	}
	m, err := cat.Model(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "collider models show:", err)
		return 1
	}
	vals, _ := m.Values(nil)
	fmt.Fprintf(stdout, "%s  %s\nfile     %s\nversion  %s\n\n%s\n\n", m.Name, m.Title, m.File, models.Version(m, vals), m.Description)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "parameter\ttype\tdefault\tdescription")
	for _, p := range m.Params {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", p.Name, p.Type, p.Default, p.Description)
	}
	fmt.Fprintln(tw, "\nreason\tlabel\t\t")
	for _, r := range m.Reasons {
		fmt.Fprintf(tw, "%s\t%s\t\t\n", r.Code, r.Label)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nseverity  high when %s\n          medium when %s\n          low otherwise\n", orNever(m.Severity.High), orNever(m.Severity.Medium))
	fmt.Fprintln(stdout, "\nnarrative")
	for _, n := range m.Narratives {
		fmt.Fprintf(stdout, "  %s: %s\n", n.Reason, n.Template)
	}
	tests := 0
	if m.Tests != nil {
		tests = len(m.Tests.Cases)
	}
	fmt.Fprintf(stdout, "\nfixture cases: %d\n\n%s\n", tests, m.SQL)
	return 0
}

func orNever(s string) string {
	if s == "" {
		return "(never)"
	}
	return s
}

func modelsTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("models test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("models", "", "test the models of this directory instead of the embedded ones")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 1 {
		fmt.Fprintln(stderr, "usage: collider models test [NAME] [--models DIR]")
		return 2
	}
	fsys := models.Embedded()
	if *dir != "" {
		fsys = os.DirFS(*dir)
	}
	ms, err := models.Load(fsys)
	failed := 0
	var le *models.LoadError
	if errors.As(err, &le) {
		for _, r := range le.Refused {
			if len(pos) == 0 || strings.HasPrefix(filepath.Base(r.File), pos[0]+".") {
				fmt.Fprintf(stdout, "FAIL  %s\n", r.Error())
				failed++
			}
		}
	} else if err != nil {
		fmt.Fprintln(stderr, "collider models test:", err)
		return 1
	}
	if len(pos) == 1 {
		var only []*models.Model
		for _, m := range ms {
			if m.Name == pos[0] {
				only = append(only, m)
			}
		}
		if len(only) == 0 && failed == 0 {
			fmt.Fprintf(stderr, "collider models test: no model %q\n", pos[0])
			return 1
		}
		ms = only
	}
	verdicts, err := newTester().Validate(ctx, ms...)
	if err != nil {
		fmt.Fprintln(stderr, "collider models test:", err)
		return 1
	}
	passed := 0
	for _, v := range verdicts {
		if len(v.Cases) == 0 {
			if v.Err != nil {
				fmt.Fprintf(stdout, "FAIL  %-20s %v\n", v.Model.Name, v.Err)
				failed++
			} else {
				fmt.Fprintf(stdout, "PASS  %-20s (query checked; no fixture cases)\n", v.Model.Name)
			}
			continue
		}
		for _, c := range v.Cases {
			if c.Passed() {
				passed++
				fmt.Fprintf(stdout, "PASS  %-20s %s (%.2fs)\n", c.Model, c.Case, c.Seconds)
			} else {
				failed++
				fmt.Fprintf(stdout, "FAIL  %-20s %v\n", c.Model, c.Err)
			}
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

func modelsPreview(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("models preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "the draft: a model file to run instead of the live version")
	var sets setFlags
	fs.Var(&sets, "set", "override a parameter of the draft: name=value (repeatable)")
	sample := fs.Int("sample", 10, "settlements to show of the added and of the removed")
	unmasked := fs.Bool("unmasked", false, "show ID numbers and names (the province's view); people are tokens otherwise, as modelers see them")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: collider models preview NAME --data DIR [--file F] [--set key=value ...]")
		fs.PrintDefaults()
	}
	cfg, err := loadConfig(args)
	if err != nil {
		fmt.Fprintln(stderr, "collider models preview:", err)
		return 2
	}
	cfg.storeFlags(fs)
	cfg.draftFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "collider models preview:", err)
		return 1
	}
	overrides, err := models.ParseSets(sets)
	if err != nil {
		return fail(err)
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	wb, err := newWorkbench(ctx, s, cfg, newCasebook(s, cfg), newSandbox(s, cfg), slog.Default())
	if err != nil {
		return fail(err)
	}
	pv, cat := wb.Previewer, wb.Previewer.Catalog
	req := jobs.PreviewRequest{Model: pos[0], Params: overrides, Sample: *sample}
	if *file != "" {
		if req.Draft, req.SQL, err = readDraft(pv, pos[0], *file); err != nil {
			return fail(err)
		}
	}
	// The command line is the operator's: as a modeler sees people, or as
	// the province does with --unmasked, and audited like either.
	who := casebook.User{Name: "collider models preview", Role: casebook.RoleModeler}
	if *unmasked {
		who.Role = casebook.RoleProvince
	}
	p, err := pv.Preview(ctx, who, req)
	if err != nil {
		return fail(err)
	}
	draft := req.Draft
	if draft == nil {
		draft, _ = cat.Model(pos[0])
	}
	printPreview(stdout, p, draft, *file)
	return 0
}

// readDraft parses a draft model file with the engine's ParseDraft; its
// fixtures are the file's sibling NAME.test.yaml if there is one, else the
// live model's.
func readDraft(pv *jobs.Previewer, name, file string) (*models.Model, string, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, "", err
	}
	m, err := pv.ParseDraft(name, file, text)
	if err != nil {
		return nil, "", err
	}
	tests := strings.TrimSuffix(file, ".sql") + models.TestsSuffix
	if b, err := os.ReadFile(tests); err == nil {
		if m.Tests, err = models.ParseSuite(tests, b); err != nil {
			return nil, "", err
		}
	}
	return m, string(text), nil
}

func printPreview(w io.Writer, p *models.Preview, draft *models.Model, file string) {
	src := "live file, other parameters"
	if file != "" {
		src = file
	}
	fmt.Fprintf(w, "model    %s  %s\n", p.Model, draft.Title)
	fmt.Fprintf(w, "draft    %s  %s  (%s)\n", p.Version[:12], p.Params.JSON(), src)
	if p.LiveVersion != "" {
		fmt.Fprintf(w, "live     %s\n", p.LiveVersion[:12])
	}
	passed, failedCases := 0, []models.CaseResult{}
	for _, c := range p.Tests {
		if c.Passed() {
			passed++
		} else {
			failedCases = append(failedCases, c)
		}
	}
	fmt.Fprintf(w, "tests    %d of %d fixture cases pass\n", passed, len(p.Tests))
	for _, c := range failedCases {
		fmt.Fprintf(w, "         FAIL %v\n", c.Err)
	}
	fmt.Fprintf(w, "\nflagged settlements  %d", p.Flagged)
	if p.AlreadyIssued > 0 || p.Suppressed > 0 {
		fmt.Fprintf(w, "  (already issued %d, suppressed %d)", p.AlreadyIssued, p.Suppressed)
	}
	fmt.Fprintf(w, "\nclues                %d  (%d settlements, %d persons, %d institutions)\n", p.Clues, p.Settlements, p.Persons, p.Institutions)
	fmt.Fprintf(w, "fund amount          %.2f  (total %.2f)\n", p.FundAmount, p.TotalAmount)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	section := func(title string, cs []models.Count) {
		fmt.Fprintf(w, "\n%s\n", title)
		for _, c := range cs {
			fmt.Fprintf(tw, "  %s\t%s\t%d clues\t%d settlements\t%.2f\t\n", c.Key, c.Label, c.Clues, c.Rows, c.FundAmount)
		}
		tw.Flush()
	}
	section("by severity", p.BySeverity)
	section("by reason", p.ByReason)
	section("by city", p.ByCity)

	if d := p.Diff; d != nil {
		fmt.Fprintf(w, "\nagainst live  live flags %d: %d added, %d removed, %d kept (%d with another reason)\n",
			d.LiveFlagged, d.Added, d.Removed, d.Kept, d.ReasonChanged)
		samples := func(title string, fl []models.Flagged) {
			if len(fl) == 0 {
				return
			}
			fmt.Fprintf(w, "%s\n", title)
			for _, f := range fl {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t\n", f.SettlementID, f.PersonID, f.PersonName,
					f.InstitutionID, f.VisitStart.Format("2006-01-02"), f.VisitType, f.FundAmount, f.Reason)
			}
			tw.Flush()
		}
		samples(fmt.Sprintf("added (largest %d)", len(d.AddedSample)), d.AddedSample)
		samples(fmt.Sprintf("removed (largest %d)", len(d.RemovedSample)), d.RemovedSample)
	}
	if pr := p.Precision; pr != nil {
		fmt.Fprintf(w, "\nprecision on investigated settlements  draft %s, live %s\n", precision(pr.Draft), precision(pr.Live))
	}
	if len(p.TopClues) > 0 {
		fmt.Fprintln(w, "\ntop clues")
		for _, c := range p.TopClues {
			fmt.Fprintf(w, "  %d. [%s] %s\n", c.No, c.Severity, c.Narrative)
		}
	}
}

func precision(c models.PrecisionCounts) string {
	if c.Value() < 0 {
		return "n/a (none investigated)"
	}
	return fmt.Sprintf("%d/%d = %.1f%%", c.Confirmed, c.Confirmed+c.Dismissed, 100*c.Value())
}
