package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/web"
)

// The console's numbers for BENCHMARKS.md (make bench runs this; make test does not): the
// JavaScript the console loads, gzipped; the time from navigation to the first myPage row on the
// page; and how much later than a bare graphql-ws client on the same subscription a push reaches
// the page (placeOrder's answer -> the row in the DOM), side by side, at p50.
// PIZZA_CONSOLE_BENCH=N runs it with N orders (30 when just set to 1).
func TestConsoleBench(t *testing.T) {
	n := 0
	if v := os.Getenv("PIZZA_CONSOLE_BENCH"); v != "" {
		fmt.Sscan(v, &n)
	}
	if n <= 0 {
		t.Skip("PIZZA_CONSOLE_BENCH is not set: make bench runs this")
	}
	if n == 1 {
		n = 30
	}
	_, gz, err := web.ConsoleScripts()
	require.NoError(t, err)
	kib := float64(gz) / 1024

	_, base := wholeSystem(t, nil)
	registerStore(t, base, "강남점", "강남구")
	const customer = "bench-1"
	tok := mint(t, model.RoleCustomer, customer)
	placed(t, base, tok, customer, "강남구")

	b := newBrowser(t)
	tab := b.tab(t, desktopW, desktopH)
	signIn(t, tab, base, model.RoleCustomer, tok)
	waitJS(t, tab, "the first row", `!!document.querySelector('#orders [data-order-id]')`)

	// Navigation -> the first row, over reloads of the signed-in page (the token is in the tab's
	// sessionStorage): the page records performance.now() when the row first shows.
	do(t, tab, "watch for the first row", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
			new MutationObserver((_, o) => {
				if (document.querySelector('#orders [data-order-id]')) { window.__firstRow = performance.now(); o.disconnect(); }
			}).observe(document, {subtree: true, childList: true});`})
		return err
	}))
	var firstRow []float64
	for range 10 {
		do(t, tab, "reload", chromedp.Reload())
		waitJS(t, tab, "the first row after a reload", `typeof window.__firstRow === 'number'`)
		firstRow = append(firstRow, evalJS[float64](t, tab, `window.__firstRow`))
	}

	// Pushes, side by side: the page records when each order's row first shows (wall clock, in
	// ms), the bare client when its first message for the order arrives.
	evalJS[bool](t, tab, `(() => {
		window.__shown = {};
		const note = () => { for (const e of document.querySelectorAll('#orders [data-order-id]')) {
			if (!(e.dataset.orderId in window.__shown)) window.__shown[e.dataset.orderId] = performance.timeOrigin + performance.now();
		} };
		note();
		new MutationObserver(note).observe(document.body, {subtree: true, childList: true});
		return true;
	})()`)
	ws := connect(t, base, tok)
	ws.subscribe(t, "bare", myPageSubscription, map[string]any{"c": customer})
	var (
		mu   sync.Mutex
		bare = map[string]time.Time{}
	)
	go func() {
		for m := range ws.msgs {
			var p struct{ Data struct{ MyPage myPageRow } }
			if m.Type != "next" || json.Unmarshal(m.Payload, &p) != nil {
				continue
			}
			at := time.Now()
			mu.Lock()
			if _, ok := bare[p.Data.MyPage.OrderID]; !ok {
				bare[p.Data.MyPage.OrderID] = at
			}
			mu.Unlock()
		}
	}()
	var pageMs, bareMs []float64
	for range n {
		o := placed(t, base, tok, customer, "강남구")
		ack := time.Now()
		waitJS(t, tab, "order "+o.ID+" on the page", fmt.Sprintf(`%s in window.__shown`, jsString(o.ID)))
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); _, ok := bare[o.ID]; return ok },
			10*time.Second, time.Millisecond)
		shown := evalJS[float64](t, tab, fmt.Sprintf(`window.__shown[%s]`, jsString(o.ID)))
		mu.Lock()
		bareMs = append(bareMs, float64(bare[o.ID].Sub(ack).Microseconds())/1000)
		mu.Unlock()
		pageMs = append(pageMs, shown-float64(ack.UnixMicro())/1000)
	}
	p50 := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	t.Logf("console bench, %d orders:", n)
	t.Logf("  console JavaScript, gzipped:            %.1f KiB", kib)
	t.Logf("  navigation -> first myPage row, p50:    %.0f ms (of %d reloads)", p50(firstRow), len(firstRow))
	t.Logf("  placeOrder answer -> bare client, p50:  %.1f ms", p50(bareMs))
	t.Logf("  placeOrder answer -> row in DOM, p50:   %.1f ms", p50(pageMs))
	t.Logf("  the page later than the bare client:    %.1f ms at p50", p50(pageMs)-p50(bareMs))
}
