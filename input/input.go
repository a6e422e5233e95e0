// Package input holds the rules for what the system accepts from outside, wherever it arrives
// (a GraphQL argument, an internal API's body, a token's claim, an event): ids this system gives
// out, keys chosen elsewhere (a customer id), short texts. Key, KeyPrefix and Text refuse with
// an errs.Invalid naming the field (BAD_USER_INPUT at every edge); ParseID with a plain error,
// which its caller turns into NOT_FOUND (no object has that id) or BAD_USER_INPUT, as fits.
package input

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/1588-pizza/pizza/errs"
)

// ParseID parses a positive integer id in its canonical form (no sign, space or leading zero):
// the ids this system gives orders and stores.
func ParseID(s string) (int64, error) {
	var id int64
	if _, err := fmt.Sscan(s, &id); err != nil || id <= 0 || fmt.Sprint(id) != s {
		return 0, fmt.Errorf("%q is not an id", s)
	}
	return id, nil
}

// Text checks a required short text field: not blank, at most max characters, valid UTF-8 with
// nothing invisible or control-like in it (see printable). It returns the value trimmed.
func Text(field, value string, max int) (string, error) {
	v := strings.TrimSpace(value)
	switch {
	case v == "":
		return "", errs.Invalid(field, "is required")
	case len([]rune(v)) > max:
		return "", errs.Invalid(field, "must be at most %d characters", max)
	case !printable(v):
		return "", errs.Invalid(field, "must not contain control, format or invalid characters")
	}
	return v, nil
}

// maxKeyLen bounds a customer id (and any other free-form key a client names things by).
const maxKeyLen = 64

// Key checks an identifier chosen outside this system, such as a customer id: 1 to maxKeyLen
// characters, printable (see printable), and without surrounding space. It is never trimmed or
// otherwise rewritten, because ids are compared exactly everywhere (a token's claim against an
// argument, an argument against a stored row): "2 " is refused, not read as "2".
func Key(field, value string) (string, error) {
	switch {
	case value == "":
		return "", errs.Invalid(field, "is required")
	case strings.TrimSpace(value) != value:
		return "", errs.Invalid(field, "must not begin or end with space")
	case len([]rune(value)) > maxKeyLen:
		return "", errs.Invalid(field, "must be at most %d characters", maxKeyLen)
	case !printable(value):
		return "", errs.Invalid(field, "must not contain control, format or invalid characters")
	}
	return value, nil
}

// KeyPrefix checks the start of a Key as a client typed it to search by: empty (no restriction)
// or at most maxKeyLen printable characters (see printable). Like a Key, it is never trimmed: a
// prefix with surrounding space is no key's, and finds nothing.
func KeyPrefix(field, value string) (string, error) {
	switch {
	case len([]rune(value)) > maxKeyLen:
		return "", errs.Invalid(field, "must be at most %d characters", maxKeyLen)
	case !printable(value):
		return "", errs.Invalid(field, "must not contain control, format or invalid characters")
	}
	return value, nil
}

// printable reports whether s is valid UTF-8 free of control characters (C0, DEL and C1, such
// as U+0085), format characters (bidirectional overrides, zero-width ones, BOM), line and
// paragraph separators, surrogates and private-use code points: what would make two values
// that look the same differ, or break the display or the logs of whoever shows them.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs) || r == utf8.RuneError
	})
}
