package casebook

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"collider/domain"
)

// BackupRecord is one backup taken of the store, as the casebook keeps it.
type BackupRecord struct {
	ID         int64           `json:"backup_id"`
	Trigger    string          `json:"trigger"` // schedule | api | cli
	StartedBy  string          `json:"started_by,omitempty"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt time.Time       `json:"finished_at"`
	Status     string          `json:"status"` // succeeded | failed
	File       string          `json:"file,omitempty"`
	Bytes      int64           `json:"bytes"`
	SHA256     string          `json:"sha256,omitempty"`
	Manifest   json.RawMessage `json:"manifest,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// RecordBackup keeps a backup in the history and returns its id.
func (c *Casebook) RecordBackup(ctx context.Context, b BackupRecord) (int64, error) {
	var manifest any
	if len(b.Manifest) > 0 {
		manifest = string(b.Manifest)
	}
	var id int64
	err := c.DB.QueryRowContext(ctx, `INSERT INTO casebook.backups VALUES (nextval('casebook.backup_ids'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		RETURNING backup_id`, b.Trigger, nullString(b.StartedBy), domain.DBTime(b.StartedAt), domain.DBTime(b.FinishedAt), b.Status,
		nullString(b.File), b.Bytes, nullString(b.SHA256), manifest, nullString(b.Error)).Scan(&id)
	return id, err
}

// Backups lists the backup history, newest first, before a cursor (0: newest).
func (c *Casebook) Backups(ctx context.Context, before int64, limit int) ([]BackupRecord, error) {
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := c.DB.QueryContext(ctx, `SELECT backup_id, trigger, coalesce(started_by, ''), started_at, finished_at, status,
		coalesce(file, ''), bytes, coalesce(sha256, ''), manifest, coalesce(error, '')
		FROM casebook.backups WHERE backup_id < ? ORDER BY backup_id DESC LIMIT ?`, before, domain.PageLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []BackupRecord{}
	for rows.Next() {
		var b BackupRecord
		var manifest sql.NullString
		if err := rows.Scan(&b.ID, &b.Trigger, &b.StartedBy, &b.StartedAt, &b.FinishedAt, &b.Status, &b.File, &b.Bytes, &b.SHA256, &manifest, &b.Error); err != nil {
			return nil, err
		}
		if manifest.Valid {
			b.Manifest = json.RawMessage(manifest.String)
		}
		b.StartedAt, b.FinishedAt = domain.Wall(b.StartedAt), domain.Wall(b.FinishedAt)
		out = append(out, b)
	}
	return out, rows.Err()
}
