// Package casebook is the system of record (案卷): published batches and
// their clues, the leads routed to the cities and every event on them, the
// users who act, and the audit log of what they saw and downloaded.
package casebook

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"collider/domain"
)

// Casebook works on the casebook database through the store's pool.
type Casebook struct {
	DB *sql.DB
	// DueDays is how long a city has for a lead, by severity (default 30 for
	// high, 60 for the others).
	DueDays map[string]int
	// TmpDir is where XLSX exports spill (default: the system temp directory).
	TmpDir string
	// Now is the clock; tests set it.
	Now func() time.Time
	// ReadCacheBytes bounds the cache of clues and event lists
	// (DefaultReadCacheBytes when 0; negative: no cache).
	ReadCacheBytes int64

	authMu      sync.Mutex
	authCache   map[string]cachedUser
	revocations atomic.Uint64

	audit auditWriter
	mem   leadMemory
	cache readCache

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt
}

// stmtQuery runs a query of the hottest reads through a statement prepared
// once for the casebook's life: parsing and planning are half of what a
// DuckDB point lookup costs.
func (c *Casebook) stmtQuery(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	c.stmtMu.Lock()
	st, ok := c.stmts[q]
	if !ok {
		var err error
		if st, err = c.DB.PrepareContext(ctx, q); err != nil {
			c.stmtMu.Unlock()
			return nil, err
		}
		if c.stmts == nil {
			c.stmts = map[string]*sql.Stmt{}
		}
		c.stmts[q] = st
	}
	c.stmtMu.Unlock()
	return st.QueryContext(ctx, args...)
}

// New returns a casebook over the store's pool with the spec's defaults.
func New(db *sql.DB) *Casebook {
	return &Casebook{DB: db, DueDays: map[string]int{"high": 30, "medium": 60, "low": 60}}
}

func (c *Casebook) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Casebook) dueDays(severity string) int {
	if d, ok := c.DueDays[severity]; ok && d > 0 {
		return d
	}
	return 60
}

// countable are the lists Count counts: each a whole table, read by the
// roles its list is for (the province's batches, suppressions and audit
// log; the operator's users).
var countable = map[string]string{"batches": "casebook.batches", "suppressions": "casebook.suppressions",
	"audit": "casebook.audit", "users": "casebook.users"}

// Count says how many rows a whole list has (countable).
func (c *Casebook) Count(ctx context.Context, list string) (int64, error) {
	table, ok := countable[list]
	if !ok {
		return 0, domain.Errorf(domain.EINVALID, "no list %q to count", list)
	}
	if list == "audit" {
		if err := c.flushAudit(ctx); err != nil {
			return 0, err
		}
	}
	var n int64
	err := c.DB.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}
