// Package web serves the browser side of 1588-pizza from the binary: the console (a single-page
// app in TypeScript and Preact, talking only to the public GraphQL API) at its routes, and
// GraphiQL at /playground. Both are built from this directory by Vite into dist/, which is
// committed and embedded, so `go build` needs no Node and the pages load nothing from the
// internet. `make generate` rebuilds dist/ (npm ci, then codegen, type check, vite build); a
// test fails when the committed dist/ was not built from the current sources (see README.md).
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

//go:generate npm ci --no-audit --no-fund
//go:generate npm run build

//go:embed all:dist
var dist embed.FS

// routes.json lists the console's pages: the one list the app's router and this handler read.
//
//go:embed src/routes.json
var routesJSON []byte

// Options configure the handler.
type Options struct {
	// DevSignIn announces the development sign-in endpoint (POST /dev/token, served by the BFF
	// only with PIZZA_ENV=development) in the console's page, which then offers a one-click
	// sign-in as any role. Never set it in production.
	DevSignIn bool
}

// DevSignInPath is where the development sign-in endpoint is, as the console is told.
const DevSignInPath = "/dev/token"

// The Content-Security-Policy of the console: no inline script or style, nothing from
// elsewhere, and fetches and websockets to its own origin only ('self' covers ws: and wss: to
// the same host). GraphiQL's editor (Monaco) sets inline styles and loads its fonts from data:
// URLs, so the playground allows those two; its scripts are files as well.
const (
	consoleCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; " +
		"connect-src 'self'; worker-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; " +
		"base-uri 'none'; object-src 'none'"
	playgroundCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
		"font-src 'self' data:; connect-src 'self'; worker-src 'self'; form-action 'self'; frame-ancestors 'none'; " +
		"base-uri 'none'; object-src 'none'"
)

const (
	cacheImmutable  = "public, max-age=31536000, immutable" // hashed file names: a new build, new names
	cacheRevalidate = "no-cache"                            // pages: always asked again (answered 304 when unchanged)
)

// Routes are the console's pages (src/routes.json): each serves index.html.
func Routes() []string {
	var doc struct {
		Routes []struct {
			Path string `json:"path"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(routesJSON, &doc); err != nil {
		panic("web: src/routes.json: " + err.Error())
	}
	out := make([]string, len(doc.Routes))
	for i, r := range doc.Routes {
		out[i] = r.Path
	}
	return out
}

// resource is one file as served: its bytes, headers, and its gzip, made on first request.
type resource struct {
	data   []byte
	ctype  string
	cache  string
	csp    string
	etag   string
	gzOnce sync.Once
	gz     []byte // nil: not worth compressing
}

func newResource(data []byte, ctype, cache, csp string) *resource {
	sum := sha256.Sum256(data)
	return &resource{data: data, ctype: ctype, cache: cache, csp: csp, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// gzipped returns the file gzipped, or nil when that would not help (small, or already compressed).
func (r *resource) gzipped() []byte {
	r.gzOnce.Do(func() {
		if len(r.data) < 1024 || !compressible(r.ctype) {
			return
		}
		var b bytes.Buffer
		w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		_, _ = w.Write(r.data)
		_ = w.Close()
		if b.Len() < len(r.data)*9/10 {
			r.gz = b.Bytes()
		}
	})
	return r.gz
}

func compressible(ctype string) bool {
	return strings.HasPrefix(ctype, "text/") || strings.Contains(ctype, "javascript") ||
		strings.Contains(ctype, "json") || strings.Contains(ctype, "svg") || ctype == "font/ttf"
}

// contentTypes by extension, fixed here rather than read from the host's mime tables.
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".json":  "application/json",
	".ttf":   "font/ttf",
	".woff":  "font/woff",
	".woff2": "font/woff2",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".wasm":  "application/wasm",
}

// assets are dist/assets/*, by name; read once for every handler.
var assets = sync.OnceValue(func() map[string]*resource {
	entries, err := fs.ReadDir(dist, "dist/assets")
	if err != nil {
		panic("web: dist/assets missing: run make generate")
	}
	out := make(map[string]*resource, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := dist.ReadFile("dist/assets/" + e.Name())
		if err != nil {
			panic(err)
		}
		ctype, ok := contentTypes[path.Ext(e.Name())]
		if !ok {
			ctype = "application/octet-stream"
		}
		csp := consoleCSP // a response's CSP governs it only if it is a document or a worker
		if strings.Contains(e.Name(), ".worker-") {
			csp = playgroundCSP // GraphiQL's editor workers
		}
		out[e.Name()] = newResource(data, ctype, cacheImmutable, csp)
	}
	return out
})

func page(name string) []byte {
	b, err := dist.ReadFile("dist/" + name)
	if err != nil {
		panic("web: dist/" + name + " missing: run make generate")
	}
	return b
}

// Handler serves the console at its routes (Routes), the built files under /assets/, and
// GraphiQL at /playground; any other path is 404, any method but GET and HEAD 405. Every
// answer carries the security headers (CSP, nosniff, no referrer).
func Handler(o Options) http.Handler {
	index := page("index.html")
	if o.DevSignIn { // done once here, not per request
		meta := []byte(`<meta name="pizza-dev-signin" content="` + DevSignInPath + `">` + "\n  </head>")
		index = bytes.Replace(index, []byte("</head>"), meta, 1)
	}
	html := contentTypes[".html"]
	pages := map[string]*resource{"/playground": newResource(page("playground.html"), html, cacheRevalidate, playgroundCSP)}
	console := newResource(index, html, cacheRevalidate, consoleCSP)
	for _, p := range Routes() {
		pages[p] = console
	}
	files := assets()

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		res := pages[r.URL.Path]
		if name, ok := strings.CutPrefix(r.URL.Path, "/assets/"); ok && res == nil {
			res = files[name]
		}
		if res == nil {
			h.Set("Content-Security-Policy", consoleCSP)
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Security-Policy", res.csp)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", res.ctype)
		h.Set("Cache-Control", res.cache)
		body, etag := res.data, res.etag
		if compressible(res.ctype) {
			h.Add("Vary", "Accept-Encoding")
			if gz := res.gzipped(); gz != nil && acceptsGzip(r) {
				body, etag = gz, strings.TrimSuffix(etag, `"`)+`-gzip"`
				h.Set("Content-Encoding", "gzip")
			}
		}
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip (with a quality above 0).
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// ConsoleScripts measures the console's JavaScript as a browser with an empty cache fetches it:
// every script index.html loads (its module and the modules it preloads), with each one's size
// gzipped at best compression. The budget test and `make bench` both report it.
func ConsoleScripts() (files []string, gzipped int, err error) {
	index, err := dist.ReadFile("dist/index.html")
	if err != nil {
		return nil, 0, err
	}
	for _, m := range scriptRef.FindAllSubmatch(index, -1) {
		name := string(m[1])
		js, err := dist.ReadFile("dist/" + name)
		if err != nil {
			return nil, 0, err
		}
		var z bytes.Buffer
		w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		if _, err := w.Write(js); err != nil {
			return nil, 0, err
		}
		if err := w.Close(); err != nil {
			return nil, 0, err
		}
		files, gzipped = append(files, name), gzipped+z.Len()
	}
	return files, gzipped, nil
}

// scriptRef finds the scripts index.html loads: <script src> and <link rel=modulepreload href>.
var scriptRef = regexp.MustCompile(`(?:src|href)="/(assets/[^"]+\.js)"`)
