package casebook

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"collider/domain"
	"collider/regions"
)

// Role is what a user may do.
type Role string

const (
	RoleProvince Role = "province" // 省级专班
	RoleCity     Role = "city"     // 市州医保局, bound to one city
	RoleModeler  Role = "modeler"  // 建模人员: personal data masked
	RoleAdmin    Role = "admin"    // operator
)

// Roles lists every role.
var Roles = []Role{RoleProvince, RoleCity, RoleModeler, RoleAdmin}

// User is someone with a token.
type User struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Role      Role       `json:"role"`
	City      string     `json:"city_code,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// MasksPersonalData reports whether ID numbers and names are masked for this user.
func (u User) MasksPersonalData() bool { return u.Role == RoleModeler }

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", domain.Errorf(domain.EINVALID, "unknown role %q (roles: province, city, modeler, admin)", s)
}

// HashToken is how tokens are stored: never the token itself.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// AddUser creates a user and returns the token, which is shown once.
func (c *Casebook) AddUser(ctx context.Context, name string, role Role, city string) (User, string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return User{}, "", domain.Errorf(domain.EINVALID, "a user needs a name")
	}
	if _, err := ParseRole(string(role)); err != nil {
		return User{}, "", err
	}
	if role == RoleCity {
		if !regions.IsCode(city) || city[4:] != "00" || city[2:] == "0000" {
			return User{}, "", domain.Errorf(domain.EINVALID, "role city needs --city, a 6-digit city code like 620100 (got %q)", city)
		}
		if r, ok := shippedRegion(city); !ok || r.Level != "city" {
			return User{}, "", domain.Errorf(domain.EINVALID, "%s is not a city in the regions table (GB/T 2260)", city)
		}
	} else if city != "" {
		return User{}, "", domain.Errorf(domain.EINVALID, "only role city takes a city")
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return User{}, "", err
	}
	token := "col_" + hex.EncodeToString(buf)
	u := User{Name: name, Role: role, City: city, CreatedAt: c.now()}
	err := c.DB.QueryRowContext(ctx, `INSERT INTO casebook.users (user_id, name, role, city_code, token_hash, created_at)
		VALUES (nextval('casebook.user_ids'), ?, ?, ?, ?, ?) RETURNING user_id`,
		u.Name, string(u.Role), nullString(u.City), HashToken(token), domain.DBTime(u.CreatedAt)).Scan(&u.ID)
	if err != nil {
		return User{}, "", fmt.Errorf("add user: %w", err)
	}
	return u, token, nil
}

// Users lists every user, revoked ones included.
func (c *Casebook) Users(ctx context.Context, after int64, limit int) ([]User, error) {
	rows, err := c.DB.QueryContext(ctx, `SELECT user_id, name, role, coalesce(city_code, ''), created_at, revoked_at FROM casebook.users
		WHERE user_id > ? ORDER BY user_id LIMIT ?`, after, domain.PageLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		var u User
		var revoked sql.NullTime
		if err := rows.Scan(&u.ID, &u.Name, &u.Role, &u.City, &u.CreatedAt, &revoked); err != nil {
			return nil, err
		}
		if revoked.Valid {
			u.RevokedAt = domain.WallPtr(&revoked.Time)
		}
		u.CreatedAt = domain.Wall(u.CreatedAt)
		out = append(out, u)
	}
	return out, rows.Err()
}

// Revoke ends a user's token.
func (c *Casebook) Revoke(ctx context.Context, id int64) error {
	res, err := c.DB.ExecContext(ctx, "UPDATE casebook.users SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", domain.DBTime(c.now()), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return domain.Errorf(domain.ENOTFOUND, "no active user %d", id)
	}
	c.forgetTokens()
	return nil
}

// Revocations counts the revocations made through this casebook: a
// session that saw another count checks its user again (ActiveUser).
func (c *Casebook) Revocations() uint64 { return c.revocations.Load() }

// ActiveUser returns a user who has not been revoked.
func (c *Casebook) ActiveUser(ctx context.Context, id int64) (User, error) {
	var u User
	err := c.DB.QueryRowContext(ctx, `SELECT user_id, name, role, coalesce(city_code, ''), created_at
		FROM casebook.users WHERE user_id = ? AND revoked_at IS NULL`, id).Scan(&u.ID, &u.Name, &u.Role, &u.City, &u.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, domain.Errorf(domain.EUNAUTHORIZED, "user %d is revoked", id)
	}
	u.CreatedAt = domain.Wall(u.CreatedAt)
	return u, err
}

// Tokens that authenticated are remembered until a revocation through this
// casebook (the only way a user's token, role or city stops being what it
// was: users are never edited): every request authenticates, and a query
// per request would be the largest part of a small request's cost. A
// lookup that raced a revocation is not remembered.
type cachedUser struct {
	user User
}

// Authenticate finds the active user of a token.
func (c *Casebook) Authenticate(ctx context.Context, token string) (User, error) {
	if token == "" {
		return User{}, domain.Errorf(domain.EUNAUTHORIZED, "a bearer token is required")
	}
	hash := HashToken(token)
	c.authMu.Lock()
	if e, ok := c.authCache[hash]; ok {
		c.authMu.Unlock()
		return e.user, nil
	}
	c.authMu.Unlock()
	generation := c.revocations.Load()
	var u User
	err := c.DB.QueryRowContext(ctx, `SELECT user_id, name, role, coalesce(city_code, ''), created_at
		FROM casebook.users WHERE token_hash = ? AND revoked_at IS NULL`, hash).
		Scan(&u.ID, &u.Name, &u.Role, &u.City, &u.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, domain.Errorf(domain.EUNAUTHORIZED, "unknown or revoked token")
	}
	if err != nil {
		return User{}, err
	}
	u.CreatedAt = domain.Wall(u.CreatedAt)
	c.authMu.Lock()
	if c.revocations.Load() == generation {
		if c.authCache == nil || len(c.authCache) > 10_000 {
			c.authCache = map[string]cachedUser{}
		}
		c.authCache[hash] = cachedUser{u}
	}
	c.authMu.Unlock()
	return u, nil
}

// forgetTokens drops remembered token lookups (after a revocation).
func (c *Casebook) forgetTokens() {
	c.authMu.Lock()
	c.authCache = nil
	c.revocations.Add(1)
	c.authMu.Unlock()
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
