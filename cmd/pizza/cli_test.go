package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// runCLI runs pizza with args and returns its outputs and error. The environment names an
// invalid PIZZA_ENV: help and usage errors must not depend on the configuration.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, map[string]string{"PIZZA_ENV": "not-an-environment"}, &out, &errOut)
	return out.String(), errOut.String(), err
}

// Every command and subcommand answers -h and --help (flags anywhere among its arguments) with
// its usage on stdout and exit status 0, and a flag it does not know with the error and its usage
// on stderr and exit status 2, before reading the configuration.
func TestEveryCommandAnswersHelpAndRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, cmd := range [][]string{
		{"serve"}, {"migrate"}, {"token"}, {"bench"}, {"probe"}, {"version"},
		{"dlq"}, {"dlq", "list"}, {"dlq", "replay"}, {"dlq", "discard"},
	} {
		name := strings.Join(cmd, " ")
		wantUsage := "usage: pizza " + name
		for _, help := range [][]string{
			append(cmd[:len(cmd):len(cmd)], "-h"),
			append(cmd[:len(cmd):len(cmd)], "--help"),
			append(cmd[:len(cmd):len(cmd)], "-help"),
			append([]string{"help"}, cmd...),
		} {
			stdout, stderr, err := runCLI(t, help...)
			require.ErrorIs(t, err, flag.ErrHelp, "pizza %q", help)
			require.Equal(t, 0, exitCode(err, &bytes.Buffer{}), "pizza %q", help)
			require.True(t, strings.HasPrefix(stdout, wantUsage), "pizza %q printed %q", help, stdout)
			require.Empty(t, stderr, "pizza %q", help)
		}
		bad := append(cmd[:len(cmd):len(cmd)], "--no-such-flag")
		stdout, stderr, err := runCLI(t, bad...)
		var ue *usageError
		require.ErrorAs(t, err, &ue, "pizza %q", bad)
		require.Equal(t, 2, exitCode(err, &bytes.Buffer{}), "pizza %q", bad)
		require.Empty(t, stdout, "pizza %q", bad)
		require.Contains(t, stderr, "pizza "+name+": flag provided but not defined: -no-such-flag", "pizza %q", bad)
		require.Contains(t, stderr, wantUsage, "pizza %q", bad)
	}
}

// Help after positional arguments is help, not a component, service or URL called "--help".
func TestHelpAmongArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"serve", "--help"}, {"serve", "bff", "--help"}, {"serve", "order", "-h", "store"},
		{"migrate", "order", "--help"}, {"probe", "--help"}, {"probe", "http://127.0.0.1:1/", "-h"},
		{"dlq", "replay", "--service", "order", "3", "--help"},
	} {
		stdout, stderr, err := runCLI(t, args...)
		require.ErrorIs(t, err, flag.ErrHelp, "pizza %q", args)
		require.Contains(t, stdout, "usage: pizza "+args[0], "pizza %q", args)
		require.NotContains(t, stdout+stderr, `"--help"`, "pizza %q", args)
		require.Empty(t, stderr)
	}
}

// pizza's own usage: on stdout with exit 0 when asked for, on stderr with exit 2 when pizza is
// run with no command or an unknown one.
func TestTopLevelUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		stdout, stderr, err := runCLI(t, args...)
		require.ErrorIs(t, err, flag.ErrHelp, "pizza %q", args)
		require.Equal(t, 0, exitCode(err, &bytes.Buffer{}))
		require.True(t, strings.HasPrefix(stdout, "usage: pizza <command>"), stdout)
		require.Contains(t, stdout, "version")
		require.Empty(t, stderr)
	}
	stdout, stderr, err := runCLI(t)
	require.Equal(t, 2, exitCode(err, &bytes.Buffer{}))
	require.Empty(t, stdout)
	require.True(t, strings.HasPrefix(stderr, "usage: pizza <command>"), stderr)

	stdout, stderr, err = runCLI(t, "frobnicate")
	require.Equal(t, 2, exitCode(err, &bytes.Buffer{}))
	require.Empty(t, stdout)
	require.Contains(t, stderr, `pizza: unknown command "frobnicate"`)
	require.Contains(t, stderr, "usage: pizza <command>")
}

