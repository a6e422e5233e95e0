package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
)

// The console's story in real headless chromium, against the whole system: each person in a
// browser context of their own, as on their own machine. The page is driven through the hooks
// web/README.md lists (ids and data- attributes); every wait is on a condition in the page.

// Phone and desktop viewports.
const (
	phoneW, phoneH     = 390, 844
	desktopW, desktopH = 1280, 860
)

// signIn opens the console at base and signs in by pasting a token, as anyone with a token
// would, then waits until the console shows the role's page.
func signIn(t *testing.T, tab context.Context, base string, role model.Role, tok string) {
	t.Helper()
	do(t, tab, "open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	setValue(t, tab, "#token", tok)
	click(t, tab, "#signin")
	waitJS(t, tab, "signed in as "+string(role), `document.querySelector('[data-role]')?.dataset.role === `+jsString(string(role)))
	requireTokenKept(t, tab, tok)
}

// requireTokenKept fails when the token is anywhere but memory and sessionStorage: in the URL,
// localStorage or a cookie.
func requireTokenKept(t *testing.T, tab context.Context, tok string) {
	t.Helper()
	where := evalJS[[]string](t, tab, fmt.Sprintf(`(() => {
		const tok = %s, out = [];
		if (location.href.includes(tok)) out.push('the URL');
		for (let i = 0; i < localStorage.length; i++) if (localStorage.getItem(localStorage.key(i)).includes(tok)) out.push('localStorage');
		if (document.cookie.includes(tok)) out.push('a cookie');
		return out;
	})()`, jsString(tok)))
	require.Empty(t, where, "the token is kept where it may leak")
}

// devSignIn signs in with the development one-click sign-in.
func devSignIn(t *testing.T, tab context.Context, base string, role model.Role, id string) {
	t.Helper()
	do(t, tab, "open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#dev-signin")))
	setValue(t, tab, "#dev-role", string(role))
	setValue(t, tab, "#dev-id", id)
	click(t, tab, "#dev-signin")
	waitJS(t, tab, "signed in as "+string(role), `document.querySelector('[data-role]')?.dataset.role === `+jsString(string(role)))
	jwt := `/eyJ[\w-]+\.[\w-]+\./`
	require.False(t, evalJS[bool](t, tab, fmt.Sprintf(`[...Array(localStorage.length).keys()].some(i => %s.test(localStorage.getItem(localStorage.key(i))))
		|| %[1]s.test(location.href) || %[1]s.test(document.cookie)`, jwt)), "a token in localStorage, the URL or a cookie")
}

// setValue sets an input's, textarea's or select's value as typing or choosing would, firing
// input and change events.
func setValue(t *testing.T, tab context.Context, sel, value string) {
	t.Helper()
	ok := evalJS[bool](t, tab, fmt.Sprintf(`(() => {
		const el = document.querySelector(%s);
		if (!el) return false;
		const proto = Object.getPrototypeOf(el);
		Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, %s);
		el.dispatchEvent(new Event('input', {bubbles: true}));
		el.dispatchEvent(new Event('change', {bubbles: true}));
		return el.value === %[2]s;
	})()`, jsString(sel), jsString(value)))
	require.True(t, ok, "could not set %s to %q (no such element, or no such option)", sel, value)
}

// setChecked sets a checkbox as a click would.
func setChecked(t *testing.T, tab context.Context, sel string, on bool) {
	t.Helper()
	waitJS(t, tab, sel, fmt.Sprintf(`!!document.querySelector(%s)`, jsString(sel)))
	if evalJS[bool](t, tab, fmt.Sprintf(`document.querySelector(%s).checked`, jsString(sel))) != on {
		click(t, tab, sel)
	}
	waitJS(t, tab, sel+" checked", fmt.Sprintf(`document.querySelector(%s).checked === %t`, jsString(sel), on))
}

