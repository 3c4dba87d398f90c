// The operator's page: users and their tokens (a new token shown once).
package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"collider/casebook"
	"collider/domain"
)

type usersView struct {
	formState
	List              listPage[casebook.User]
	Roles             []string
	Cities            []option
	NewToken, NewUser string
}

func (v usersView) Value(field string) string { return v.Values[field] }
func (v usersView) Error(field string) string { return v.Errors[field] }

func (s *Server) usersPage(c echo.Context) error { return s.showUsers(c, http.StatusOK, usersView{}) }

func (s *Server) showUsers(c echo.Context, status int, v usersView) error {
	var err error
	if v.List, err = s.userList(c).read(c, "/users/export"); err != nil {
		return err
	}
	v.Roles, v.Cities = []string{"city", "province", "modeler", "admin"}, cityOptions()
	return s.render(c, status, "users", "用户与令牌", v)
}

// addUserPage adds a user and shows the token once: on this answer, never
// in a URL and never again.
func (s *Server) addUserPage(c echo.Context) error {
	v := usersView{formState: formState{Values: map[string]string{}, Errors: map[string]string{}}}
	for _, k := range []string{"name", "role", "city_code"} {
		v.Values[k] = strings.TrimSpace(c.FormValue(k))
	}
	role, err := casebook.ParseRole(v.Values["role"])
	if err != nil {
		v.Errors["role"] = "请选择角色。"
	}
	if v.Values["name"] == "" {
		v.Errors["name"] = "请填写姓名或单位。"
	}
	city := v.Values["city_code"]
	if role == casebook.RoleCity && city == "" {
		v.Errors["city_code"] = "市州医保局须选择所属市州。"
	}
	if role != casebook.RoleCity {
		city = ""
	}
	if len(v.Errors) == 0 {
		u, token, err := s.Casebook.AddUser(c.Request().Context(), v.Values["name"], role, city)
		if err == nil {
			c.Response().Header().Set("Cache-Control", "no-store")
			return s.showUsers(c, http.StatusOK, usersView{NewToken: token, NewUser: u.Name})
		}
		if domain.ErrorCode(err) != domain.EINVALID {
			return err
		}
		v.Errors[""] = domain.ErrorMessage(err)
	}
	return s.showUsers(c, http.StatusBadRequest, v)
}

func (s *Server) revokeUserPage(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	if err := s.Casebook.Revoke(c.Request().Context(), id); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/users")
}
