package main

import (
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/1588-pizza/pizza/db"
)

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// configKeys are every environment variable the configuration reads.
func configKeys(t *testing.T) []string {
	params, err := env.GetFieldParams(&config{})
	require.NoError(t, err)
	var keys []string
	for _, p := range params {
		keys = append(keys, p.Key)
	}
	return keys
}

// interpolate does what docker compose does to ${VAR:-default} in values, with shell as the
// user's environment.
func interpolate(t *testing.T, env, shell map[string]string) map[string]string {
	t.Helper()
	re := regexp.MustCompile(`\$\{([A-Z_]+):-([^}]*)\}`)
	out := map[string]string{}
	for k, v := range env {
		out[k] = re.ReplaceAllStringFunc(v, func(m string) string {
			sub := re.FindStringSubmatch(m)
			if s, ok := shell[sub[1]]; ok && s != "" {
				return s
			}
			return sub[2]
		})
		require.NotContains(t, out[k], "${", "%s: an interpolation this test does not know", k)
	}
	return out
}

// compose.yaml cannot be started here (no Docker engine), so it is checked by construction: it
// parses, every variable it sets is one the configuration reads, every pizza container runs a
// real command, and each health check probes the port its component listens on and publishes.
func TestComposeFileIsConsistent(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../compose.yaml")
	require.NoError(t, err)
	var c composeFile
	require.NoError(t, yaml.Unmarshal(raw, &c))
	keys := configKeys(t)
	require.Contains(t, keys, "ORDER_DATABASE_URL")

	components := 0
	for name, svc := range c.Services {
		if svc.Image != "1588-pizza:dev" {
			continue
		}
		require.NotNil(t, svc.Build, "%s builds the image", name)
		for k := range svc.Environment {
			require.Contains(t, keys, k, "%s sets %s, which the configuration does not read", name, k)
		}
		cfg, err := loadConfig(interpolate(t, svc.Environment, nil))
		require.NoError(t, err, "%s's environment is a valid configuration", name)
		require.NotEmpty(t, svc.Command, name)
		switch svc.Command[0] {
		case "migrate":
			continue
		case "serve":
		default:
			t.Fatalf("%s runs unknown command %q", name, svc.Command[0])
		}
		require.Len(t, svc.Command, 2, "%s runs one component", name)
		addrVar := "PIZZA_HTTP_ADDR"
		if svc.Command[1] != "bff" {
			s, err := db.ParseService(svc.Command[1])
			require.NoError(t, err)
			addrVar = strings.ToUpper(string(s)) + "_ADDR"
			require.Equal(t, "http://"+name+":"+strings.Split(svc.Environment[addrVar], ":")[1], svc.Environment[strings.ToUpper(string(s))+"_URL"],
				"callers find %s at its container name", name)
		}
		components++

		_, port, err := net.SplitHostPort(svc.Environment[addrVar])
		require.NoError(t, err, "%s sets its listen address", name)
		require.True(t, slices.ContainsFunc(svc.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port+":"+port) }),
			"%s publishes its port %s", name, port)
		require.Equal(t, []string{"CMD", "/pizza", "probe", "http://127.0.0.1:" + port + "/readyz"}, svc.Healthcheck.Test, name)

		if addrVar == "PIZZA_HTTP_ADDR" {
			// The BFF listens beyond its container: without a secret of the user's it refuses the
			// development one; with PIZZA_AUTH_SECRET exported, it starts.
			secret, err := cfg.authSecret(slogDiscard())
			require.NoError(t, err)
			require.ErrorContains(t, cfg.checkExposure(t.Context(), secret), "PIZZA_AUTH_SECRET")
			cfg, err = loadConfig(interpolate(t, svc.Environment, map[string]string{"PIZZA_AUTH_SECRET": "mine"}))
			require.NoError(t, err)
			secret, err = cfg.authSecret(slogDiscard())
			require.NoError(t, err)
			require.NoError(t, cfg.checkExposure(t.Context(), secret))
			_, opsPort, err := net.SplitHostPort(cfg.BFF.OpsAddr)
			require.NoError(t, err)
			require.Contains(t, svc.Ports, "127.0.0.1:"+opsPort+":"+opsPort, "the BFF publishes its metrics on loopback")
		}
	}
	require.Equal(t, len(db.Services)+1, components, "one container per component, the BFF included")
}
