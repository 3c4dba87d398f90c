package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"collider/casebook"
	"collider/jobs"
	"collider/store"
)

// errorBody is the one error shape: {"error": {"code": "...", "message": "..."}}.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

var statusOf = map[casebook.Code]int{
	casebook.EINVALID:      http.StatusBadRequest,
	casebook.EUNAUTHORIZED: http.StatusUnauthorized,
	casebook.EFORBIDDEN:    http.StatusForbidden,
	casebook.ENOTFOUND:     http.StatusNotFound,
	casebook.ECONFLICT:     http.StatusConflict,
	casebook.EINTERNAL:     http.StatusInternalServerError,
	casebook.EFULL:         http.StatusInsufficientStorage,
}

// handleError maps every error to a status and the JSON error shape, in one place.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, status, msg := casebook.EINTERNAL, http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		status = he.Code
		msg = http.StatusText(status)
		if m, ok := he.Message.(string); ok {
			msg = m
		}
		code = codeOfStatus(status)
	case errors.Is(err, jobs.ErrNoDelivery):
		code, status, msg = casebook.ENOTFOUND, http.StatusNotFound, err.Error()
	case store.DiskFull(err, s.Store.Options().TempDir) != nil:
		// The operation failed whole; the message says where the room ran out.
		code, status, msg = casebook.EFULL, http.StatusInsufficientStorage, store.DiskFull(err, s.Store.Options().TempDir).Error()
	case errors.Is(err, store.ErrBackupRunning):
		code, status, msg = casebook.ECONFLICT, http.StatusConflict, err.Error()
	case errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil:
		// The client went away: nothing to answer, and not a server error.
		return
	default:
		code = casebook.ErrorCode(err)
		status = statusOf[code]
		msg = casebook.ErrorMessage(err)
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

func codeOfStatus(status int) casebook.Code {
	for code, st := range statusOf {
		if st == status {
			return code
		}
	}
	switch {
	case status == http.StatusMethodNotAllowed, status == http.StatusRequestEntityTooLarge, status == http.StatusUnsupportedMediaType:
		return casebook.EINVALID
	case status >= 500:
		return casebook.EINTERNAL
	}
	return casebook.EINVALID
}
