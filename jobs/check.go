// This file is the integrity check (collider check, GET /api/v1/check): the
// delivery ledger's invariants beside the casebook's, all read in one
// transaction so that a check of a busy store sees one moment of it.
package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"collider/casebook"
	"collider/domain"
	"collider/feeds"
)

// CheckReport is how the store stands against every invariant.
type CheckReport struct {
	OK         bool                 `json:"ok"`
	CheckedAt  time.Time            `json:"checked_at"`
	Invariants []casebook.Invariant `json:"invariants"`
}

// Broken lists the invariants with violations.
func (r CheckReport) Broken() []casebook.Invariant {
	var out []casebook.Invariant
	for _, inv := range r.Invariants {
		if inv.Violations > 0 {
			out = append(out, inv)
		}
	}
	return out
}

// DeliveryInvariants are the delivery ledger's rules.
func DeliveryInvariants() []casebook.Invariant {
	var perFeed []string
	for _, c := range feeds.Contracts {
		t := q(c.Feed)
		perFeed = append(perFeed,
			fmt.Sprintf(`SELECT format('%[1]s holds {} rows but its loaded deliveries loaded {} and replaced {}', t.n, d.loaded, d.replaced)
				FROM (SELECT count(*) AS n FROM %[2]s) t,
				     (SELECT coalesce(sum(loaded), 0) AS loaded, coalesce(sum(replaced), 0) AS replaced FROM deliveries
				      WHERE feed = '%[1]s' AND status = 'loaded') d
				WHERE t.n <> d.loaded - d.replaced`, c.Feed, t),
			fmt.Sprintf(`SELECT format('%[1]s holds {} rows of delivery {}, which {}', x.n, x.delivery_id,
			              CASE WHEN d.delivery_id IS NULL THEN 'is not in the ledger'
			                   WHEN d.status <> 'loaded' OR d.feed <> '%[1]s' THEN 'is not a loaded %[1]s delivery'
			                   ELSE format('loaded only {}', d.loaded) END)
				FROM (SELECT delivery_id, count(*) AS n FROM %[2]s GROUP BY ALL) x LEFT JOIN deliveries d ON d.delivery_id = x.delivery_id
				WHERE d.delivery_id IS NULL OR d.status <> 'loaded' OR d.feed <> '%[1]s' OR x.n > d.loaded`, c.Feed, t),
			fmt.Sprintf(`SELECT format('%[1]s holds a rejected row (delivery {}, source row {})', delivery_id, -source_row)
				FROM %[2]s WHERE source_row < 0`, c.Feed, t))
	}
	return []casebook.Invariant{{
		Name: "delivery_counts",
		Description: "every loaded delivery read as many rows as it loaded and rejected, with its rejected rows and its files recorded; " +
			"each feed table holds exactly what its deliveries loaded, less what later deliveries replaced, and no row of a delivery that did not load",
		Query: `SELECT format('delivery {} ({}/{}) read {} rows but loaded {} and rejected {}', delivery_id, feed, name, rows_read, loaded, rejected)
				FROM deliveries WHERE status = 'loaded' AND rows_read <> loaded + rejected
			UNION ALL
			SELECT format('delivery {} ({}/{}) rejected {} rows but its rejects name {}', d.delivery_id, d.feed, d.name, d.rejected, coalesce(r.n, 0))
				FROM deliveries d LEFT JOIN (SELECT delivery_id, count(*) AS n FROM (SELECT DISTINCT delivery_id, file, row_number FROM rejects) GROUP BY ALL) r
				ON r.delivery_id = d.delivery_id
				WHERE d.status = 'loaded' AND d.rejected <> coalesce(r.n, 0)
			UNION ALL
			SELECT format('delivery {} ({}/{}) has {} files but {} are recorded', d.delivery_id, d.feed, d.name, d.files, coalesce(f.n, 0))
				FROM deliveries d LEFT JOIN (SELECT delivery_id, count(*) AS n FROM delivery_files GROUP BY ALL) f ON f.delivery_id = d.delivery_id
				WHERE d.status = 'loaded' AND d.files <> coalesce(f.n, 0)
			UNION ALL
			` + strings.Join(perFeed, "\n\t\t\tUNION ALL\n\t\t\t"),
	}}
}

// Check verifies every invariant of the store in one read-only transaction.
func Check(ctx context.Context, db *sql.DB) (CheckReport, error) {
	r := CheckReport{CheckedAt: time.Now().In(domain.ChinaTime)}
	conn, err := db.Conn(ctx)
	if err != nil {
		return r, err
	}
	defer conn.Close()
	// The driver refuses TxOptions.ReadOnly; DuckDB has the statement.
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION READ ONLY"); err != nil {
		return r, err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	r.Invariants, err = casebook.CheckInvariants(ctx, conn, append(casebook.Invariants(), DeliveryInvariants()...))
	if err != nil {
		return r, err
	}
	r.OK = len(r.Broken()) == 0
	return r, nil
}
