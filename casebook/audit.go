// This file is the audit log (审计日志): every download and every view of
// unmasked personal data, written by one writer that commits the lines of
// concurrent requests together (group commit). A request returns only
// after its line is committed, so an answered request is always audited —
// a killed process loses no line of a request it answered, and a disk that
// cannot take the line fails the request instead — while a hundred readers
// at once cost one commit, not a hundred contending ones.
package casebook

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"collider/domain"
)

// auditQueue is how many lines may wait for the writer; a request that
// finds it full waits for room (lines are never dropped).
const auditQueue = 4096

// auditChunk is how many lines one INSERT statement carries.
const auditChunk = 100

// auditLine is one line on its way to the log, and where its commit is told.
type auditLine struct {
	at                   time.Time
	user                 User
	action, object, note string
	rows                 int64
	done                 chan error
}

// auditWriter is the one goroutine that writes audit lines, started on the
// first line and stopped by Close.
type auditWriter struct {
	mu      sync.RWMutex // held for reading to send, for writing to close
	queue   chan auditLine
	stopped chan struct{}
	closed  bool
	size    int // the queue's capacity (tests make it small)
}

// Audit records a download or a view of unmasked personal data; it returns
// once the line is committed.
func (c *Casebook) Audit(ctx context.Context, u User, action, object string, rows int64, detail string) error {
	l := auditLine{at: c.now(), user: u, action: action, object: object, note: detail, rows: rows, done: make(chan error, 1)}
	w := &c.audit
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return c.writeAudit(context.WithoutCancel(ctx), []auditLine{l})
	}
	if w.queue == nil {
		w.mu.RUnlock()
		w.start(c)
		return c.Audit(ctx, u, action, object, rows, detail)
	}
	w.queue <- l // waits for room when full: a line is never dropped
	w.mu.RUnlock()
	return <-l.done
}

func (w *auditWriter) start(c *Casebook) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queue != nil || w.closed {
		return
	}
	if w.size <= 0 {
		w.size = auditQueue
	}
	w.queue, w.stopped = make(chan auditLine, w.size), make(chan struct{})
	go w.run(c)
}

// run commits what is queued, in queue order, one transaction at a time:
// lines that arrive during a commit go together in the next.
func (w *auditWriter) run(c *Casebook) {
	defer close(w.stopped)
	for first := range w.queue {
		batch := []auditLine{first}
	more:
		for len(batch) < 10*auditChunk {
			select {
			case l, ok := <-w.queue:
				if !ok {
					break more
				}
				batch = append(batch, l)
			default:
				break more
			}
		}
		err := c.writeAudit(context.Background(), batch)
		for _, l := range batch {
			l.done <- err
		}
	}
}

// writeAudit inserts lines in one transaction, in their order.
func (c *Casebook) writeAudit(ctx context.Context, lines []auditLine) error {
	tx, err := c.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for len(lines) > 0 {
		chunk := lines[:min(auditChunk, len(lines))]
		lines = lines[len(chunk):]
		values := strings.TrimSuffix(strings.Repeat("(nextval('casebook.audit_ids'), ?, ?, ?, ?, ?, ?, ?, ?), ", len(chunk)), ", ")
		args := make([]any, 0, 8*len(chunk))
		for _, l := range chunk {
			args = append(args, domain.DBTime(l.at), l.user.ID, l.user.Name, string(l.user.Role), l.action, l.object, l.rows, nullString(l.note))
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO casebook.audit VALUES "+values, args...); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	return tx.Commit()
}

// Close commits the queued audit lines and stops the writer; lines audited
// afterwards are written one by one.
func (c *Casebook) Close() error {
	w := &c.audit
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	q, stopped := w.queue, w.stopped
	w.mu.Unlock()
	if q != nil {
		close(q)
		<-stopped
	}
	return nil
}

// auditView records that u saw rows of unmasked personal data, when u may
// see them at all (a reader who sees them masked saw nothing to audit).
// Every service that serves personal data decides here, so that the API
// and the pages are audited alike.
func (c *Casebook) auditView(ctx context.Context, u User, object string, rows int) error {
	if u.MasksPersonalData() || rows == 0 {
		return nil
	}
	return c.Audit(context.WithoutCancel(ctx), u, "view", object, int64(rows), "")
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID       int64     `json:"audit_id"`
	At       time.Time `json:"at"`
	UserID   int64     `json:"user_id"`
	UserName string    `json:"user_name"`
	Role     string    `json:"role"`
	Action   string    `json:"action"`
	Object   string    `json:"object"`
	Rows     int64     `json:"rows"`
	Detail   string    `json:"detail,omitempty"`
}

// AuditLog lists the audit log, newest first, before a cursor (0: newest).
func (c *Casebook) AuditLog(ctx context.Context, before int64, limit int) ([]AuditEntry, error) {
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := c.DB.QueryContext(ctx, `SELECT audit_id, event_at, coalesce(user_id, 0), user_name, role, action, object, rows, coalesce(detail, '')
		FROM casebook.audit WHERE audit_id < ? ORDER BY audit_id DESC LIMIT ?`, before, domain.PageLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var a AuditEntry
		if err := rows.Scan(&a.ID, &a.At, &a.UserID, &a.UserName, &a.Role, &a.Action, &a.Object, &a.Rows, &a.Detail); err != nil {
			return nil, err
		}
		a.At = domain.Wall(a.At)
		out = append(out, a)
	}
	return out, rows.Err()
}
