package web

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, method, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

// assetsOf lists the /assets/ paths a page references.
func assetsOf(html string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(html, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestRoutesServeTheConsole(t *testing.T) {
	h := Handler(Options{})
	routes := Routes()
	require.Contains(t, routes, "/")
	for _, p := range []string{"/signin", "/customer", "/agent", "/master", "/admin", "/admin/orders", "/admin/system"} {
		require.Contains(t, routes, p, "the hooks the browser tests use name this page")
	}
	for _, p := range routes {
		res := get(t, h, http.MethodGet, p)
		require.Equal(t, http.StatusOK, res.StatusCode, p)
		assert.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"), p)
		assert.Equal(t, "no-cache", res.Header.Get("Cache-Control"), p)
		b := body(t, res)
		assert.Contains(t, b, `<div id="root">`, p)
		assert.NotEmpty(t, assetsOf(b), p)
	}
}

func TestUnknownPathsAreNotFound(t *testing.T) {
	h := Handler(Options{})
	for _, p := range []string{"/nope", "/index.html", "/playground.html", "/playground/", "/customer/", "/admin/nope",
		"/assets/", "/assets/nope.js", "/assets/../index.html", "/build-info.json", "/src/main.tsx", "/graphql"} {
		res := get(t, h, http.MethodGet, p)
		assert.Equal(t, http.StatusNotFound, res.StatusCode, p)
		assert.NotEmpty(t, res.Header.Get("Content-Security-Policy"), p)
		assert.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"), p)
	}
}

func TestOnlyGetAndHead(t *testing.T) {
	h := Handler(Options{})
	res := get(t, h, http.MethodPost, "/customer")
	assert.Equal(t, http.StatusMethodNotAllowed, res.StatusCode)
	assert.Equal(t, "GET, HEAD", res.Header.Get("Allow"))

	res = get(t, h, http.MethodHead, "/")
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Empty(t, body(t, res))
	assert.NotEmpty(t, res.Header.Get("Content-Length"))
}

func TestAssets(t *testing.T) {
	h := Handler(Options{})
	for _, page := range []string{"/", "/playground"} {
		refs := assetsOf(body(t, get(t, h, http.MethodGet, page)))
		require.NotEmpty(t, refs, page)
		for _, a := range refs {
			res := get(t, h, http.MethodGet, a)
			require.Equal(t, http.StatusOK, res.StatusCode, a)
			assert.Equal(t, "public, max-age=31536000, immutable", res.Header.Get("Cache-Control"), a)
			want := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
				".svg": "image/svg+xml"}[filepath.Ext(a)]
			require.NotEmpty(t, want, "an unexpected kind of asset: %s", a)
			assert.Equal(t, want, res.Header.Get("Content-Type"), a)
			assert.NotEmpty(t, res.Header.Get("ETag"), a)
		}
	}
	// Every built file has a type of its own (never application/octet-stream).
	entries, err := fs.ReadDir(dist, "dist/assets")
	require.NoError(t, err)
	for _, e := range entries {
		ct := get(t, h, http.MethodHead, "/assets/"+e.Name()).Header.Get("Content-Type")
		assert.NotEqual(t, "application/octet-stream", ct, e.Name())
	}
}

func TestConditionalAndGzip(t *testing.T) {
	h := Handler(Options{})
	var js string
	for _, a := range assetsOf(body(t, get(t, h, http.MethodGet, "/"))) {
		if strings.HasSuffix(a, ".js") {
			js = a
		}
	}
	require.NotEmpty(t, js)

	plain := get(t, h, http.MethodGet, js)
	raw := body(t, plain)
	assert.Empty(t, plain.Header.Get("Content-Encoding"))
	assert.Contains(t, plain.Header.Values("Vary"), "Accept-Encoding")

	zipped := get(t, h, http.MethodGet, js, "Accept-Encoding", "br, gzip;q=0.8")
	require.Equal(t, "gzip", zipped.Header.Get("Content-Encoding"))
	zr, err := gzip.NewReader(zipped.Body)
	require.NoError(t, err)
	unzipped, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, raw, string(unzipped))
	assert.NotEqual(t, plain.Header.Get("ETag"), zipped.Header.Get("ETag"), "each encoding its own ETag")

	assert.Empty(t, get(t, h, http.MethodGet, js, "Accept-Encoding", "gzip;q=0").Header.Get("Content-Encoding"))

	res := get(t, h, http.MethodGet, "/", "If-None-Match", get(t, h, http.MethodGet, "/").Header.Get("ETag"))
	assert.Equal(t, http.StatusNotModified, res.StatusCode, "an unchanged page is answered 304")
}

