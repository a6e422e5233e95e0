package errs_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/errs"
)

func TestCodeOf(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want errs.Code
	}{
		{"its own code", errs.Errorf(errs.NotFound, "no order %q", "x"), errs.NotFound},
		{"wrapped", fmt.Errorf("placing: %w", errs.Invalid("qty", "must be positive")), errs.BadUserInput},
		{"the database unreachable", &pgconn.PgError{Code: "57P01"}, errs.Unavailable},
		{"a conflict lost to another transaction", fmt.Errorf("apply: %w", &pgconn.PgError{Code: "40001"}), errs.Unavailable},
		{"anything else", errors.New("boom"), errs.Internal},
	}
	for _, c := range cases {
		require.Equal(t, c.want, errs.CodeOf(c.err), c.name)
	}
}

func TestErrorNamesItsField(t *testing.T) {
	require.Equal(t, "BAD_USER_INPUT: qty: must be positive", errs.Invalid("qty", "must be positive").Error())
	require.Equal(t, "FORBIDDEN: not yours", errs.Errorf(errs.Forbidden, "not yours").Error())
}
