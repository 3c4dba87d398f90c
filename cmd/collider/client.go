// collider client and collider health: a small client of a collider server,
// for a city bureau's scripts (pull its leads, post feedback, download) and
// for the image's health check.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// cmdHealth asks the local server's /healthz: the image's HEALTHCHECK.
func cmdHealth(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("COLLIDER_ADDR", ":8080"), "the server's listen address (env COLLIDER_ADDR)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	host := *addr
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+host+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "unhealthy:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "unhealthy:", resp.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

const clientUsage = `usage: collider client [--server URL] [--token-file F] <command>

commands:
  leads [--status S]                         the caller's lead inbox, one per line
  act LEAD_ID ACTION [--note N] [--outcome O] [--recovered YUAN] [--city C]
                                             accept, investigate, close, return, reassign
  export --batch ID --format csv|xlsx|parquet --out FILE
                                             download a batch (the caller's scope)

The token comes from --token-file, COLLIDER_TOKEN or the token_file setting.
`

type apiClient struct {
	base, token string
	http        *http.Client
}

func (c *apiClient) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string }
		}
		b, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s: %s (%s)", resp.Status, e.Error.Message, e.Error.Code)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// clientFlags registers the settings a client of the server takes.
func (c *Config) clientFlags(fs *flag.FlagSet) {
	fs.String("config", "", "YAML configuration file (env COLLIDER_CONFIG)")
	c.remoteFlags(fs)
}

func cmdClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, clientUsage) }
	cfg, err := parseWithConfig(fs, args, (*Config).clientFlags)
	if err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	c, err := newAPIClient(cfg, 10*time.Minute)
	if err != nil {
		fmt.Fprintln(stderr, "collider client:", err)
		return 2
	}
	sub, ok := map[string]func(context.Context, *apiClient, []string, io.Writer, io.Writer) error{
		"leads": clientLeads, "act": clientAct, "export": clientExport,
	}[fs.Arg(0)]
	if !ok {
		fs.Usage()
		return 2
	}
	switch err := sub(ctx, c, fs.Args()[1:], stdout, stderr); {
	case errors.Is(err, errUsage):
		fs.Usage()
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "collider client:", err)
		return 1
	}
	return 0
}

// errUsage is a client command's answer to arguments it cannot take.
var errUsage = errors.New("usage")

// clientLeads prints the caller's inbox, a lead a line.
func clientLeads(ctx context.Context, c *apiClient, args []string, stdout, stderr io.Writer) error {
	sub := flag.NewFlagSet("leads", flag.ContinueOnError)
	sub.SetOutput(stderr)
	status := sub.String("status", "", "only leads in this status")
	if err := sub.Parse(args); err != nil {
		return errUsage
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "# lead\tcity\tstatus\tdue\tmodel\tseverity\tfund_amount")
	cursor := ""
	for {
		var page struct {
			Items []struct {
				ID      int64  `json:"lead_id"`
				City    string `json:"city_code"`
				Status  string `json:"status"`
				DueDate string `json:"due_date"`
			}
			NextCursor *string `json:"next_cursor"`
		}
		q := "/api/v1/leads?limit=1000&status=" + *status
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		if err := c.do(ctx, "GET", q, nil, &page); err != nil {
			return err
		}
		for _, l := range page.Items {
			var lead struct {
				Clue struct {
					Model, Severity string
					FundAmount      float64 `json:"fund_amount"`
				}
			}
			if err := c.do(ctx, "GET", fmt.Sprintf("/api/v1/leads/%d", l.ID), nil, &lead); err != nil {
				return err
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%.2f\n", l.ID, l.City, l.Status, l.DueDate, lead.Clue.Model, lead.Clue.Severity, lead.Clue.FundAmount)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	return tw.Flush()
}

// clientAct posts an action on a lead.
func clientAct(ctx context.Context, c *apiClient, args []string, stdout, stderr io.Writer) error {
	sub := flag.NewFlagSet("act", flag.ContinueOnError)
	sub.SetOutput(stderr)
	note := sub.String("note", "", "note (closing and returning need one)")
	outcome := sub.String("outcome", "", "confirmed, dismissed or referred (close)")
	recovered := sub.Float64("recovered", -1, "recovered amount in yuan (close as confirmed)")
	city := sub.String("city", "", "the city a lead is reassigned to (reassign)")
	pos, err := parseInterleaved(sub, args)
	if err != nil || len(pos) != 2 {
		return errUsage
	}
	body := map[string]any{"action": pos[1]}
	for k, v := range map[string]string{"note": *note, "outcome": *outcome, "city_code": *city} {
		if v != "" {
			body[k] = v
		}
	}
	if *recovered >= 0 {
		body["recovered_amount"] = *recovered
	}
	var lead struct {
		ID     int64  `json:"lead_id"`
		Status string `json:"status"`
	}
	if err := c.do(ctx, "POST", "/api/v1/leads/"+pos[0]+"/events", body, &lead); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lead %d %s\n", lead.ID, lead.Status)
	return nil
}

// clientExport downloads a batch into a file; a failed download leaves no file.
func clientExport(ctx context.Context, c *apiClient, args []string, stdout, stderr io.Writer) error {
	sub := flag.NewFlagSet("export", flag.ContinueOnError)
	sub.SetOutput(stderr)
	batch := sub.Int64("batch", 0, "batch id")
	format := sub.String("format", "csv", "csv, xlsx or parquet")
	out := sub.String("out", "", "output file")
	if err := sub.Parse(args); err != nil || *batch <= 0 || *out == "" {
		return errUsage
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	err = c.do(ctx, "GET", fmt.Sprintf("/api/v1/batches/%d/export?format=%s", *batch, *format), nil, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out)
	}
	return err
}
