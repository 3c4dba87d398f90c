// collider models submit|pending|approve|reject|rollback|history: the model
// lifecycle from the command line. These are clients of a running server
// (the store is the server's while it runs), acting with the caller's
// token: a modeler submits, the province decides.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"collider/models"
)

const workbenchUsage = `
lifecycle (clients of a running server: --server URL --token-file F):
  submit NAME [--file F] [--set key=value ...] --note N
                            preview a draft in the sandbox and submit it as a
                            pending version (prints the draft id last)
  pending [NAME]            the drafts waiting for the province
  approve DRAFT_ID [--note N]
                            make a draft live from the next run (province)
  reject DRAFT_ID --reason R
                            turn a draft down (province)
  rollback NAME VERSION [--note N]
                            make a version that was live before live again (province)
  history NAME              who did what to the model, and when
`

// workbenchCommand runs one lifecycle command; ok is false for a command
// that is not one.
func workbenchCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	run, ok := map[string]func(context.Context, *apiClient, []string, io.Writer, io.Writer) int{
		"submit": modelsSubmit, "pending": modelsPending, "approve": modelsDecide, "reject": modelsDecide,
		"rollback": modelsRollback, "history": modelsHistory,
	}[name]
	if !ok {
		return 0, false
	}
	fs := flag.NewFlagSet("models "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(args)
	if err != nil {
		fmt.Fprintln(stderr, "collider models:", err)
		return 2, true
	}
	cfg.clientFlags(fs)
	// The command's own flags are parsed by the command; here only the
	// client's, wherever they stand.
	rest, err := splitClientFlags(fs, args)
	if err != nil {
		return 2, true
	}
	c, err := newAPIClient(cfg, 30*time.Minute)
	if err != nil {
		fmt.Fprintln(stderr, "collider models "+name+":", err)
		return 2, true
	}
	if name == "approve" || name == "reject" {
		rest = append([]string{name}, rest...)
	}
	return run(ctx, c, rest, stdout, stderr), true
}

// splitClientFlags takes --server, --token-file and --config out of args
// (parsed into fs) and returns the rest in order.
func splitClientFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var mine, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && fs.Lookup(name) != nil {
			mine = append(mine, a)
			if !hasValue && i+1 < len(args) {
				mine = append(mine, args[i+1])
				i++
			}
			continue
		}
		rest = append(rest, a)
	}
	return rest, fs.Parse(mine)
}

type draftSummary struct {
	ID          int64             `json:"draft_id"`
	Model       string            `json:"model"`
	Version     string            `json:"version"`
	Status      string            `json:"status"`
	Params      map[string]string `json:"params"`
	Note        string            `json:"note"`
	TestsPassed bool              `json:"tests_passed"`
	SubmittedBy string            `json:"submitted_by"`
	SubmittedAt time.Time         `json:"submitted_at"`
	DecidedBy   string            `json:"decided_by"`
	Decision    string            `json:"decision"`
	Preview     *models.Preview   `json:"preview"`
}

func modelsSubmit(ctx context.Context, c *apiClient, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("models submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "the draft model file (its NAME.test.yaml beside it, when there is one, travels with it)")
	note := fs.String("note", "", "what the draft changes and why (required)")
	var sets setFlags
	fs.Var(&sets, "set", "a parameter of the draft: name=value (repeatable)")
	pos, err := parseInterleaved(fs, args)
	if err != nil || len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: collider models submit NAME [--file F] [--set key=value ...] --note N --server URL --token-file F")
		return 2
	}
	params, err := models.ParseSets(sets)
	if err != nil {
		fmt.Fprintln(stderr, "collider models submit:", err)
		return 2
	}
	body := map[string]any{"params": params, "note": *note}
	if *file != "" {
		text, err := os.ReadFile(*file)
		if err != nil {
			fmt.Fprintln(stderr, "collider models submit:", err)
			return 1
		}
		body["sql"] = string(text)
		if tests, err := os.ReadFile(strings.TrimSuffix(*file, ".sql") + models.TestsSuffix); err == nil {
			body["tests"] = string(tests)
		}
	}
	var d draftSummary
	if err := c.do(ctx, "POST", "/api/v1/models/"+url.PathEscape(pos[0])+"/drafts", body, &d); err != nil {
		fmt.Fprintln(stderr, "collider models submit:", err)
		return 1
	}
	fmt.Fprintf(stdout, "draft %d of %s, version %s: pending the province's decision\n", d.ID, d.Model, d.Version[:12])
	if p := d.Preview; p != nil {
		passed := 0
		for _, t := range p.Tests {
			if t.Passed() {
				passed++
			}
		}
		fmt.Fprintf(stdout, "fixture cases %d of %d pass; flagged %d, clues %d", passed, len(p.Tests), p.Flagged, p.Clues)
		if p.Diff != nil {
			fmt.Fprintf(stdout, "; against live: %d added, %d removed", p.Diff.Added, p.Diff.Removed)
		}
		fmt.Fprintln(stdout)
	}
	if !d.TestsPassed {
		fmt.Fprintln(stderr, "collider models submit: the draft fails fixture cases; the province cannot approve it as it is")
	}
	fmt.Fprintln(stdout, d.ID)
	return 0
}

