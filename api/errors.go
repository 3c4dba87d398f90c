package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"collider/domain"
	"collider/store"
)

// errorBody is the one error shape: {"error": {"code": "...", "message": "..."}}.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

var statusOf = map[domain.Code]int{
	domain.EINVALID:      http.StatusBadRequest,
	domain.EUNAUTHORIZED: http.StatusUnauthorized,
	domain.EFORBIDDEN:    http.StatusForbidden,
	domain.ENOTFOUND:     http.StatusNotFound,
	domain.ECONFLICT:     http.StatusConflict,
	domain.EINTERNAL:     http.StatusInternalServerError,
	domain.EFULL:         http.StatusInsufficientStorage,
}

// handleError maps every error to a status and the JSON error shape, in one place.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if isPage(c.Request().URL.Path) {
		if errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil {
			return
		}
		s.pageErrorPage(c, err)
		return
	}
	code, status, msg := domain.EINTERNAL, http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		status = he.Code
		msg = http.StatusText(status)
		if m, ok := he.Message.(string); ok {
			msg = m
		}
		code = codeOfStatus(status)
	case store.DiskFull(err, s.Store.Options().TempDir) != nil:
		// The operation failed whole; the message says where the room ran out.
		code, status, msg = domain.EFULL, http.StatusInsufficientStorage, store.DiskFull(err, s.Store.Options().TempDir).Error()
	case errors.Is(err, store.ErrBackupRunning):
		code, status, msg = domain.ECONFLICT, http.StatusConflict, err.Error()
	case errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil:
		// The client went away: nothing to answer, and not a server error.
		return
	default:
		code = domain.ErrorCode(err)
		status = statusOf[code]
		msg = domain.ErrorMessage(err)
	}
	if status >= 500 {
		s.Log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = string(code), msg
	if c.Request().Method == http.MethodHead {
		c.NoContent(status)
		return
	}
	c.JSON(status, body)
}

func codeOfStatus(status int) domain.Code {
	for code, st := range statusOf {
		if st == status {
			return code
		}
	}
	switch {
	case status == http.StatusMethodNotAllowed, status == http.StatusRequestEntityTooLarge, status == http.StatusUnsupportedMediaType:
		return domain.EINVALID
	case status >= 500:
		return domain.EINTERNAL
	}
	return domain.EINVALID
}
