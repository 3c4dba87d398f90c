// This file signs people in to the pages: a token typed once into the
// sign-in form becomes a session cookie (HttpOnly, SameSite=Strict, Secure
// over TLS), held in memory for 8 hours of idleness; a revoked user's
// sessions end at once; every POST carries a CSRF token bound to the
// session. The token itself never appears in a URL or a page.
package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"collider/casebook"
)

const (
	sessionCookie = "collider_session"
	loginCookie   = "collider_login" // the sign-in form's CSRF token, before there is a session
	sessionIdle   = 8 * time.Hour
	sessionKey    = "collider.session"
)

// session is one signed-in browser.
type session struct {
	id          string
	user        casebook.User
	csrf        string
	seen        time.Time
	revocations uint64 // the casebook's count when the user was last checked
}

// sessions are the signed-in browsers, in memory: a restart signs
// everyone out, which costs a token typed again, and keeps no secret on disk.
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	now  func() time.Time
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) clock() time.Time {
	if ss.now != nil {
		return ss.now()
	}
	return time.Now()
}

func (ss *sessions) create(u casebook.User, revocations uint64) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.byID == nil {
		ss.byID = map[string]*session{}
	}
	s := &session{id: randomToken(), user: u, csrf: randomToken(), seen: ss.clock(), revocations: revocations}
	ss.byID[s.id] = s
	return s
}

// get returns the live session of an id, touching it; an idle one ends.
func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.byID[id]
	if !ok {
		return nil
	}
	now := ss.clock()
	if now.Sub(s.seen) > sessionIdle {
		delete(ss.byID, id)
		return nil
	}
	s.seen = now
	c := *s
	return &c
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, id)
}

// checked records that a session's user was checked against revocations.
func (ss *sessions) checked(id string, revocations uint64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.byID[id]; ok {
		s.revocations = revocations
	}
}

func secure(c echo.Context) bool { return c.Request().TLS != nil }

func (s *Server) setSessionCookie(c echo.Context, id string, maxAge int) {
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: secure(c),
		SameSite: http.SameSiteStrictMode, MaxAge: maxAge})
}

// pageSession finds the request's session; with none, a page answers a
// redirect to the sign-in form. A user revoked since the last check has no
// session any more.
func (s *Server) pageSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ck, err := c.Cookie(sessionCookie)
		var sess *session
		if err == nil {
			sess = s.sessions.get(ck.Value)
		}
		if sess != nil {
			if rev := s.Casebook.Revocations(); rev != sess.revocations {
				u, err := s.Casebook.ActiveUser(c.Request().Context(), sess.user.ID)
				if err != nil {
					s.sessions.end(sess.id)
					sess = nil
				} else {
					sess.user = u
					s.sessions.checked(sess.id, rev)
				}
			}
		}
		if sess == nil {
			if ck != nil {
				s.setSessionCookie(c, "", -1)
			}
			return c.Redirect(http.StatusSeeOther, "/login")
		}
		c.Set(userKey, sess.user)
		c.Set(sessionKey, sess)
		return next(c)
	}
}

func currentSession(c echo.Context) *session {
	s, _ := c.Get(sessionKey).(*session)
	return s
}

// csrfChecked refuses a POST whose form does not carry the session's CSRF
// token (403, nothing changed).
func csrfChecked(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().Method == http.MethodPost {
			sess := currentSession(c)
			if sess == nil || subtle.ConstantTimeCompare([]byte(c.FormValue("csrf")), []byte(sess.csrf)) != 1 {
				return &pageError{Status: http.StatusForbidden, Title: "请求无效", Message: "表单已过期或来源不明（缺少有效的防伪标记），未做任何更改。请返回重试。"}
			}
		}
		return next(c)
	}
}

// loginForm is the sign-in page's data.
type loginForm struct {
	Error string
	CSRF  string
}

func (s *Server) loginPage(c echo.Context) error {
	csrf := randomToken()
	if ck, err := c.Cookie(loginCookie); err == nil && ck.Value != "" {
		csrf = ck.Value
	}
	c.SetCookie(&http.Cookie{Name: loginCookie, Value: csrf, Path: "/login", HttpOnly: true, Secure: secure(c), SameSite: http.SameSiteStrictMode})
	return s.render(c, http.StatusOK, "login", "登录", loginForm{CSRF: csrf})
}

func (s *Server) login(c echo.Context) error {
	ck, err := c.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(c.FormValue("csrf")), []byte(ck.Value)) != 1 {
		return &pageError{Status: http.StatusForbidden, Title: "请求无效", Message: "登录表单已过期或来源不明，请重新打开登录页。"}
	}
	token := c.FormValue("token")
	u, err := s.Casebook.Authenticate(c.Request().Context(), token)
	if err != nil {
		msg := "令牌无效或已被注销。"
		if token == "" {
			msg = "请输入令牌。"
		}
		return s.render(c, http.StatusUnauthorized, "login", "登录", loginForm{Error: msg, CSRF: ck.Value})
	}
	sess := s.sessions.create(u, s.Casebook.Revocations())
	s.setSessionCookie(c, sess.id, 0)
	c.SetCookie(&http.Cookie{Name: loginCookie, Value: "", Path: "/login", MaxAge: -1})
	return c.Redirect(http.StatusSeeOther, homeOf(u.Role))
}

func (s *Server) logout(c echo.Context) error {
	if sess := currentSession(c); sess != nil {
		s.sessions.end(sess.id)
	}
	s.setSessionCookie(c, "", -1)
	return c.Redirect(http.StatusSeeOther, "/login")
}

// homeOf is each role's first page.
func homeOf(r casebook.Role) string {
	switch r {
	case casebook.RoleCity:
		return "/leads"
	case casebook.RoleProvince:
		return "/board"
	case casebook.RoleModeler:
		return "/models"
	case casebook.RoleAdmin:
		return "/users"
	}
	return "/login"
}