func modelsPending(ctx context.Context, c *apiClient, args []string, stdout, stderr io.Writer) int {
	q := "/api/v1/drafts?status=pending&limit=1000"
	if len(args) > 1 {
		fmt.Fprintln(stderr, "usage: collider models pending [NAME] --server URL --token-file F")
		return 2
	}
	if len(args) == 1 {
		q += "&model=" + url.QueryEscape(args[0])
	}
	var page struct{ Items []draftSummary }
	if err := c.do(ctx, "GET", q, nil, &page); err != nil {
		fmt.Fprintln(stderr, "collider models pending:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "# draft\tmodel\tversion\tfixtures\tsubmitted\tby\tparams\tnote")
	for _, d := range page.Items {
		tests := "pass"
		if !d.TestsPassed {
			tests = "FAIL"
		}
		params, _ := json.Marshal(d.Params)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Model, d.Version[:12], tests,
			d.SubmittedAt.Format("2006-01-02 15:04"), d.SubmittedBy, params, d.Note)
	}
	tw.Flush()
	return 0
}

// modelsDecide approves or rejects: args[0] is the verb.
func modelsDecide(ctx context.Context, c *apiClient, args []string, stdout, stderr io.Writer) int {
	verb := args[0]
	fs := flag.NewFlagSet("models "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	note := fs.String("note", "", "the province's note")
	reason := fs.String("reason", "", "why the draft is turned down (required to reject)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil || len(pos) != 1 {
		fmt.Fprintf(stderr, "usage: collider models %s DRAFT_ID [--note N | --reason R] --server URL --token-file F\n", verb)
		return 2
	}
	var d draftSummary
	if err := c.do(ctx, "POST", "/api/v1/drafts/"+url.PathEscape(pos[0])+"/"+verb, map[string]string{"note": *note, "reason": *reason}, &d); err != nil {
		fmt.Fprintf(stderr, "collider models %s: %v\n", verb, err)
		return 1
	}
	switch d.Status {
	case "approved":
		fmt.Fprintf(stdout, "draft %d approved: version %s of %s is live from the next run\n", d.ID, d.Version[:12], d.Model)
	default:
		fmt.Fprintf(stdout, "draft %d %s: %s\n", d.ID, d.Status, d.Decision)
	}
	return 0
}

func modelsRollback(ctx context.Context, c *apiClient, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("models rollback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	note := fs.String("note", "", "why")
	pos, err := parseInterleaved(fs, args)
	if err != nil || len(pos) != 2 {
		fmt.Fprintln(stderr, "usage: collider models rollback NAME VERSION [--note N] --server URL --token-file F")
		return 2
	}
	var ev struct {
		Version string `json:"version"`
	}
	if err := c.do(ctx, "POST", "/api/v1/models/"+url.PathEscape(pos[0])+"/rollback", map[string]string{"version": pos[1], "note": *note}, &ev); err != nil {
		fmt.Fprintln(stderr, "collider models rollback:", err)
		return 1
	}
	fmt.Fprintf(stdout, "version %s of %s is live again from the next run\n", ev.Version[:12], pos[0])
	return 0
}

func modelsHistory(ctx context.Context, c *apiClient, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: collider models history NAME --server URL --token-file F")
		return 2
	}
	var page struct {
		Items []struct {
			Action   string    `json:"action"`
			Version  string    `json:"version"`
			DraftID  int64     `json:"draft_id"`
			UserName string    `json:"user_name"`
			Role     string    `json:"role"`
			At       time.Time `json:"at"`
			Note     string    `json:"note"`
			Live     bool      `json:"live"`
		}
	}
	if err := c.do(ctx, "GET", "/api/v1/models/"+url.PathEscape(args[0])+"/history?limit=1000", nil, &page); err != nil {
		fmt.Fprintln(stderr, "collider models history:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "# when\taction\tversion\tdraft\tlive\twho\tnote")
	for _, h := range page.Items {
		live := ""
		if h.Live {
			live = "live"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s (%s)\t%s\n", h.At.Format("2006-01-02 15:04:05"), h.Action, h.Version[:12], h.DraftID, live, h.UserName, h.Role, h.Note)
	}
	tw.Flush()
	return 0
}
