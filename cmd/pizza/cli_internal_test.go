package main

import (
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/db/dbtest"
	"github.com/1588-pizza/pizza/services/store"
)

func TestVersionText(t *testing.T) {
	t.Parallel()
	platform := " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	settings := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{nil, false, "pizza (unknown version: built without module information)\n"},
		{&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"},
			Settings: settings("vcs.revision", "5bd479f", "vcs.time", "2025-01-02T03:04:05Z", "vcs.modified", "false")},
			true, "pizza v1.2.3\ncommit 5bd479f (2025-01-02T03:04:05Z)\ngo1.26.0" + platform},
		{&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
			Settings: settings("vcs.revision", "5bd479f", "vcs.modified", "true")},
			true, "pizza (devel)\ncommit 5bd479f, modified: built with uncommitted changes\ngo1.26.0" + platform},
		{&debug.BuildInfo{GoVersion: "go1.26.0"}, true,
			"pizza (devel)\ncommit unknown (no VCS information: built outside a git checkout, or with -buildvcs=false)\ngo1.26.0" + platform},
	} {
		require.Equal(t, tc.want, versionText(tc.info, tc.ok))
	}
}

// The URL printed for the BFF is one a browser on this machine opens, whatever form the address
// was given in (make run once printed http://localhost127.0.0.1:28080/).
func TestBrowseURL(t *testing.T) {
	t.Parallel()
	bound := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		require.NoError(t, err)
		return a
	}
	for _, tc := range []struct {
		addr  string
		bound net.Addr
		want  string
	}{
		{":8080", nil, "http://localhost:8080/"},
		{"127.0.0.1:8080", nil, "http://127.0.0.1:8080/"},
		{"127.0.0.1:28080", nil, "http://127.0.0.1:28080/"},
		{"[::1]:8080", nil, "http://[::1]:8080/"},
		{"0.0.0.0:8080", nil, "http://localhost:8080/"},
		{"[::]:8080", nil, "http://localhost:8080/"},
		{"localhost:8080", nil, "http://localhost:8080/"},
		{"pizza.internal:8080", nil, "http://pizza.internal:8080/"},
		{":8080", bound("[::]:8080"), "http://localhost:8080/"},
		{"localhost:8080", bound("127.0.0.1:8080"), "http://localhost:8080/"},
		{"127.0.0.1:0", bound("127.0.0.1:34567"), "http://127.0.0.1:34567/"},
		{":0", bound("[::]:34567"), "http://localhost:34567/"},
	} {
		require.Equal(t, tc.want, browseURL(tc.addr, tc.bound), "%q bound at %v", tc.addr, tc.bound)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080":        true,
		"127.0.0.2:8080":        true,
		"[::1]:8080":            true,
		"localhost:8080":        true,
		"LOCALHOST:8080":        true,
		"[::ffff:127.0.0.1]:80": true,
		":8080":                 false,
		"0.0.0.0:8080":          false,
		"[::]:8080":             false,
		"192.168.1.10:8080":     false,
		"10.0.0.1:0":            false,
		"[fe80::1]:8080":        false,
	} {
		got, err := isLoopback(t.Context(), addr)
		require.NoError(t, err, addr)
		require.Equal(t, want, got, addr)
	}
	got, err := isLoopback(t.Context(), "no port")
	require.Error(t, err)
	require.False(t, got)
}

// The defaults keep a development server on this machine: the API and its metrics on loopback.
func TestAddressDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(map[string]string{})
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", c.BFF.HTTPAddr)
	require.Equal(t, "127.0.0.1:9090", c.BFF.OpsAddr)
	require.True(t, c.Common.Seed)
	c, err = loadConfig(map[string]string{"PIZZA_OPS_ADDR": ""})
	require.NoError(t, err)
	require.Empty(t, c.BFF.OpsAddr, "set and empty: no ops server")

	_, err = loadConfig(map[string]string{"PIZZA_ENV": "production", "PIZZA_SEED": "true"})
	require.ErrorContains(t, err, "PIZZA_SEED registers example stores in development only")
	c, err = loadConfig(map[string]string{"PIZZA_ENV": "production", "PIZZA_SEED": "false"})
	require.NoError(t, err)
	require.False(t, c.Common.Seed)
}

// Store replicas starting at once on an empty database register the development stores once.
func TestSeedStoresOnceAcrossReplicas(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.NewDatabase(t, db.Store)
	svc := store.New(pool, nil)
	var wg sync.WaitGroup
	results := make([][]store.Store, 4)
	errs := make([]error, len(results))
	for i := range results {
		wg.Go(func() { results[i], errs[i] = seedStores(t.Context(), pool) })
	}
	wg.Wait()
	registered := 0
	for i := range results {
		require.NoError(t, errs[i])
		registered += len(results[i])
	}
	require.Equal(t, len(devStores), registered, "one replica registered them")
	list, err := svc.List(t.Context(), "")
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, []string{"강남점 강남구 true", "종로점 종로구 false"},
		[]string{list[0].Name + " " + list[0].Region + " " + fmt.Sprint(list[0].Open), list[1].Name + " " + list[1].Region + " " + fmt.Sprint(list[1].Open)})
	again, err := seedStores(t.Context(), pool)
	require.NoError(t, err)
	require.Empty(t, again)
}
