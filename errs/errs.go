// Package errs is the error vocabulary of the whole module: the stable codes every API shows (the
// services' internal HTTP APIs in their {"error": {...}} body, the GraphQL API in
// extensions.code), and Error, the one error type that carries a code and a message safe to
// show. Each edge maps it once: package httpapi to an HTTP status, package graph to a GraphQL
// error. An error without a code is never shown: it is INTERNAL (or UNAVAILABLE, see CodeOf).
package errs

import (
	"errors"
	"fmt"

	"github.com/1588-pizza/pizza/db"
)

// Code is a stable error code, the same the GraphQL API shows in extensions.code.
type Code string

// The codes.
const (
	BadUserInput    Code = "BAD_USER_INPUT"
	Unauthenticated Code = "UNAUTHENTICATED"
	Forbidden       Code = "FORBIDDEN"
	NotFound        Code = "NOT_FOUND"
	Conflict        Code = "CONFLICT"
	Unavailable     Code = "UNAVAILABLE"
	Internal        Code = "INTERNAL"
)

// Error is an error that is safe to show: a code, a message, and for bad input the field.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf builds an Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid is a BAD_USER_INPUT error about one field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: BadUserInput, Field: field, Message: fmt.Sprintf(format, args...)}
}

// CodeOf is err's code: an *Error's own, UNAVAILABLE for a database that could not be reached
// or lost a conflict (db.Transient: retrying shortly may succeed), INTERNAL for anything else.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if db.Transient(err) {
		return Unavailable
	}
	return Internal
}
