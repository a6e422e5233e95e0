package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The console's browser tests drive Debian's headless chromium (make test installs it:
// scripts/browser-up.sh) through the DevTools protocol with chromedp. No tool downloads a browser.

// chromiumPath is PIZZA_CHROMIUM, else chromium on PATH. Without one the test fails, saying how
// to get one; PIZZA_BROWSER=skip skips the browser tests instead (never in make test).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if os.Getenv("PIZZA_BROWSER") == "skip" {
		t.Skip("PIZZA_BROWSER=skip")
	}
	if p := os.Getenv("PIZZA_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium for the console's browser tests: run scripts/browser-up.sh (make test does), " +
		"set PIZZA_CHROMIUM to a Chromium binary, or PIZZA_BROWSER=skip to skip them")
	return ""
}

// browser is the headless chromium the package's browser tests share: one process, started by
// the first test that asks and closed when the tests end (closeBrowser, from TestMain). Each tab
// it opens (browser.tab) is its own browser context: its own cookies and storage, as another
// person's browser would be, so tests sharing the process see nothing of each other's.
type browser struct {
	ctx context.Context
}

var shared struct {
	mu      sync.Mutex
	browser *browser
	close   func()
}

// newBrowser returns the shared chromium, starting it when there is none or the last one died
// (a crash then fails only the tests that were using it, not every later one).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.browser != nil && shared.browser.ctx.Err() == nil {
		return shared.browser
	}
	if shared.close != nil {
		shared.close()
	}
	shared.browser, shared.close = nil, nil
	b, closeAll, err := startBrowser(path)
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	shared.browser, shared.close = b, closeAll
	return b
}

func startBrowser(path string) (*browser, func(), error) {
	dir, err := os.MkdirTemp("", "pizza-chromium-")
	if err != nil {
		return nil, nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(dir),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithErrorf(func(string, ...any) {}))
	closeAll := func() { cancel(); cancelAlloc(); _ = os.RemoveAll(dir) }
	// Start the browser. Not under a timeout context, which would end the browser with it: a
	// start that hangs is killed instead.
	hung := time.AfterFunc(time.Minute, cancelAlloc)
	err = chromedp.Do(ctx)
	hung.Stop()
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return &browser{ctx: ctx}, closeAll, nil
}

// closeBrowser closes the shared chromium, if a test started it.
func closeBrowser() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.close != nil {
		shared.close()
	}
}

// tab opens a page in a browser context of its own, with a viewport of w x h CSS pixels.
func (b *browser) tab(t *testing.T, w, h int64) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h)); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// do runs the steps in the tab, failing the test with what it was doing.
func do(t *testing.T, tab context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS waits until the JavaScript expression is truthy in the tab (polled each animation frame).
func waitJS(t *testing.T, tab context.Context, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

// evalJS evaluates the expression in the tab.
func evalJS[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshotDir is where the browser tests leave a PNG of each screen for a reviewer
// (PIZZA_SCREENSHOTS, default bin/screenshots at the repository's root; README says so).
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PIZZA_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "bin", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshots: %v", err)
	}
	return dir
}

// screenshot writes the tab's whole page to name.png in screenshotDir.
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(screenshotDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
}

// cssQuote quotes s for a CSS attribute selector: [data-order-id=` + cssQuote(id) + `].
func cssQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string { return fmt.Sprintf("%q", s) }
