// This file is the audit log (审计日志): every download and every view of
// unmasked personal data, written by one writer that commits lines
// together (group commit): a small write costs DuckDB milliseconds of CPU
// and a commit, which a hundred readers a second cannot each afford.
//
// What an answer guarantees: a download's line, and any other line written
// by Audit, is committed before Audit returns (a disk that cannot take it
// fails the request). A view's line (auditView) is queued and committed
// within auditWindow (100 ms) of the answer; a killed process can lose the
// views of that window, never a download's line. A batch that fails (a full
// disk) keeps its view lines and tries again. Every lead action commits the
// lines queued before it (flushAudit), so an acknowledged action means
// every view before it is in the log.
package casebook

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"collider/domain"
)

const (
	// auditQueue is how many lines may wait for the writer; a request that
	// finds it full waits for room (lines are never dropped).
	auditQueue = 4096
	// auditChunk is a tenth of the most lines one commit carries.
	auditChunk = 100
	// auditWindow is the longest a view's line waits to be committed.
	auditWindow = 100 * time.Millisecond
)

// auditLine is one line on its way to the log; done (if any) hears its
// commit. A barrier line carries no row: it only asks for a commit.
type auditLine struct {
	at                   time.Time
	user                 User
	action, object, note string
	rows                 int64
	done                 chan error
	barrier              bool
}

// auditWriter is the one goroutine that writes audit lines, started on the
// first line and stopped by Close.
type auditWriter struct {
	mu      sync.RWMutex // held for reading to send, for writing to close
	queue   chan auditLine
	stopped chan struct{}
	closed  bool
	size    int       // the queue's capacity (tests make it small)
	conn    *sql.Conn // the writer's own connection: it never waits for the pool, which requests may hold
}

// Audit records a download or a change; it returns once the line is committed.
func (c *Casebook) Audit(ctx context.Context, u User, action, object string, rows int64, detail string) error {
	l := auditLine{at: c.now(), user: u, action: action, object: object, note: detail, rows: rows, done: make(chan error, 1)}
	return c.sendAudit(ctx, l)
}

// flushAudit commits every line queued so far.
func (c *Casebook) flushAudit(ctx context.Context) error {
	return c.sendAudit(ctx, auditLine{barrier: true, done: make(chan error, 1)})
}

// sendAudit queues a line (waiting for room when the queue is full) and,
// if it has done, waits for its commit. After Close lines are written at once.
func (c *Casebook) sendAudit(ctx context.Context, l auditLine) error {
	w := &c.audit
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		if l.barrier {
			return nil
		}
		return c.writeAuditAlone(context.WithoutCancel(ctx), l)
	}
	if w.queue == nil {
		w.mu.RUnlock()
		w.start(c)
		return c.sendAudit(ctx, l)
	}
	w.queue <- l
	w.mu.RUnlock()
	if l.done == nil {
		return nil
	}
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

// run commits the queued lines in queue order: at once when a caller waits
// for one, else within auditWindow of the oldest.
func (w *auditWriter) run(c *Casebook) {
	defer close(w.stopped)
	var batch []auditLine
	var deadline <-chan time.Time
	for {
		urgent := false
		select {
		case l, ok := <-w.queue:
			if !ok {
				for try := 0; len(batch) > 0 && try < 5; try++ {
					if batch = c.commitAudit(batch); len(batch) > 0 {
						time.Sleep(auditWindow)
					}
				}
				return
			}
			batch, urgent = append(batch, l), l.done != nil
		case <-deadline:
			urgent = true
		}
		if deadline == nil {
			deadline = time.After(auditWindow)
		}
		if !urgent && len(batch) < 10*auditChunk {
			continue
		}
	drain:
		for len(batch) < 10*auditChunk {
			select {
			case l, ok := <-w.queue:
				if !ok {
					break drain
				}
				batch = append(batch, l)
			default:
				break drain
			}
		}
		batch, deadline = c.commitAudit(batch), nil
		if len(batch) > 0 {
			deadline = time.After(auditWindow)
		}
	}
}

// commitAudit writes a batch's lines in one transaction and tells those who
// wait; on a failure it returns the view lines, to be tried again.
func (c *Casebook) commitAudit(batch []auditLine) []auditLine {
	rows := make([]auditLine, 0, len(batch))
	for _, l := range batch {
		if !l.barrier {
			rows = append(rows, l)
		}
	}
	var err error
	if len(rows) > 0 {
		ctx := context.Background()
		if c.audit.conn == nil {
			c.audit.conn, err = c.DB.Conn(ctx)
		}
		if err == nil {
			if err = c.writeAudit(ctx, c.audit.conn, rows); err != nil {
				c.audit.conn.Close() // a broken connection is not kept
				c.audit.conn = nil
			}
		}
	}
	var retry []auditLine
	for _, l := range batch {
		if l.done != nil {
			l.done <- err
		} else if err != nil {
			retry = append(retry, l)
		}
	}
	return retry
}

// writeAudit writes lines in their order, committed together: their ids
// are taken from the log's sequence in one query, and the rows go in
// through DuckDB's appender (an INSERT's parsing and binding cost more
// than the rows themselves), which commits them in one transaction.
func (c *Casebook) writeAudit(ctx context.Context, conn *sql.Conn, lines []auditLine) error {
	rows, err := conn.QueryContext(ctx, "SELECT nextval('casebook.audit_ids') AS id FROM range(?) ORDER BY id", len(lines))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	ids := make([]int64, 0, len(lines))
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("audit: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return conn.Raw(func(dc any) error {
		a, err := duckdb.NewAppender(dc.(driver.Conn), "casebook", "main", "audit")
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		for i, l := range lines {
			var note driver.Value
			if l.note != "" {
				note = l.note
			}
			if err := a.AppendRow(ids[i], domain.AppenderTime(l.at), l.user.ID, l.user.Name, string(l.user.Role), l.action, l.object, l.rows, note); err != nil {
				a.Clear()
				a.Close()
				return fmt.Errorf("audit: %w", err)
			}
		}
		if err := a.Close(); err != nil { // Close flushes: one commit
			a.Clear()
			return fmt.Errorf("audit: %w", err)
		}
		return nil
	})
}

// writeAuditAlone writes one line on a connection of its own.
func (c *Casebook) writeAuditAlone(ctx context.Context, l auditLine) error {
	conn, err := c.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return c.writeAudit(ctx, conn, []auditLine{l})
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
		if w.conn != nil {
			w.conn.Close()
		}
	}
	return nil
}

// auditView records that u saw rows of unmasked personal data, when u may
// see them at all (a reader who sees them masked saw nothing to audit),
// within auditWindow.
// Every service that serves personal data decides here, so that the API
// and the pages are audited alike.
func (c *Casebook) auditView(ctx context.Context, u User, object string, rows int) error {
	if u.MasksPersonalData() || rows == 0 {
		return nil
	}
	return c.sendAudit(ctx, auditLine{at: c.now(), user: u, action: "view", object: object, rows: int64(rows)})
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
	// The log shows every view answered before it was asked for.
	if err := c.flushAudit(ctx); err != nil {
		return nil, err
	}
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
