package casebook

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"collider/domain"
)

// Metric is the feedback on clues (反馈统计), per model version or per city:
// what was issued and what the investigations found.
type Metric struct {
	Model        string   `json:"model,omitempty"`
	ModelVersion string   `json:"model_version,omitempty"`
	City         string   `json:"city_code,omitempty"`
	Issued       int64    `json:"issued"`
	Accepted     int64    `json:"accepted"`
	Closed       int64    `json:"closed"`
	Confirmed    int64    `json:"confirmed"`
	Dismissed    int64    `json:"dismissed"`
	Referred     int64    `json:"referred"`
	Precision    *float64 `json:"precision"` // confirmed / (confirmed + dismissed); null before any verdict
	Recovered    float64  `json:"recovered_amount"`
	Overdue      int64    `json:"overdue"`
}

// Metrics groups lead outcomes by "model" (model and version) or "city",
// from the groups of the leads in memory. A city user gets its own city only.
func (c *Casebook) Metrics(ctx context.Context, u User, by string) ([]Metric, error) {
	if by != "model" && by != "" && by != "city" {
		return nil, domain.Errorf(domain.EINVALID, "metrics by model or city, not %q", by)
	}
	type metricSum struct {
		Metric
		cents int64
	}
	sums := map[[3]string]*metricSum{}
	today := c.today()
	err := c.groupsView(ctx, func(leadGroups groups) {
		for _, lg := range leadGroups {
			m, n := &lg.proto, lg.leads
			if u.Role == RoleCity && m.City != u.City {
				continue
			}
			key := [3]string{m.model, m.version, ""}
			if by == "city" {
				key = [3]string{"", "", m.City}
			}
			g := sums[key]
			if g == nil {
				g = &metricSum{Metric: Metric{Model: key[0], ModelVersion: key[1], City: key[2]}}
				sums[key] = g
			}
			g.Issued += n
			g.Accepted += n * b2i(m.accepted)
			g.Closed += n * b2i(m.Status == StatusClosed)
			g.Confirmed += n * b2i(m.Outcome == OutcomeConfirmed)
			g.Dismissed += n * b2i(m.Outcome == OutcomeDismissed)
			g.Referred += n * b2i(m.Outcome == OutcomeReferred)
			g.Overdue += n * b2i(m.overdue(today))
			g.cents += lg.recoveredCents
		}
	})
	out := []Metric{}
	for _, g := range sums {
		g.Recovered = float64(g.cents) / 100
		if d := g.Confirmed + g.Dismissed; d > 0 {
			p := float64(g.Confirmed) / float64(d)
			g.Precision = &p
		}
		out = append(out, g.Metric)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Model < b.Model || (a.Model == b.Model && (a.ModelVersion < b.ModelVersion || (a.ModelVersion == b.ModelVersion && a.City < b.City)))
	})
	return out, err
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ReportRow is one city's line of the monthly supervision report (督办月报).
type ReportRow struct {
	City      string  `json:"city_code"`
	Issued    int64   `json:"issued"`    // routed to the city during the month
	Accepted  int64   `json:"accepted"`  // accepted during the month
	Closed    int64   `json:"closed"`    // closed during the month
	Overdue   int64   `json:"overdue"`   // open past their due date at the month's end (or now)
	Confirmed int64   `json:"confirmed"` // closed as confirmed during the month
	Recovered float64 `json:"recovered_amount"`
}

// MonthlyReport counts a month's work per city from the lead events, so it
// can be run for any past month. month is YYYY-MM.
func (c *Casebook) MonthlyReport(ctx context.Context, u User, month string) ([]ReportRow, error) {
	start, err := time.ParseInLocation("2006-01", month, domain.ChinaTime)
	if err != nil {
		return nil, domain.Errorf(domain.EINVALID, "month is YYYY-MM, got %q", month)
	}
	if u.Role == RoleModeler {
		return nil, domain.Errorf(domain.EFORBIDDEN, "the supervision report is for the province and the cities")
	}
	end := start.AddDate(0, 1, 0)
	asOf := end
	if now := c.now(); now.Before(end) {
		asOf = now
	}
	cityFilter, args := "", []any{domain.DBTime(start), domain.DBTime(end), domain.DBTime(asOf)}
	if u.Role == RoleCity {
		cityFilter = "WHERE city = $4"
		args = append(args, u.City)
	}
	rows, err := c.DB.QueryContext(ctx, fmt.Sprintf(`WITH ev AS (
			SELECT * FROM casebook.lead_events WHERE event_at >= $1 AND event_at < $2),
		per AS (
			SELECT city_code AS city,
			       count(*) FILTER (WHERE action IN ('route', 'reassign')) AS issued,
			       count(*) FILTER (WHERE action = 'accept') AS accepted,
			       count(*) FILTER (WHERE action = 'close') AS closed,
			       count(*) FILTER (WHERE action = 'close' AND outcome = 'confirmed') AS confirmed,
			       coalesce(CAST(sum(recovered_amount) AS DOUBLE), 0) AS recovered
			FROM ev GROUP BY city_code),
		-- the state of every lead at asOf: its last event before then
		state AS (
			SELECT lead_id, city_code AS city, to_status FROM (
				SELECT e.*, row_number() OVER (PARTITION BY lead_id ORDER BY event_id DESC) AS rn
				FROM casebook.lead_events e WHERE event_at < $3) WHERE rn = 1),
		overdue AS (
			SELECT s.city, count(*) AS overdue FROM state s JOIN casebook.leads l USING (lead_id)
			WHERE s.to_status <> 'closed' AND l.due_date < CAST($3 AS DATE) GROUP BY s.city),
		cities AS (SELECT city FROM per UNION SELECT city FROM overdue)
		SELECT city, coalesce(issued, 0), coalesce(accepted, 0), coalesce(closed, 0), coalesce(overdue, 0),
		       coalesce(confirmed, 0), coalesce(recovered, 0)
		FROM cities LEFT JOIN per USING (city) LEFT JOIN overdue USING (city) %s ORDER BY city`, cityFilter), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ReportRow{}
	for rows.Next() {
		var r ReportRow
		if err := rows.Scan(&r.City, &r.Issued, &r.Accepted, &r.Closed, &r.Overdue, &r.Confirmed, &r.Recovered); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// WriteReportXLSX writes the monthly report as a spreadsheet and audits the download.
func (c *Casebook) WriteReportXLSX(ctx context.Context, u User, month string, cityNames map[string]string, w io.Writer) error {
	rows, err := c.MonthlyReport(ctx, u, month)
	if err != nil {
		return err
	}
	sheet, err := NewSheet(w, c.TmpDir, "督办月报 "+month, []SheetColumn{{"市州代码", TextCell, 10}, {"市州", TextCell, 16},
		{"下发线索", IntCell, 10}, {"签收", IntCell, 8}, {"办结", IntCell, 8}, {"逾期未办结", IntCell, 11}, {"查实", IntCell, 8},
		{"追回金额（元）", AmountCell, 16}})
	if err != nil {
		return err
	}
	defer sheet.Discard()
	for _, r := range rows {
		if err := sheet.Add(r.City, cityNames[r.City], r.Issued, r.Accepted, r.Closed, r.Overdue, r.Confirmed, r.Recovered); err != nil {
			return err
		}
	}
	if err := sheet.Close(); err != nil {
		return err
	}
	return c.Audit(context.WithoutCancel(ctx), u, "download", "report.xlsx?month="+month, int64(len(rows)), "")
}