// click clicks the element once it is visible and enabled.
func click(t *testing.T, tab context.Context, sel string) {
	t.Helper()
	waitJS(t, tab, sel+" enabled", fmt.Sprintf(`(() => { const el = document.querySelector(%s); return !!el && !el.disabled })()`, jsString(sel)))
	do(t, tab, "click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// ids lists the data-order-id of the rows under list, in page order.
func ids(t *testing.T, tab context.Context, list string) []string {
	t.Helper()
	return evalJS[[]string](t, tab, fmt.Sprintf(`[...document.querySelectorAll(%s)].map(e => e.dataset.orderId)`, jsString(list+" [data-order-id]")))
}

// newRow waits for a row under list whose id is not in before, and returns its id.
func newRow(t *testing.T, tab context.Context, list string, before []string) string {
	t.Helper()
	known, _ := json.Marshal(append([]string{}, before...))
	waitJS(t, tab, "a new row in "+list, fmt.Sprintf(`[...document.querySelectorAll(%s)].some(e => !%s.includes(e.dataset.orderId))`,
		jsString(list+" [data-order-id]"), known))
	for _, id := range ids(t, tab, list) {
		if !slices.Contains(before, id) {
			return id
		}
	}
	t.Fatal("the new row went away")
	return ""
}

// row is the selector of order id's row under list.
func row(list, id string) string { return list + " [data-order-id=" + cssQuote(id) + "]" }

// waitStatus waits until order id's row under list shows status.
func waitStatus(t *testing.T, tab context.Context, list, id, status string) {
	t.Helper()
	waitJS(t, tab, fmt.Sprintf("order %s %s in %s", id, status, list),
		fmt.Sprintf(`document.querySelector(%s)?.dataset.status === %s`, jsString(row(list, id)), jsString(status)))
}

// placeInPage fills the order form and submits it; it returns the new row's id.
func placeInPage(t *testing.T, tab context.Context, pizza string, qty int, region string) string {
	t.Helper()
	waitJS(t, tab, "region "+region+" offered", fmt.Sprintf(`[...document.querySelectorAll('#region option')].some(o => o.value === %s)`, jsString(region)))
	before := ids(t, tab, "#orders")
	if pizza != "" {
		setValue(t, tab, "#pizza", pizza)
	}
	setValue(t, tab, "#qty", fmt.Sprint(qty))
	setValue(t, tab, "#region", region)
	click(t, tab, "#place-order")
	return newRow(t, tab, "#orders", before)
}

// storeIDByName waits for the admin's store list to show a store named name and returns its id.
func storeIDByName(t *testing.T, tab context.Context, name string) string {
	t.Helper()
	find := fmt.Sprintf(`[...document.querySelectorAll('#stores [data-store-id]')].find(e => e.textContent.includes(%s))`, jsString(name))
	waitJS(t, tab, "store "+name+" listed", "!!"+find)
	return evalJS[string](t, tab, find+".dataset.storeId")
}

// registerInPage registers a store with the admin's form and returns its id.
func registerInPage(t *testing.T, tab context.Context, name, region string, open bool) string {
	t.Helper()
	setValue(t, tab, "#store-name", name)
	setValue(t, tab, "#store-region", region)
	setChecked(t, tab, "#store-open-new", open)
	click(t, tab, "#register-store")
	id := storeIDByName(t, tab, name)
	waitJS(t, tab, "store "+name+" open="+fmt.Sprint(open),
		fmt.Sprintf(`document.querySelector(%s)?.dataset.open === %s`, jsString("#stores [data-store-id="+cssQuote(id)+"]"), jsString(fmt.Sprint(open))))
	return id
}

// The seed's story across three browser contexts at once: the admin registers the stores; a
// customer (on a phone) places an order and, without reloading, sees it RECEIVED, then COOKED
// and DELIVERY_STARTED while the master, on whose board it appeared live and marked new, clicks
// "cooked"; a cancel; a NO_OPEN_STORE order; a STORE_BUSY order with its countdown (a store whose
// availability check hangs, so the breaker opens). Screenshots of every screen go to
// bin/screenshots/.
func TestConsoleSeedStory(t *testing.T) {
	t.Parallel()
	const busyRegion = "서초구" // its store's availability check never answers
	var sys *system
	storeURL, _ := storeProxy(t, func() string { return sys.env["STORE_ADDR"] }, func(r *http.Request, answer func()) {
		if r.URL.Query().Get("region") == busyRegion {
			<-r.Context().Done() // until the order service gives up
			return
		}
		answer()
	})
	sys, base := wholeSystem(t, map[string]string{
		"STORE_URL":           storeURL,
		"STORE_CHECK_TIMEOUT": "2s", // the busy store hangs this long; the open ones answer well within it, even on a loaded machine
		"BREAKER_TRIP_AFTER":  "1",
		"BREAKER_OPEN_FOR":    "4s",
	})
	b := newBrowser(t)
	admin, master, customer := b.tab(t, desktopW, desktopH), b.tab(t, desktopW, desktopH), b.tab(t, phoneW, phoneH)

	do(t, customer, "open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	screenshot(t, customer, "signin-phone")
	requireLabelled(t, customer, "signin-phone")

	// The admin registers the seed's stores: 강남점 open, 종로점 closed, and 서초점 (busy).
	devSignIn(t, admin, base, model.RoleAdmin, "admin-1")
	gangnam := registerInPage(t, admin, "강남점", "강남구", true)
	registerInPage(t, admin, "종로점", "종로구", false)
	registerInPage(t, admin, "서초점", busyRegion, true)
	screenshot(t, admin, "admin-stores")
	requireLabelled(t, admin, "admin-stores")

	signIn(t, master, base, model.RoleMaster, mint(t, model.RoleMaster, gangnam))
	do(t, master, "the board", chromedp.WaitVisible(chromedp.CSS("#board")))

	signIn(t, customer, base, model.RoleCustomer, mint(t, model.RoleCustomer, "story-1"))
	first := placeInPage(t, customer, "", 2, "강남구")
	waitStatus(t, customer, "#orders", first, "RECEIVED")

	// The master's board shows it without a reload, marked new; the master cooks it.
	waitJS(t, master, "the new order on the board, marked new",
		fmt.Sprintf(`document.querySelector(%s)?.dataset.new === 'true'`, jsString(row("#board", first))))
	screenshot(t, master, "master-board")
	requireLabelled(t, master, "master-board")
	click(t, master, row("#board", first)+" [data-action=cook]")
	waitJS(t, master, "cooked on the board", fmt.Sprintf(`['COOKED', 'DELIVERY_STARTED'].includes(document.querySelector(%s)?.dataset.status)`, jsString(row("#board", first))))

	// The customer sees each step, with when it happened, without reloading.
	waitStatus(t, customer, "#orders", first, "DELIVERY_STARTED")
	for _, step := range []string{"ORDERED", "RECEIVED", "COOKED", "DELIVERY_STARTED"} {
		waitJS(t, customer, "step "+step+" with its time", fmt.Sprintf(`!!document.querySelector(%s)?.getAttribute('datetime')`,
			jsString(row("#orders", first)+" [data-step="+step+"] time")))
	}
	require.Zero(t, evalJS[int](t, customer, fmt.Sprintf(`document.querySelectorAll(%s).length`, jsString(row("#orders", first)+" [data-action=cancel]"))),
		"a delivered order offers no cancel")
	screenshot(t, customer, "customer-phone")
	requireLabelled(t, customer, "customer-phone")

	// A cancel, while the store has not cooked it yet: the board shows it cancelled too.
	second := placeInPage(t, customer, "", 1, "강남구")
	waitStatus(t, customer, "#orders", second, "RECEIVED")
	waitJS(t, master, "the second order on the board", fmt.Sprintf(`!!document.querySelector(%s)`, jsString(row("#board", second))))
	click(t, customer, row("#orders", second)+" [data-action=cancel]")
	waitStatus(t, customer, "#orders", second, "CANCELLED")
	waitStatus(t, master, "#board", second, "CANCELLED")

	// No open store in 종로구: said plainly.
	closed := placeInPage(t, customer, "", 1, "종로구")
	waitStatus(t, customer, "#orders", closed, "REJECTED")
	waitJS(t, customer, "NO_OPEN_STORE shown", fmt.Sprintf(`!!document.querySelector(%s)`, jsString(row("#orders", closed)+" [data-reason=NO_OPEN_STORE]")))

	// The busy store: STORE_BUSY with a countdown from retryAfterSeconds, then a re-order.
	busy := placeInPage(t, customer, "", 1, busyRegion)
	waitStatus(t, customer, "#orders", busy, "REJECTED")
	busyRow := row("#orders", busy)
	waitJS(t, customer, "STORE_BUSY with a countdown", fmt.Sprintf(`(() => {
		const r = document.querySelector(%s);
		const c = r?.querySelector('[data-countdown]');
		return !!r?.querySelector('[data-reason=STORE_BUSY]') && !!c && /^\d+$/.test(c.textContent.trim()) && +c.textContent.trim() >= 1;
	})()`, jsString(busyRow)))
	screenshot(t, customer, "customer-store-busy-phone")
	startCount := evalJS[int](t, customer, fmt.Sprintf(`+document.querySelector(%s).textContent.trim()`, jsString(busyRow+" [data-countdown]")))
	waitJS(t, customer, "the countdown going down", fmt.Sprintf(`+document.querySelector(%s)?.textContent.trim() < %d`, jsString(busyRow+" [data-countdown]"), startCount))
	reorder := busyRow + " [data-action=reorder]"
	waitJS(t, customer, "re-order enabled at zero", fmt.Sprintf(`(() => { const b = document.querySelector(%s); return !!b && !b.disabled })()`, jsString(reorder)))
	// The re-order places the same order again: a new row (the breaker is half-open by now, and
	// the store still hangs, so it is refused again, as STORE_BUSY).
	before := ids(t, customer, "#orders")
	click(t, customer, reorder)
	again := newRow(t, customer, "#orders", before)
	waitStatus(t, customer, "#orders", again, "REJECTED")
	waitJS(t, customer, "the re-order refused as STORE_BUSY", fmt.Sprintf(`!!document.querySelector(%s)`, jsString(row("#orders", again)+" [data-reason=STORE_BUSY]")))

	// The customer's desktop view of the same page.
	desk := b.tab(t, desktopW, desktopH)
	signIn(t, desk, base, model.RoleCustomer, mint(t, model.RoleCustomer, "story-1"))
	waitStatus(t, desk, "#orders", first, "DELIVERY_STARTED")
	screenshot(t, desk, "customer-desktop")
	requireLabelled(t, desk, "customer-desktop")

	// The admin looks the first order up: its timeline, event by event.
	click(t, admin, `a[href="/admin/orders"]`)
	setValue(t, admin, "#lookup-order", first)
	click(t, admin, "#lookup")
	for _, ev := range []string{"order.placed", "store.order_received", "store.order_cooked", "delivery.started"} {
		waitJS(t, admin, "timeline "+ev, fmt.Sprintf(`!!document.querySelector(%s)`, jsString("#timeline [data-event-type="+cssQuote(ev)+"]")))
	}
	screenshot(t, admin, "admin-order-timeline")
	requireLabelled(t, admin, "admin-order-timeline")
}

// The admin's system page: every service's backlog, lag and dead letters, and the breakers,
// refreshed without a reload; and an agent finds a customer and orders for them.
func TestConsoleAdminSystemAndAgent(t *testing.T) {
	t.Parallel()
	_, base := wholeSystem(t, nil)
	registerStore(t, base, "강남점", "강남구")
	placed(t, base, mint(t, model.RoleCustomer, "agent-cust-7"), "agent-cust-7", "강남구")

	b := newBrowser(t)
	admin := b.tab(t, desktopW, desktopH)
	signIn(t, admin, base, model.RoleAdmin, mint(t, model.RoleAdmin, "ops"))
	openSystemPage(t, admin)
	for _, svc := range []string{"order", "store", "delivery", "customercenter"} {
		waitJS(t, admin, svc+" ready", fmt.Sprintf(`document.querySelector(%s)?.dataset.ready === 'true'`, jsString("#system [data-service="+svc+"]")))
	}
	waitJS(t, admin, "the store-availability breaker closed", `document.querySelector('#system [data-breaker=store-availability]')?.dataset.state === 'CLOSED'`)
	screenshot(t, admin, "admin-system")
	requireLabelled(t, admin, "admin-system")

	agent := b.tab(t, desktopW, desktopH)
	signIn(t, agent, base, model.RoleAgent, mint(t, model.RoleAgent, "agent-1"))
	setValue(t, agent, "#customer-search", "agent-cust")
	sel := "[data-customer-id=" + cssQuote("agent-cust-7") + "]"
	click(t, agent, sel)
	waitJS(t, agent, "the customer's myPage", `document.querySelectorAll('#orders [data-order-id]').length === 1`)
	id := placeInPage(t, agent, "", 3, "강남구")
	waitStatus(t, agent, "#orders", id, "RECEIVED")
	screenshot(t, agent, "agent")
	requireLabelled(t, agent, "agent")
	// The order is the customer's, at the API too.
	var o struct{ CustomerID string }
	gql(t, base, mint(t, model.RoleAdmin, "ops"), `query($id: ID!) { order(id: $id) { customerId } }`, map[string]any{"id": id}).decode(t, "order", &o)
	require.Equal(t, "agent-cust-7", o.CustomerID)
	// The agent cancels it for them.
	click(t, agent, row("#orders", id)+" [data-action=cancel]")
	waitStatus(t, agent, "#orders", id, "CANCELLED")
}

// The console without a mouse, in English: a customer switches the language, then places an order
// with the keyboard alone (focus the quantity, type, Enter submits the form); a master closes and
// reopens the store with the keyboard (Space on the focused switch), and the API agrees.
func TestConsoleKeyboardAndEnglish(t *testing.T) {
	t.Parallel()
	_, base := wholeSystem(t, nil)
	storeID := registerStore(t, base, "강남점", "강남구")
	b := newBrowser(t)

	customer := b.tab(t, phoneW, phoneH)
	signIn(t, customer, base, model.RoleCustomer, mint(t, model.RoleCustomer, "kbd-1"))
	require.Equal(t, "ko", evalJS[string](t, customer, `document.documentElement.lang`))
	setValue(t, customer, "#lang", "en")
	waitJS(t, customer, "the page in English", `document.documentElement.lang === 'en' && document.querySelector('#place-order')?.textContent.trim() === 'Order'`)
	waitJS(t, customer, "region offered", `[...document.querySelectorAll('#region option')].some(o => o.value === '강남구')`)
	before := ids(t, customer, "#orders")
	do(t, customer, "order by keyboard", chromedp.Focus(chromedp.CSS("#qty")),
		chromedp.KeyEvent(kb.End+"\b\b\b2"), chromedp.KeyEvent(kb.Enter))
	id := newRow(t, customer, "#orders", before)
	waitStatus(t, customer, "#orders", id, "RECEIVED")
	var o struct{ Qty int }
	gql(t, base, mint(t, model.RoleAdmin, "ops"), `query($id: ID!) { order(id: $id) { qty } }`, map[string]any{"id": id}).decode(t, "order", &o)
	require.Equal(t, 2, o.Qty, "the quantity typed")
	screenshot(t, customer, "customer-phone-en")

	master := b.tab(t, desktopW, desktopH)
	signIn(t, master, base, model.RoleMaster, mint(t, model.RoleMaster, storeID))
	isOpen := func() bool {
		var stores []struct {
			ID   string
			Open bool
		}
		gql(t, base, mint(t, model.RoleAdmin, "ops"), `query { stores { id open } }`, nil).decode(t, "stores", &stores)
		for _, st := range stores {
			if st.ID == storeID {
				return st.Open
			}
		}
		t.Fatalf("store %s not listed", storeID)
		return false
	}
	for _, want := range []bool{false, true} {
		waitJS(t, master, "the open switch", fmt.Sprintf(`document.querySelector('#store-open')?.checked === %t && !document.querySelector('#store-open').disabled`, !want))
		do(t, master, "toggle the store by keyboard", chromedp.Focus(chromedp.CSS("#store-open")), chromedp.KeyEvent(" "))
		waitJS(t, master, "the switch moved", fmt.Sprintf(`document.querySelector('#store-open').checked === %t`, want))
		require.Eventually(t, func() bool { return isOpen() == want }, 10*time.Second, 20*time.Millisecond, "the store open=%t at the API", want)
	}
}

// openSystemPage goes to the admin's system page, by its link.
func openSystemPage(t *testing.T, tab context.Context) {
	t.Helper()
	click(t, tab, `a[href="/admin/system"]`)
	do(t, tab, "the system page", chromedp.WaitVisible(chromedp.CSS("#system")))
}

// Each role sees only what it may: a customer's console never shows another customer's orders,
// a master's board never another store's; and the API refuses them the same.
func TestConsoleShowsEachRoleOnlyItsOwn(t *testing.T) {
	t.Parallel()
	_, base := wholeSystem(t, nil)
	storeA := registerStore(t, base, "강남점", "강남구")
	storeB := registerStore(t, base, "마포점", "마포구")

	b := newBrowser(t)
	alice, masterA := b.tab(t, phoneW, phoneH), b.tab(t, desktopW, desktopH)
	signIn(t, alice, base, model.RoleCustomer, mint(t, model.RoleCustomer, "alice"))
	signIn(t, masterA, base, model.RoleMaster, mint(t, model.RoleMaster, storeA))

	bobTok := mint(t, model.RoleCustomer, "bob")
	bobs := placed(t, base, bobTok, "bob", "마포구")
	mine := placeInPage(t, alice, "", 1, "강남구")
	waitStatus(t, alice, "#orders", mine, "RECEIVED")
	waitJS(t, masterA, "alice's order on store A's board", fmt.Sprintf(`!!document.querySelector(%s)`, jsString(row("#board", mine))))

	// bob's order reached its store (B) before alice's was received by A? Not necessarily: wait
	// for bob's to be received at the API, then one more push to alice and to store A, so any
	// push of bob's that was coming has had its chance.
	require.Eventually(t, func() bool {
		var o struct{ Status string }
		gql(t, base, bobTok, `query($id: ID!) { order(id: $id) { status } }`, map[string]any{"id": bobs.ID}).decode(t, "order", &o)
		return o.Status == "RECEIVED"
	}, 20*time.Second, 20*time.Millisecond)
	marker := placeInPage(t, alice, "", 1, "강남구")
	waitJS(t, masterA, "the marker order on store A's board", fmt.Sprintf(`!!document.querySelector(%s)`, jsString(row("#board", marker))))
	require.Equal(t, []string{marker, mine}, sorted(ids(t, alice, "#orders"), marker, mine), "alice sees exactly her orders")
	require.NotContains(t, ids(t, masterA, "#board"), bobs.ID, "store A's board never shows store B's order")
	require.NotContains(t, evalJS[string](t, alice, `document.querySelector('#orders').innerText`), "마포구", "nothing of bob's in alice's orders")

	// The API refuses the same.
	aliceTok := mint(t, model.RoleCustomer, "alice")
	require.Equal(t, "FORBIDDEN", gql(t, base, aliceTok, `query { myPage(customerId: "bob") { id } }`, nil).code())
	require.Equal(t, "FORBIDDEN", gql(t, base, mint(t, model.RoleMaster, storeA), `query($s: ID!) { storeOrders(storeId: $s) { id } }`,
		map[string]any{"s": storeB}).code())
	ws := connect(t, base, mint(t, model.RoleMaster, storeA))
	ws.subscribe(t, "b", `subscription($s: ID!) { storeOrders(storeId: $s) { id } }`, map[string]any{"s": storeB})
	m := ws.next(t, 10*time.Second)
	require.Equal(t, "next", m.Type, "a refused subscription answers its error, then completes: %s", m.Payload)
	require.Contains(t, string(m.Payload), `"code":"FORBIDDEN"`)
	require.Contains(t, string(m.Payload), `"data":null`)
}

// sorted returns the ids that are in want's set, in want's order, followed by the others: a
// stable view of a list for comparison whatever order the page keeps.
func sorted(got []string, want ...string) []string {
	var out []string
	for _, w := range want {
		if slices.Contains(got, w) {
			out = append(out, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			out = append(out, g)
		}
	}
	return out
}

// After a dropped connection the console reconnects and resumes with what it has seen: the
// orders placed and changed while it was cut off all show, each once, in their latest state.
// The socket is cut by a TCP proxy between the browser and the BFF.
func TestConsoleResumesAfterTheSocketIsCut(t *testing.T) {
	t.Parallel()
	_, base := wholeSystem(t, nil)
	storeID := registerStore(t, base, "강남점", "강남구")
	proxy := outboxtest.NewProxy(t, strings.TrimPrefix(base, "http://"))
	viaProxy := "http://" + proxy.Addr()

	b := newBrowser(t)
	tab := b.tab(t, phoneW, phoneH)
	signIn(t, tab, viaProxy, model.RoleCustomer, mint(t, model.RoleCustomer, "cut-1"))
	tok := mint(t, model.RoleCustomer, "cut-1")
	master := mint(t, model.RoleMaster, storeID)
	before := placed(t, base, tok, "cut-1", "강남구")
	waitStatus(t, tab, "#orders", before.ID, "RECEIVED")
	waitJS(t, tab, "connected", `document.querySelector('[data-connection]')?.dataset.connection === 'open'`)

	proxy.Stop() // the socket drops, and new connections are refused until Start
	waitJS(t, tab, "the page says it lost the connection", `document.querySelector('[data-connection]')?.dataset.connection !== 'open'`)
	gql(t, base, master, cookMutation, map[string]any{"id": before.ID})
	during := placed(t, base, tok, "cut-1", "강남구")
	require.Eventually(t, func() bool {
		var rows []struct{ OrderID, Status string }
		gql(t, base, tok, `query { myPage(customerId: "cut-1") { orderId status } }`, nil).decode(t, "myPage", &rows)
		return len(rows) == 2 && rows[0].Status == "RECEIVED" && rows[1].Status == "DELIVERY_STARTED"
	}, 20*time.Second, 20*time.Millisecond, "the orders changed while the page was cut off")
	require.NoError(t, proxy.Start())

	waitJS(t, tab, "connected again", `document.querySelector('[data-connection]')?.dataset.connection === 'open'`)
	waitStatus(t, tab, "#orders", before.ID, "DELIVERY_STARTED")
	waitStatus(t, tab, "#orders", during.ID, "RECEIVED")
	got := ids(t, tab, "#orders")
	require.ElementsMatch(t, []string{before.ID, during.ID}, got, "each order shown once")
}

// Every byte the console and GraphiQL load comes from the server itself (a call center on a
// closed network works), under a Content-Security-Policy that the pages never violate.
func TestConsoleLoadsNothingFromElsewhere(t *testing.T) {
	t.Parallel()
	_, base := wholeSystem(t, nil)
	b := newBrowser(t)
	for _, page := range []struct{ path, ready string }{
		{"/", "#token"},
		{"/playground", ".graphiql-container"},
	} {
		tab := b.tab(t, desktopW, desktopH)
		var (
			mu       sync.Mutex
			requests []string
			failures []string
			console  []string
		)
		// Start the tab, then watch its requests, failures and console before the navigation.
		do(t, tab, "start", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			_, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{})
			return err
		}))
		require.NoError(t, chromedp.Listen(tab, func(ev any) {
			mu.Lock()
			defer mu.Unlock()
			switch e := ev.(type) {
			case *network.EventRequestWillBeSent:
				requests = append(requests, e.Request.URL)
			case *network.EventLoadingFailed:
				failures = append(failures, e.ErrorText)
			case *cdplog.EventEntryAdded:
				if e.Entry.Level == cdplog.EntryLevelError {
					console = append(console, e.Entry.Text)
				}
			case *cdpruntime.EventExceptionThrown:
				console = append(console, e.ExceptionDetails.Text)
			}
		}))
		do(t, tab, "open "+page.path, chromedp.Navigate(base+page.path), chromedp.WaitVisible(chromedp.CSS(page.ready)))
		if page.path == "/playground" {
			// GraphiQL fetched the schema (introspection works in development) and shows it.
			// GraphiQL's editors are up and its spinner gone: the schema was fetched.
			waitJS(t, tab, "GraphiQL's editors", `!!document.querySelector('.graphiql-container .monaco-editor') && !document.querySelector('.graphiql-spinner')`)
			require.NotContains(t, evalJS[string](t, tab, `document.body.innerText`), "Error fetching schema")
		}
		screenshot(t, tab, "page"+strings.ReplaceAll(page.path, "/", "-"))
		mu.Lock()
		for _, u := range requests {
			require.True(t, strings.HasPrefix(u, base+"/") || strings.HasPrefix(u, "ws"+strings.TrimPrefix(base, "http")+"/") ||
				strings.HasPrefix(u, "data:") || strings.HasPrefix(u, "blob:"), "%s loaded %s from elsewhere", page.path, u)
		}
		require.Empty(t, failures, "%s: requests that failed", page.path)
		require.Empty(t, console, "%s: errors in the console or uncaught exceptions (a Content-Security-Policy violation is one)", page.path)
		mu.Unlock()
	}
}

// requireLabelled fails when a control on the tab's page has no accessible name (a <label>, an
// aria-label or aria-labelledby, a title, or a button's own text): a screen reader could not
// say what it is.
func requireLabelled(t *testing.T, tab context.Context, screen string) {
	t.Helper()
	unnamed := evalJS[[]string](t, tab, `[...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')].filter(e => {
		const byRef = (e.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean)
			.map(id => document.getElementById(id)?.textContent.trim()).some(Boolean);
		const own = e.tagName === 'BUTTON' && e.textContent.trim();
		return !(e.labels?.length && [...e.labels].some(l => l.textContent.trim())) && !e.getAttribute('aria-label')?.trim() && !byRef && !e.title && !own;
	}).map(e => e.outerHTML.slice(0, 120))`)
	require.Empty(t, unnamed, "%s: controls without a label", screen)
}
