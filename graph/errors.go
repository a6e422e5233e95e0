package graph

import (
	"context"
	"errors"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/1588-pizza/pizza/services/api"
)

// The codes in extensions.code, as docs/api.md lists them.
const (
	codeUnauthenticated = "UNAUTHENTICATED"
	codeForbidden       = "FORBIDDEN"
	codeBadUserInput    = string(api.BadUserInput)
	codeInternal        = string(api.Internal)
	codeUnavailable     = string(api.Unavailable)
)

// codedError is an error the BFF itself raises with a contract code.
type codedError struct {
	code, message string
}

func (e *codedError) Error() string { return e.message }

var (
	errNoToken   = &codedError{codeUnauthenticated, reasonNoToken}
	errExpired   = &codedError{codeUnauthenticated, reasonExpired}
	errForbidden = &codedError{codeForbidden, "not allowed for this token"}
)

// presentError turns any error into a GraphQL error with extensions.code from the contract.
// Errors the services answered with keep their code and safe message; gqlgen's own parse and
// validation errors become BAD_USER_INPUT; anything else is INTERNAL, logged, never shown.
func presentError(logger *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		var gqlErr *gqlerror.Error
		if errors.As(err, &gqlErr) && gqlErr.Err == nil {
			// Raised by gqlgen (parse, validation, limits, unknown operation): the client's fault.
			if gqlErr.Extensions == nil {
				gqlErr.Extensions = map[string]any{}
			}
			if _, known := contractCode(gqlErr.Extensions["code"]); !known {
				gqlErr.Extensions["code"] = codeBadUserInput
			}
			return gqlErr
		}
		out := graphql.DefaultErrorPresenter(ctx, err)
		out.Extensions = map[string]any{}
		var ce *codedError
		var ae *api.Error
		switch {
		case errors.As(err, &ce):
			out.Message, out.Extensions["code"] = ce.message, ce.code
		case errors.As(err, &ae) && ae.Code != api.Internal:
			out.Message, out.Extensions["code"] = ae.Message, string(ae.Code)
			if ae.Field != "" {
				out.Extensions["field"] = ae.Field
			}
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			out.Message, out.Extensions["code"] = "the request was cancelled or timed out", string(api.Unavailable)
		default:
			logger.ErrorContext(ctx, "internal error", "path", out.Path.String(), "err", err)
			out.Message, out.Extensions["code"] = "internal error", codeInternal
		}
		return out
	}
}

func contractCode(v any) (string, bool) {
	s, _ := v.(string)
	switch s {
	case codeUnauthenticated, codeForbidden, codeBadUserInput, string(api.NotFound), string(api.Conflict),
		string(api.Unavailable), codeInternal:
		return s, true
	}
	return s, false
}
