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
	var n int64
	err := c.DB.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}
