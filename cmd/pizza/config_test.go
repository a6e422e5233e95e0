package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// PIZZA_ENV names one of two environments, exactly: anything else is refused at start, so that a
// misspelt production never runs as development (public secret, introspection on).
func TestUnknownEnvironmentsAreRefused(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"Production", "PRODUCTION", "prod", "production ", "dev", "staging", "test"} {
		_, err := loadConfig(map[string]string{"PIZZA_ENV": v})
		require.ErrorContains(t, err, "PIZZA_ENV must be development or production", "PIZZA_ENV=%q", v)
		// Every command reads the configuration first: none of them runs.
		err = run(context.Background(), []string{"token", "--role", "admin"}, map[string]string{"PIZZA_ENV": v}, io.Discard, io.Discard)
		require.ErrorContains(t, err, "PIZZA_ENV", "pizza token with PIZZA_ENV=%q", v)
	}
	for _, v := range []string{"development", "production"} {
		c, err := loadConfig(map[string]string{"PIZZA_ENV": v})
		require.NoError(t, err)
		require.Equal(t, v == "production", c.production())
	}
	c, err := loadConfig(map[string]string{})
	require.NoError(t, err)
	require.False(t, c.production(), "development is the default")
}

// Production refuses a token key anyone could guess; development takes whatever it is given.
func TestProductionRefusesWeakAndPlaceholderSecrets(t *testing.T) {
	t.Parallel()
	refused := map[string]string{
		"":                                     "needs PIZZA_AUTH_SECRET",
		"CHANGE-ME-to-32-random-bytes-please":  "placeholder", // what deploy/k8s/secret.yaml ships
		"change_me_change_me_change_me_123":    "placeholder",
		"replace-me-with-a-real-secret-value":  "placeholder",
		"your-secret-here-0123456789abcdefgh":  "placeholder",
		developmentSecret:                      "development secret",
		"short-but-random-Zk3q9":               "at least 32",
		"0123456789abcdef0123456789abcdef":     "repetitive",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": "repetitive",
		"hunter2hunter2hunter2hunter2hunter2":  "repetitive",
	}
	for secret, reason := range refused {
		c, err := loadConfig(map[string]string{"PIZZA_ENV": "production", "PIZZA_AUTH_SECRET": secret})
		require.NoError(t, err)
		_, err = c.authSecret(slogDiscard())
		require.ErrorContains(t, err, reason, "secret %q", secret)
		require.ErrorContains(t, err, "openssl rand -base64 32", "the refusal says how to make a good one")

		dev, err := loadConfig(map[string]string{"PIZZA_AUTH_SECRET": secret})
		require.NoError(t, err)
		got, err := dev.authSecret(slogDiscard())
		require.NoError(t, err, "development takes %q", secret)
		if secret != "" {
			require.Equal(t, secret, got)
		}
	}
	for _, secret := range []string{
		"u0Q3m8xq7Jc2ZbGk1vR9tYf4WnE6pLsA0dHhK5iMoTc=",                     // openssl rand -base64 32
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", // openssl rand -hex 32
	} {
		c, err := loadConfig(map[string]string{"PIZZA_ENV": "production", "PIZZA_AUTH_SECRET": secret})
		require.NoError(t, err)
		got, err := c.authSecret(slogDiscard())
		require.NoError(t, err)
		require.Equal(t, secret, got)
	}
	// The server itself refuses to start with the shipped placeholder.
	err := run(context.Background(), []string{"serve", "bff"},
		map[string]string{"PIZZA_ENV": "production", "PIZZA_AUTH_SECRET": "CHANGE-ME-to-32-random-bytes-please"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "placeholder")
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
