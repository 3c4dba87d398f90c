package domain

import (
	"errors"
	"fmt"
)

// Code is an application error code; the API maps each to an HTTP status.
type Code string

const (
	EINVALID      Code = "invalid"      // bad input: 400
	EUNAUTHORIZED Code = "unauthorized" // no or bad token: 401
	EFORBIDDEN    Code = "forbidden"    // not allowed for this role or city: 403
	ENOTFOUND     Code = "not_found"    // 404 (also for another city's objects: no hint they exist)
	ECONFLICT     Code = "conflict"     // a transition that is not allowed, a run already running: 409
	EINTERNAL     Code = "internal"     // 500
	EFULL         Code = "disk_full"    // the disk is full: 507; nothing was written
)

// Error is an error with a code and a message fit for the user. It keeps
// the error it was made from (Errorf with %w), so that errors.Is and
// errors.As still reach the cause.
type Error struct {
	Code    Code
	Message string
	err     error
}

func (e *Error) Error() string { return e.Message }

// Unwrap is the error this one was made from, if any.
func (e *Error) Unwrap() error { return e.err }

// Errorf makes an *Error; a %w verb wraps its argument, as fmt.Errorf does.
func Errorf(code Code, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: err.Error(), err: errors.Unwrap(err)}
}

// ErrorCode returns the code of an error, EINTERNAL for an unknown one.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message; internal errors stay generic.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
