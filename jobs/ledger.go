// This file reads the delivery ledger: summaries and rejects for the province.
package jobs

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"collider/casebook"
	"collider/domain"
)

// DeliverySummary is one row of the delivery ledger.
type DeliverySummary struct {
	ID           int64     `json:"delivery_id"`
	Feed         string    `json:"feed"`
	Name         string    `json:"name"`
	SHA256       string    `json:"sha256"`
	Status       string    `json:"status"`
	Files        int       `json:"files"`
	Rows         int64     `json:"rows"`
	Loaded       int64     `json:"loaded"`
	Rejected     int64     `json:"rejected"`
	Replaced     int64     `json:"replaced"`
	ExtraColumns []string  `json:"extra_columns"`
	Error        string    `json:"error,omitempty"`
	StartedAt    time.Time `json:"started_at"`
	Seconds      float64   `json:"seconds"`
}

// ErrNoDelivery is returned for an unknown delivery id.
var ErrNoDelivery = errors.New("no such delivery")

const summaryColumns = `delivery_id, feed, name, sha256, status, files, rows_read, loaded, rejected, replaced,
	coalesce(extra_columns, ''), coalesce(error, ''), started_at, seconds`

func scanSummary(s interface{ Scan(...any) error }) (DeliverySummary, error) {
	var d DeliverySummary
	var extra string
	err := s.Scan(&d.ID, &d.Feed, &d.Name, &d.SHA256, &d.Status, &d.Files, &d.Rows, &d.Loaded, &d.Rejected, &d.Replaced, &extra, &d.Error, &d.StartedAt, &d.Seconds)
	d.StartedAt = domain.Wall(d.StartedAt)
	d.ExtraColumns = []string{}
	if extra != "" {
		d.ExtraColumns = strings.Split(extra, ",")
	}
	return d, err
}

// Ledger reads the delivery ledger for the province and the operator: the
// summaries, and the rejects as a download (audited).
type Ledger struct {
	DB       *sql.DB
	Casebook *casebook.Casebook
}

// Deliveries lists the ledger, newest first, before a cursor (0: from the newest).
func (l *Ledger) Deliveries(ctx context.Context, before int64, limit int) ([]DeliverySummary, error) {
	db := l.DB
	limit = domain.PageLimit(limit)
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := db.QueryContext(ctx, "SELECT "+summaryColumns+" FROM deliveries WHERE delivery_id < ? ORDER BY delivery_id DESC LIMIT ?", before, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []DeliverySummary{}
	for rows.Next() {
		d, err := scanSummary(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Count says how many deliveries the ledger holds.
func (l *Ledger) Count(ctx context.Context) (int64, error) {
	var n int64
	err := l.DB.QueryRowContext(ctx, "SELECT count(*) FROM deliveries").Scan(&n)
	return n, err
}

// Delivery returns one delivery's summary.
func (l *Ledger) Delivery(ctx context.Context, id int64) (DeliverySummary, error) {
	d, err := scanSummary(l.DB.QueryRowContext(ctx, "SELECT "+summaryColumns+" FROM deliveries WHERE delivery_id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, domain.Errorf(domain.ENOTFOUND, "delivery %d: %w", id, ErrNoDelivery)
	}
	return d, err
}

// WriteRejects streams a delivery's rejects as CSV (UTF-8 with a BOM, for
// Excel) for the reader who, returns the rows written, and audits the
// download — even when it breaks off (rows went out) or the reader has
// gone. The delivery is checked before the first byte: start, when given,
// is called then (a response's headers go out there).
func (l *Ledger) WriteRejects(ctx context.Context, who casebook.User, id int64, w io.Writer, start func()) (int64, error) {
	if _, err := l.Delivery(ctx, id); err != nil {
		return 0, err
	}
	if start != nil {
		start()
	}
	n, err := writeRejects(ctx, l.DB, id, w)
	detail := ""
	if err != nil {
		detail = "interrupted: " + err.Error()
	}
	if aerr := l.Casebook.Audit(context.WithoutCancel(ctx), who, "download", fmt.Sprintf("delivery %d rejects.csv", id), n, detail); aerr != nil && err == nil {
		err = aerr
	}
	return n, err
}

func writeRejects(ctx context.Context, db *sql.DB, id int64, w io.Writer) (int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT file, row_number, column_name, reason, coalesce(raw_value, '')
		FROM rejects WHERE delivery_id = ? ORDER BY file, row_number, column_name`, id)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	buf := bufio.NewWriter(w)
	buf.WriteString("\uFEFF")
	cw := csv.NewWriter(buf)
	cw.Write([]string{"delivery_id", "file", "row", "column", "reason", "raw_value"})
	var n int64
	for rows.Next() {
		var file, col, reason, raw string
		var row int64
		if err := rows.Scan(&file, &row, &col, &reason, &raw); err != nil {
			return n, err
		}
		cw.Write([]string{strconv.FormatInt(id, 10), file, strconv.FormatInt(row, 10), col, reason, raw})
		n++
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return n, err
	}
	return n, buf.Flush()
}