func TestSecurityHeaders(t *testing.T) {
	h := Handler(Options{DevSignIn: true})
	for _, p := range []string{"/", "/admin/system", "/playground"} {
		res := get(t, h, http.MethodGet, p)
		csp := res.Header.Get("Content-Security-Policy")
		directives := map[string]string{}
		for _, d := range strings.Split(csp, ";") {
			name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
			directives[name] = value
		}
		assert.Equal(t, "'self'", directives["script-src"], p+": scripts only from files of this origin, never inline")
		assert.Equal(t, "'self'", directives["connect-src"], p)
		assert.Equal(t, "'none'", directives["frame-ancestors"], p)
		assert.Equal(t, "'none'", directives["base-uri"], p)
		assert.Equal(t, "'none'", directives["object-src"], p)
		assert.Equal(t, "'self'", directives["default-src"], p)
		assert.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"), p)
		assert.Equal(t, "no-referrer", res.Header.Get("Referrer-Policy"), p)

		// And the pages hold no inline script for the policy to refuse.
		b := body(t, res)
		for _, m := range regexp.MustCompile(`(?s)<script\b([^>]*)>(.*?)</script>`).FindAllStringSubmatch(b, -1) {
			assert.Contains(t, m[1], `src="/assets/`, "%s: a script that is not a file: %s", p, m[0])
			assert.Empty(t, strings.TrimSpace(m[2]), "%s: an inline script", p)
		}
		assert.NotRegexp(t, `\son[a-z]+=`, b, p+": no inline event handlers")
	}
	// The console allows no inline style either; GraphiQL's editor needs it.
	assert.Contains(t, get(t, h, http.MethodGet, "/").Header.Get("Content-Security-Policy"), "style-src 'self';")
}

func TestDevSignInMetaOnlyWhenAsked(t *testing.T) {
	const meta = `<meta name="pizza-dev-signin" content="/dev/token">`
	dev := body(t, get(t, Handler(Options{DevSignIn: true}), http.MethodGet, "/signin"))
	assert.Contains(t, dev, meta)
	assert.Less(t, strings.Index(dev, meta), strings.Index(dev, "</head>"), "in the head")

	for _, p := range append(Routes(), "/playground") {
		assert.NotContains(t, body(t, get(t, Handler(Options{}), http.MethodGet, p)), "pizza-dev-signin", p)
	}
	// The playground never offers it.
	assert.NotContains(t, body(t, get(t, Handler(Options{DevSignIn: true}), http.MethodGet, "/playground")), "pizza-dev-signin")
}

// sourcePatterns are the console's sources, relative to the repository root (a directory: every
// file beneath it); web/scripts/build-info.mjs hashes the same list into dist/build-info.json.
var sourcePatterns = []string{
	"graph/*.graphqls",
	"web/index.html",
	"web/playground.html",
	"web/playground",
	"web/src",
	"web/scripts",
	"web/package.json",
	"web/package-lock.json",
	"web/tsconfig.json",
	"web/vite.config.ts",
	"web/codegen.ts",
}

type buildInfo struct {
	SourcesSha256           string   `json:"sourcesSha256"`
	Sources                 []string `json:"sources"`
	ConsoleScripts          []string `json:"consoleScripts"`
	ConsoleScriptsGzipBytes int      `json:"consoleScriptsGzipBytes"`
}

func readBuildInfo(t *testing.T) buildInfo {
	t.Helper()
	b, err := dist.ReadFile("dist/build-info.json")
	require.NoError(t, err, "dist/build-info.json is missing: run make generate")
	var info buildInfo
	require.NoError(t, json.Unmarshal(b, &info))
	return info
}

// sources lists the files of sourcePatterns and hashes them as build-info.mjs does: over the
// sorted paths, each "path NUL hex(sha256(content)) LF".
func sources(t *testing.T) ([]string, string) {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	var files []string
	for _, pat := range sourcePatterns {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(pat)))
		require.NoError(t, err)
		require.NotEmpty(t, matches, pat)
		for _, m := range matches {
			require.NoError(t, filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				rel, err := filepath.Rel(root, p)
				files = append(files, filepath.ToSlash(rel))
				return err
			}))
		}
	}
	sort.Strings(files)
	files = slices.Compact(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		fmt.Fprintf(h, "%s\x00%s\n", f, hex.EncodeToString(sum[:]))
	}
	return files, hex.EncodeToString(h.Sum(nil))
}

// TestBundleIsFresh fails when the committed dist/ was not built from the sources as they are:
// a changed component, schema or lockfile needs `make generate` (and the new dist/ committed).
func TestBundleIsFresh(t *testing.T) {
	info := readBuildInfo(t)
	files, sum := sources(t)
	assert.Equal(t, info.Sources, files, "the console's source files changed: run make generate")
	require.Equal(t, info.SourcesSha256, sum,
		"web/dist was not built from the current sources (web/src, graph/*.graphqls, package-lock.json, ...): run make generate")
}

// TestConsoleBudget keeps the console's JavaScript under 150 KiB gzipped (GraphiQL's does not count).
func TestConsoleBudget(t *testing.T) {
	info := readBuildInfo(t)
	scripts, total, err := ConsoleScripts()
	require.NoError(t, err)
	assert.ElementsMatch(t, info.ConsoleScripts, scripts)
	t.Logf("the console's JavaScript: %.1f KiB gzipped (%d files)", float64(total)/1024, len(scripts))
	assert.Less(t, total, 150<<10, "the console's JavaScript is over its budget of 150 KiB gzipped")
}
