package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	cb "collider/casebook"
	"collider/jobs"
)

// adminRoutes are the operator's: the integrity check and backups.
func (s *Server) adminRoutes(v1 *echo.Group) {
	v1.GET("/check", s.check, allow(cb.RoleAdmin))
	v1.GET("/backups", s.listBackups, allow(cb.RoleAdmin))
	v1.POST("/backups", s.createBackup, allow(cb.RoleAdmin))
}

// check verifies the store's invariants; a broken one is reported in the
// body (ok: false), not as an error: the check itself worked.
func (s *Server) check(c echo.Context) error {
	r, err := jobs.Check(c.Request().Context(), s.Store.DB)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) listBackups(c echo.Context) error {
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	items, err := s.Casebook.Backups(c.Request().Context(), cursor, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(items, limit, func(b cb.BackupRecord) int64 { return b.ID }))
}

// createBackup takes a consistent copy of the store, even while a run is
// busy, and streams it as the backup file. The copy is made before the
// first byte goes out, so that a full disk or another backup in progress
// is an error status (507, 409), not a cut download. The download is
// audited and kept in the backup history.
func (s *Server) createBackup(c echo.Context) error {
	ctx := c.Request().Context()
	u := user(c)
	start := time.Now()
	rec := cb.BackupRecord{Trigger: "api", StartedBy: u.Name, StartedAt: start, Status: "failed"}
	record := func(err error) {
		rec.FinishedAt = time.Now()
		if err != nil {
			rec.Error = err.Error()
		}
		if _, rerr := s.Casebook.RecordBackup(context.WithoutCancel(ctx), rec); rerr != nil {
			s.Log.Error("backup history", "err", rerr)
		}
	}
	snap, err := s.Store.Snapshot(ctx)
	if err != nil {
		record(err)
		return err
	}
	defer snap.Close()
	name := jobs.BackupName(start)
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "application/x-tar")
	h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s"`, name))
	c.Response().WriteHeader(http.StatusOK)
	sum := sha256.New()
	n, err := snap.WriteTo(io.MultiWriter(c.Response(), sum))
	rec.Bytes = n
	detail := fmt.Sprintf("%s, %d bytes", name, n)
	if err == nil {
		rec.Status, rec.SHA256 = "succeeded", hex.EncodeToString(sum.Sum(nil))
		rec.Manifest, _ = json.Marshal(snap.Manifest)
		detail += ", sha256 " + rec.SHA256
	} else {
		s.Log.Warn("backup download interrupted", "err", err)
		detail += ", interrupted: " + err.Error()
	}
	record(err)
	// Every person's data left in it: audited like any download, even cut off.
	var rows int64
	for _, n := range snap.Manifest.Rows {
		rows += n
	}
	if err := s.Casebook.Audit(context.WithoutCancel(ctx), u, "download", "backup", rows, detail); err != nil {
		s.Log.Error("audit of a backup download failed", "err", err)
	}
	return nil
}
