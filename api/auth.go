package api

import (
	"strings"

	"github.com/labstack/echo/v4"

	"collider/casebook"
	"collider/domain"
)

const userKey = "collider.user"

// authenticate resolves the bearer token to a user; every /api/v1 route but
// the OpenAPI document goes through it.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return domain.Errorf(domain.EUNAUTHORIZED, "send Authorization: Bearer <token>")
		}
		u, err := s.Casebook.Authenticate(c.Request().Context(), strings.TrimSpace(token))
		if err != nil {
			return err
		}
		c.Set(userKey, u)
		return next(c)
	}
}

// allow restricts a route to roles; the city scope itself is enforced by the
// casebook on every query.
func allow(roles ...casebook.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			u := user(c)
			for _, r := range roles {
				if u.Role == r {
					return next(c)
				}
			}
			return domain.Errorf(domain.EFORBIDDEN, "role %s may not %s %s", u.Role, c.Request().Method, c.Path())
		}
	}
}

func user(c echo.Context) casebook.User {
	u, _ := c.Get(userKey).(casebook.User)
	return u
}
