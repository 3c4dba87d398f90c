package casebook

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"time"

	"collider/domain"
	"collider/personid"
)

// Suppression (白名单/暂缓) keeps a person, an institution or a (model,
// person) pair out of new clues while it holds; the models' runner honours
// it. It is never deleted: it expires or is revoked, and stays listed.
type Suppression struct {
	ID            int64      `json:"id"`
	Kind          string     `json:"kind"` // person | institution | model_person
	Model         string     `json:"model,omitempty"`
	PersonID      string     `json:"person_id,omitempty"`
	InstitutionID string     `json:"institution_id,omitempty"`
	Reason        string     `json:"reason"`
	CreatedBy     string     `json:"created_by"`
	CreatedAt     time.Time  `json:"created_at"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
	RevokedBy     string     `json:"revoked_by,omitempty"`
	Active        bool       `json:"active"`
}

func canSuppress(u User) error {
	if u.Role != RoleProvince && u.Role != RoleModeler {
		return domain.Errorf(domain.EFORBIDDEN, "only the province and modelers manage suppressions")
	}
	return nil
}

// Suppress adds a suppression and audits it.
func (c *Casebook) Suppress(ctx context.Context, u User, s Suppression) (Suppression, error) {
	if err := canSuppress(u); err != nil {
		return Suppression{}, err
	}
	s.Reason = strings.TrimSpace(s.Reason)
	if s.Reason == "" {
		return Suppression{}, domain.Errorf(domain.EINVALID, "a suppression needs a reason")
	}
	if s.PersonID != "" {
		id, err := personid.Normalize(s.PersonID)
		if err != nil {
			return Suppression{}, domain.Errorf(domain.EINVALID, "person_id %q is not a valid ID number", s.PersonID)
		}
		s.PersonID = id
	}
	switch s.Kind {
	case "person":
		if s.PersonID == "" || s.InstitutionID != "" || s.Model != "" {
			return Suppression{}, domain.Errorf(domain.EINVALID, "kind person takes person_id only")
		}
	case "institution":
		if s.InstitutionID == "" || s.PersonID != "" || s.Model != "" {
			return Suppression{}, domain.Errorf(domain.EINVALID, "kind institution takes institution_id only")
		}
	case "model_person":
		if s.Model == "" || s.PersonID == "" || s.InstitutionID != "" {
			return Suppression{}, domain.Errorf(domain.EINVALID, "kind model_person takes model and person_id")
		}
	default:
		return Suppression{}, domain.Errorf(domain.EINVALID, "kind is person, institution or model_person")
	}
	now := c.now()
	var expires any
	if s.ExpiresAt != nil {
		if !s.ExpiresAt.After(now) {
			return Suppression{}, domain.Errorf(domain.EINVALID, "expires_at is in the past")
		}
		if s.ExpiresAt.In(domain.ChinaTime).Year() > 9999 {
			return Suppression{}, domain.Errorf(domain.EINVALID, "expires_at is too far ahead; omit it for a suppression until revoked")
		}
		expires = domain.DBTime(*s.ExpiresAt)
	}
	err := c.DB.QueryRowContext(ctx, `INSERT INTO casebook.suppressions (id, kind, model, person_id, institution_id, reason, created_by, created_at, expires_at)
		VALUES (nextval('casebook.suppression_ids'), ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		s.Kind, nullString(s.Model), nullString(s.PersonID), nullString(s.InstitutionID), s.Reason, u.Name, domain.DBTime(now), expires).Scan(&s.ID)
	if err != nil {
		return Suppression{}, err
	}
	if err := c.Audit(ctx, u, "suppress", "suppression "+itoa(s.ID), 1, s.Reason); err != nil {
		return Suppression{}, err
	}
	return c.suppression(ctx, u, s.ID)
}

// RevokeSuppression ends a suppression and audits it.
func (c *Casebook) RevokeSuppression(ctx context.Context, u User, id int64) (Suppression, error) {
	if err := canSuppress(u); err != nil {
		return Suppression{}, err
	}
	res, err := c.DB.ExecContext(ctx, "UPDATE casebook.suppressions SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL", domain.DBTime(c.now()), u.Name, id)
	if err != nil {
		return Suppression{}, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Suppression{}, domain.Errorf(domain.ENOTFOUND, "no active suppression %d", id)
	}
	if err := c.Audit(ctx, u, "unsuppress", "suppression "+itoa(id), 1, ""); err != nil {
		return Suppression{}, err
	}
	return c.suppression(ctx, u, id)
}

const suppressionColumns = `id, kind, coalesce(model, ''), coalesce(person_id, ''), coalesce(institution_id, ''), reason, created_by,
	created_at, expires_at, revoked_at, coalesce(revoked_by, ''),
	revoked_at IS NULL AND (expires_at IS NULL OR expires_at > CAST(? AS TIMESTAMP))`

func scanSuppression(s interface{ Scan(...any) error }, u User) (Suppression, error) {
	var x Suppression
	var exp, rev sql.NullTime
	if err := s.Scan(&x.ID, &x.Kind, &x.Model, &x.PersonID, &x.InstitutionID, &x.Reason, &x.CreatedBy, &x.CreatedAt, &exp, &rev, &x.RevokedBy, &x.Active); err != nil {
		return x, err
	}
	if exp.Valid {
		x.ExpiresAt = domain.WallPtr(&exp.Time)
	}
	if rev.Valid {
		x.RevokedAt = domain.WallPtr(&rev.Time)
	}
	x.CreatedAt = domain.Wall(x.CreatedAt)
	if u.MasksPersonalData() && x.PersonID != "" {
		x.PersonID = personid.Mask(x.PersonID)
	}
	return x, nil
}

func (c *Casebook) suppression(ctx context.Context, u User, id int64) (Suppression, error) {
	return scanSuppression(c.DB.QueryRowContext(ctx, "SELECT "+suppressionColumns+" FROM casebook.suppressions WHERE id = ?", domain.DBTime(c.now()), id), u)
}

// Suppressions lists every suppression, active or not, newest first.
func (c *Casebook) Suppressions(ctx context.Context, u User, before int64, limit int) ([]Suppression, error) {
	if err := canSuppress(u); err != nil {
		return nil, err
	}
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := c.DB.QueryContext(ctx, "SELECT "+suppressionColumns+" FROM casebook.suppressions WHERE id < ? ORDER BY id DESC LIMIT ?",
		domain.DBTime(c.now()), before, domain.PageLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Suppression{}
	persons := 0
	for rows.Next() {
		s, err := scanSuppression(rows, u)
		if err != nil {
			return nil, err
		}
		if s.PersonID != "" {
			persons++
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, c.auditView(ctx, u, "suppressions", persons)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
