package input

import (
	"strings"
	"testing"

	"github.com/1588-pizza/pizza/errs"
	"github.com/stretchr/testify/require"
)

// Keys are taken exactly as given or refused: never trimmed, never rewritten.
func TestKeysAreExactOrRefused(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"1", "c-1", "고객 7", "a b", strings.Repeat("피", maxKeyLen)} {
		got, err := Key("customerId", ok)
		require.NoError(t, err, "%q", ok)
		require.Equal(t, ok, got)
	}
	for _, bad := range []string{"", " ", "2 ", " 2", "2\t", "2\n", "\u00a02", "2\u3000", "2\x00", "2\u0085",
		"2\u200b", "\ufeff2", "2\u202e", "2\u2028x", "2\ue000", "2\xff", strings.Repeat("x", maxKeyLen+1)} {
		_, err := Key("customerId", bad)
		require.Error(t, err, "%q", bad)
		require.Equal(t, errs.BadUserInput, errs.CodeOf(err))
		require.Equal(t, "customerId", err.(*errs.Error).Field)
	}
}

// Text is trimmed, and refused when anything invisible or control-like remains in it.
func TestTextRefusesWhatCannotBeSeen(t *testing.T) {
	t.Parallel()
	got, err := Text("pizza", "  불고기 피자 ", 100)
	require.NoError(t, err)
	require.Equal(t, "불고기 피자", got)
	for _, bad := range []string{"", "   ", "p\x00", "p\x7fx", "p\u0085x", "p\u009fx", "p\u202ex", "p\u200dx",
		"p\u2029x", "p\ufeffx", "p\xc3x", strings.Repeat("x", 101)} {
		_, err := Text("pizza", bad, 100)
		require.Error(t, err, "%q", bad)
		require.Equal(t, errs.BadUserInput, errs.CodeOf(err))
	}
}

// Ids this system gives out are positive integers in one spelling only.
func TestParseIDTakesOneSpelling(t *testing.T) {
	t.Parallel()
	n, err := ParseID("42")
	require.NoError(t, err)
	require.EqualValues(t, 42, n)
	for _, bad := range []string{"", "0", "-1", "+1", "01", " 1", "1 ", "1e3", "abc", "\x00", "9223372036854775808"} {
		_, err := ParseID(bad)
		require.Error(t, err, "%q", bad)
	}
}