// Arguments a command cannot run with are usage errors (exit 2, with the command's usage on
// stderr), found before the configuration is read.
func TestBadArgumentsAreUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "pizzeria"}, `unknown service "pizzeria"`},
		{[]string{"serve", "--", "--help"}, `unknown service "--help"`}, // after --, it is an argument
		{[]string{"migrate", "pizzeria"}, `unknown service "pizzeria"`},
		{[]string{"token"}, "--role must be customer, agent, master or admin"},
		{[]string{"token", "--role", "chef"}, `not "chef"`},
		{[]string{"token", "--role", "agent", "--customer", "1"}, "--customer goes with --role customer"},
		{[]string{"token", "--role", "admin", "--ttl", "0s"}, "--ttl must be positive"},
		{[]string{"token", "--role", "admin", "--ttl", "soon"}, `invalid value "soon" for flag -ttl`},
		{[]string{"token", "--role", "admin", "extra"}, "unexpected arguments"},
		{[]string{"probe"}, "give one URL"},
		{[]string{"probe", "http://a/", "http://b/"}, "give one URL"},
		{[]string{"bench", "--clients", "0"}, "--clients must be at least 1"},
		{[]string{"bench", "now"}, "unexpected arguments"},
		{[]string{"version", "now"}, "unexpected arguments"},
		{[]string{"dlq"}, "give a command: list, replay or discard"},
		{[]string{"dlq", "peek"}, `unknown command "peek"`},
		{[]string{"dlq", "list", "--limit", "0"}, "--limit must be from 1 to"},
		{[]string{"dlq", "list", "--service", "kitchen"}, `unknown service "kitchen"`},
		{[]string{"dlq", "replay", "3"}, "--service is required"},
		{[]string{"dlq", "replay", "--service", "order"}, "give the ids"},
		{[]string{"dlq", "replay", "--service", "order", "--all", "3"}, "give ids or --all, not both"},
		{[]string{"dlq", "discard", "--service", "order", "--all"}, "flag provided but not defined: -all"},
	} {
		stdout, stderr, err := runCLI(t, tc.args...)
		var ue *usageError
		require.ErrorAs(t, err, &ue, "pizza %q: %v", tc.args, err)
		require.Equal(t, 2, exitCode(err, &bytes.Buffer{}), "pizza %q", tc.args)
		require.Empty(t, stdout, "pizza %q", tc.args)
		require.Contains(t, stderr, tc.want, "pizza %q", tc.args)
		require.Contains(t, stderr, "usage: pizza "+tc.args[0], "pizza %q", tc.args)
	}
	// With good arguments the configuration is read, and refused: an error, exit 1.
	_, _, err := runCLI(t, "token", "--role", "admin")
	require.ErrorContains(t, err, "PIZZA_ENV must be")
	var errOut bytes.Buffer
	require.Equal(t, 1, exitCode(err, &errOut))
	require.Contains(t, errOut.String(), "pizza: configuration: PIZZA_ENV must be")
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err     error
		code    int
		printed string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{&usageError{err: errors.New("bad")}, 2, ""}, // run has printed it, with the usage
		{errors.New("boom"), 1, "pizza: boom\n"},
	} {
		var errOut bytes.Buffer
		require.Equal(t, tc.code, exitCode(tc.err, &errOut), "%v", tc.err)
		require.Equal(t, tc.printed, errOut.String(), "%v", tc.err)
	}
}

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	_, _, err := runCLI(t, "probe", srv.URL+"/readyz")
	require.NoError(t, err, "probe needs no configuration")
	_, _, err = runCLI(t, "probe", srv.URL+"/other")
	require.ErrorContains(t, err, "503")
	require.Equal(t, 1, exitCode(err, &bytes.Buffer{}))
}

// pizza version prints the version, the commit and the toolchain.
func TestVersionCommand(t *testing.T) {
	t.Parallel()
	stdout, stderr, err := runCLI(t, "version")
	require.NoError(t, err)
	require.Empty(t, stderr)
	require.True(t, strings.HasPrefix(stdout, "pizza "), stdout)
	require.Contains(t, stdout, "commit ")
	require.Contains(t, stdout, "go1.")
	again, _, err := runCLI(t, "--version")
	require.NoError(t, err)
	require.Equal(t, stdout, again)
}
