package graph

import (
	"context"
	"errors"
	"log/slog"

	"github.com/1588-pizza/pizza/errs"
	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// The BFF's own refusals, in the module's one error vocabulary (package errs).
var (
	errNoToken   = errs.Errorf(errs.Unauthenticated, "%s", reasonNoToken)
	errExpired   = errs.Errorf(errs.Unauthenticated, "%s", reasonExpired)
	errForbidden = errs.Errorf(errs.Forbidden, "not allowed for this token")
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
				gqlErr.Extensions["code"] = string(errs.BadUserInput)
			}
			return gqlErr
		}
		out := graphql.DefaultErrorPresenter(ctx, err)
		out.Extensions = map[string]any{}
		var ae *errs.Error
		switch {
		case errors.As(err, &ae) && ae.Code != errs.Internal:
			out.Message, out.Extensions["code"] = ae.Message, string(ae.Code)
			if ae.Field != "" {
				out.Extensions["field"] = ae.Field
			}
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			out.Message, out.Extensions["code"] = "the request was cancelled or timed out", string(errs.Unavailable)
		default:
			logger.ErrorContext(ctx, "internal error", "path", out.Path.String(), "err", err)
			out.Message, out.Extensions["code"] = "internal error", string(errs.Internal)
		}
		return out
	}
}

// contractCode reports whether v is one of the codes of package errs.
func contractCode(v any) (string, bool) {
	s, _ := v.(string)
	switch errs.Code(s) {
	case errs.BadUserInput, errs.Unauthenticated, errs.Forbidden, errs.NotFound, errs.Conflict, errs.Unavailable, errs.Internal:
		return s, true
	}
	return s, false
}

// coded is a GraphQL error with extensions.code, for what the BFF refuses before a resolver runs
// (a request's shape, transport and token) and for ending a subscription.
func coded(code errs.Code, format string, args ...any) *gqlerror.Error {
	err := gqlerror.Errorf(format, args...)
	err.Extensions = map[string]any{"code": string(code)}
	return err
}
