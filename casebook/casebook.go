package casebook

import (
	"context"
	"database/sql"
	"time"
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

// Audit records a download or a view of unmasked personal data.
func (c *Casebook) Audit(ctx context.Context, u User, action, object string, rows int64, detail string) error {
	_, err := c.DB.ExecContext(ctx, `INSERT INTO casebook.audit VALUES (nextval('casebook.audit_ids'), ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.now(), u.ID, u.Name, string(u.Role), action, object, rows, nullString(detail))
	return err
}
