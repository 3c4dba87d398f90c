// Package casebook is the system of record (案卷): published batches and
// their clues, the leads routed to the cities and every event on them, the
// users who act, and the audit log of what they saw and downloaded.
package casebook

import (
	"errors"
	"fmt"
)

// Code is an application error code; the API maps each to an HTTP status in one place.
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

// Error is an error with a code and a message fit for the user.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf makes an *Error.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
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
