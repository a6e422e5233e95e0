package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/httpapi"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/services/customercenter"
	"github.com/1588-pizza/pizza/services/order"
	"github.com/1588-pizza/pizza/services/store"
)

// The fakes' world: two stores, the master's own (11) and another (12); customer 1's
// order in the own store (21) and customer 2's in the other (22). The fakes answer as
// the services would, and change nothing: every call can be made again.
const (
	ownStore, otherStore = "11", "12"
	ownOrder, otherOrder = "21", "22"
)

var fakeAt = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func fakeBackends() Backends {
	svc := fakeService{}
	return Backends{
		Orders: fakeOrders{
			ownOrder:   {ID: ownOrder, CustomerID: "1", Region: "강남구", StoreID: ownStore, Status: lifecycle.Received, PlacedAt: fakeAt, UpdatedAt: fakeAt},
			otherOrder: {ID: otherOrder, CustomerID: "2", Region: "종로구", StoreID: otherStore, Status: lifecycle.Received, PlacedAt: fakeAt, UpdatedAt: fakeAt},
		},
		Stores: fakeStores{
			ownStore:   {ID: ownStore, Name: "강남점", Region: "강남구", Open: true},
			otherStore: {ID: otherStore, Name: "종로점", Region: "종로구", Open: true},
		},
		CustomerCenter: fakeCustomerCenter{},
		Services:       map[string]ServiceAPI{"order": svc, "store": svc, "delivery": svc, "customercenter": svc},
	}
}

type fakeOrders map[string]order.Order

func (f fakeOrders) Place(_ context.Context, in order.PlaceInput) (order.Order, error) {
	return order.Order{ID: "23", CustomerID: in.CustomerID, Pizza: in.Pizza, Qty: in.Qty, Region: in.Region,
		Status: lifecycle.Ordered, PlacedAt: fakeAt, UpdatedAt: fakeAt}, nil
}

func (f fakeOrders) Get(_ context.Context, id string) (order.Order, error) {
	if o, ok := f[id]; ok {
		return o, nil
	}
	return order.Order{}, errs.Errorf(errs.NotFound, "no order %s", id)
}

func (f fakeOrders) Cancel(ctx context.Context, id string) (order.Order, error) {
	o, err := f.Get(ctx, id)
	o.Status = lifecycle.Cancelled
	return o, err
}

type fakeStores map[string]store.Store

func (f fakeStores) Register(_ context.Context, in store.RegisterInput) (store.Store, error) {
	return store.Store{ID: "13", Name: in.Name, Region: in.Region, Open: *in.Open}, nil
}

func (f fakeStores) SetOpen(ctx context.Context, id string, open bool) (store.Store, error) {
	st, err := f.Get(ctx, id)
	st.Open = open
	return st, err
}

func (f fakeStores) List(context.Context, string) ([]store.Store, error) {
	return []store.Store{f[ownStore], f[otherStore]}, nil
}

func (f fakeStores) Get(_ context.Context, id string) (store.Store, error) {
	if st, ok := f[id]; ok {
		return st, nil
	}
	return store.Store{}, errs.Errorf(errs.NotFound, "no store %s", id)
}

func (f fakeStores) Board(ctx context.Context, storeID string) ([]store.Order, error) {
	return f.Orders(ctx, storeID, "")
}

func (f fakeStores) Orders(ctx context.Context, storeID string, _ lifecycle.Status) ([]store.Order, error) {
	if _, err := f.Get(ctx, storeID); err != nil {
		return nil, err
	}
	return []store.Order{storeOrderOf(storeID)}, nil
}

// storeOrderOf is the one order a fake store holds: 21 in 11, 22 in 12.
func storeOrderOf(storeID string) store.Order {
	id := ownOrder
	if storeID == otherStore {
		id = otherOrder
	}
	return store.Order{OrderID: id, StoreID: storeID, Pizza: "p", Qty: 1, Status: lifecycle.Received, ReceivedAt: fakeAt, Version: 1}
}

func (f fakeStores) Order(_ context.Context, orderID string) (store.Order, error) {
	switch orderID {
	case ownOrder:
		return storeOrderOf(ownStore), nil
	case otherOrder:
		return storeOrderOf(otherStore), nil
	}
	return store.Order{}, errs.Errorf(errs.NotFound, "no store order %s", orderID)
}

func (f fakeStores) MarkCooked(ctx context.Context, orderID string) (store.Order, error) {
	o, err := f.Order(ctx, orderID)
	o.Status, o.Version = lifecycle.Cooked, o.Version+1
	return o, err
}

// fakeCustomerCenter holds one row for each customer: their order.
type fakeCustomerCenter struct{}

func (fakeCustomerCenter) MyPage(_ context.Context, customerID string, _ int) ([]customercenter.Row, error) {
	var row customercenter.Row
	row.OrderID, row.CustomerID, row.Status, row.Pizza, row.PlacedAt = "o-of-"+customerID, customerID, lifecycle.Received, "p", fakeAt
	row.UpdatedAt, row.Version = fakeAt, 1
	return []customercenter.Row{row}, nil
}

func (fakeCustomerCenter) Customers(context.Context, string, int) ([]customercenter.Customer, error) {
	return []customercenter.Customer{{ID: "1", Orders: 1, LastOrderAt: fakeAt}}, nil
}

// fakeService is a service's internal API with nothing to tell: ready, no dead letters, no events.
// answers, when set, are its answers instead, by "METHOD path" (an error answers with itself).
type fakeService struct{ answers map[string]any }

// The methods answer for the routes the real client calls (httpapi.Client).
func (f fakeService) Timeline(_ context.Context, orderID string) (tl outbox.Timeline, err error) {
	return tl, f.do(http.MethodGet, "/timeline/"+url.PathEscape(orderID), &tl)
}

func (f fakeService) Status(context.Context) (st httpapi.Status, err error) {
	return st, f.do(http.MethodGet, "/status", &st)
}

func (f fakeService) DeadLetters(_ context.Context, limit int) (list []outbox.DeadLetter, err error) {
	return list, f.do(http.MethodGet, "/dead-letters?limit="+strconv.Itoa(limit), &list)
}

func (f fakeService) ReplayDeadLetters(context.Context, []string, bool) ([]string, error) {
	var out struct{ IDs []string }
	return out.IDs, f.do(http.MethodPost, "/dead-letters/replay", &out)
}

func (f fakeService) DiscardDeadLetters(context.Context, []string) ([]string, error) {
	var out struct{ IDs []string }
	return out.IDs, f.do(http.MethodPost, "/dead-letters/discard", &out)
}

func (f fakeService) do(method, path string, out any) error {
	if a, ok := f.answers[method+" "+path]; ok {
		if err, isErr := a.(error); isErr {
			return err
		}
		return json.Unmarshal([]byte(a.(string)), out)
	}
	var answer string
	switch {
	case method == http.MethodGet && path == "/status":
		answer = `{"ready": true}`
	case method == http.MethodGet && strings.HasPrefix(path, "/dead-letters?"):
		answer = `[]`
	case method == http.MethodGet && strings.HasPrefix(path, "/timeline/"):
		answer = `{"written": [], "consumed": []}`
	case method == http.MethodPost && (path == "/dead-letters/replay" || path == "/dead-letters/discard"):
		answer = `{"ids": []}`
	default:
		return fmt.Errorf("fakeService: no %s %s", method, path)
	}
	return json.Unmarshal([]byte(answer), out)
}

// authzResponse is a GraphQL answer as the matrix reads it.
type authzResponse struct {
	data map[string]any
	code string // the first error's extensions.code ("" without errors)
	errs string // the errors, to show
}

// postAs sends query with vars as tok (no token if empty) through gqlgen's client.
func postAs(t *testing.T, c *client.Client, tok, query string, vars map[string]any) authzResponse {
	t.Helper()
	opts := []client.Option{client.Path("/graphql")}
	if tok != "" {
		opts = append(opts, client.AddHeader("Authorization", "Bearer "+tok))
	}
	for k, v := range vars {
		opts = append(opts, client.Var(k, v))
	}
	resp, err := c.RawPost(query, opts...)
	require.NoError(t, err)
	out := authzResponse{errs: string(resp.Errors)}
	out.data, _ = resp.Data.(map[string]any)
	if len(resp.Errors) > 0 {
		var errs []struct{ Extensions struct{ Code string } }
		require.NoError(t, json.Unmarshal(resp.Errors, &errs))
		require.NotEmpty(t, errs)
		out.code = errs[0].Extensions.Code
	}
	return out
}

// The authorization matrix: every operation, for every role, on its own object and another's
// (and never without a token), then the subscriptions for every role over websocket. An "ok" is
// an answer without errors and with data; "null" is no error and no object (another's order is,
// to its caller, no order at all); otherwise the error's code. cmd/pizza keeps one end-to-end
// check per role, over the real services.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	f := newWSFixtureOver(t, fakeBackends(), time.Minute)
	c := client.New(NewHandler(ServerConfig{}, f.auth, fakeBackends(), f.hub))
	mint := func(role model.Role, id string) string {
		tok, err := f.auth.Mint(role, id, time.Hour)
		require.NoError(t, err)
		return tok
	}
	tokens := map[model.Role]string{
		model.RoleCustomer: mint(model.RoleCustomer, "1"),
		model.RoleAgent:    mint(model.RoleAgent, ""),
		model.RoleMaster:   mint(model.RoleMaster, ownStore),
		model.RoleAdmin:    mint(model.RoleAdmin, ""),
	}
	pick := func(isOwn bool, a, b string) string {
		if isOwn {
			return a
		}
		return b
	}
	const ok, null = "", "null"
	adminOnly := map[model.Role][2]string{
		model.RoleCustomer: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAgent: {"FORBIDDEN", "FORBIDDEN"},
		model.RoleMaster: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAdmin: {ok, ok},
	}
	ops := []struct {
		name  string
		query string
		vars  func(isOwn bool) map[string]any
		// want per role: own object, another's object
		want map[model.Role][2]string
	}{
		{"placeOrder", `mutation($in: PlaceOrderInput!) { placeOrder(input: $in) { id } }`, func(isOwn bool) map[string]any {
			return map[string]any{"in": map[string]any{"customerId": pick(isOwn, "1", "2"), "pizza": "하와이안피자", "qty": 1, "region": "강남구"}}
		}, map[model.Role][2]string{
			model.RoleCustomer: {ok, "FORBIDDEN"}, model.RoleAgent: {ok, ok},
			model.RoleMaster: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAdmin: {ok, ok},
		}},
		{"cancelOrder", `mutation($id: ID!) { cancelOrder(orderId: $id) { id status } }`, func(isOwn bool) map[string]any {
			return map[string]any{"id": pick(isOwn, ownOrder, otherOrder)}
		}, map[model.Role][2]string{
			model.RoleCustomer: {ok, "NOT_FOUND"}, model.RoleAgent: {ok, ok},
			model.RoleMaster: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAdmin: {ok, ok},
		}},
		{"order", `query($id: ID!) { order(id: $id) { id } }`, func(isOwn bool) map[string]any {
			return map[string]any{"id": pick(isOwn, ownOrder, otherOrder)}
		}, map[model.Role][2]string{
			model.RoleCustomer: {ok, null}, model.RoleAgent: {ok, ok},
			model.RoleMaster: {ok, null}, model.RoleAdmin: {ok, ok},
		}},
		{"myPage", `query($c: ID!) { myPage(customerId: $c) { orderId } }`, func(isOwn bool) map[string]any {
			return map[string]any{"c": pick(isOwn, "1", "2")}
		}, map[model.Role][2]string{
			model.RoleCustomer: {ok, "FORBIDDEN"}, model.RoleAgent: {ok, ok},
			model.RoleMaster: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAdmin: {ok, ok},
		}},
		{"stores", `{ stores { id } }`, nil, map[model.Role][2]string{
			model.RoleCustomer: {ok, ok}, model.RoleAgent: {ok, ok}, model.RoleMaster: {ok, ok}, model.RoleAdmin: {ok, ok},
		}},
		{"storeOrders", `query($s: ID!) { storeOrders(storeId: $s) { orderId } }`, func(isOwn bool) map[string]any {
			return map[string]any{"s": pick(isOwn, ownStore, otherStore)}
		}, map[model.Role][2]string{
			model.RoleCustomer: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAgent: {"FORBIDDEN", "FORBIDDEN"},
			model.RoleMaster: {ok, "FORBIDDEN"}, model.RoleAdmin: {ok, ok},
		}},
		{"customers", `{ customers { id orders lastOrderAt } }`, nil, map[model.Role][2]string{
			model.RoleCustomer: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAgent: {ok, ok},
			model.RoleMaster: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAdmin: {ok, ok},
		}},
		{"systemStatus", `{ systemStatus { at services { name ready } } }`, nil, adminOnly},
		{"orderTimeline", `query($id: ID!) { orderTimeline(orderId: $id) { eventId } }`, func(isOwn bool) map[string]any {
			return map[string]any{"id": pick(isOwn, ownOrder, otherOrder)}
		}, adminOnly},
		{"deadLetters", `{ deadLetters { id } }`, nil, adminOnly},
		{"replayDeadLetters", `mutation { replayDeadLetters(service: "delivery") { count } }`, nil, adminOnly},
		{"discardDeadLetters", `mutation { discardDeadLetters(service: "delivery", ids: ["delivery:1"]) { count } }`, nil, adminOnly},
		{"markCooked", `mutation($id: ID!) { markCooked(orderId: $id) { orderId storeId status } }`, func(isOwn bool) map[string]any {
			return map[string]any{"id": pick(isOwn, ownOrder, otherOrder)}
		}, map[model.Role][2]string{
			model.RoleCustomer: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAgent: {"FORBIDDEN", "FORBIDDEN"},
			model.RoleMaster: {ok, "NOT_FOUND"}, model.RoleAdmin: {ok, ok},
		}},
		{"registerStore", `mutation { registerStore(input: {name: "새점", region: "마포구", open: true}) { id name region open } }`, nil, adminOnly},
		{"setStoreOpen", `mutation($s: ID!) { setStoreOpen(storeId: $s, open: true) { id } }`, func(isOwn bool) map[string]any {
			return map[string]any{"s": pick(isOwn, ownStore, otherStore)}
		}, map[model.Role][2]string{
			model.RoleCustomer: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAgent: {"FORBIDDEN", "FORBIDDEN"},
			model.RoleMaster: {ok, "FORBIDDEN"}, model.RoleAdmin: {ok, ok},
		}},
	}
	for _, o := range ops {
		vars := o.vars
		if vars == nil {
			vars = func(bool) map[string]any { return nil }
		}
		for role, want := range o.want {
			for i, isOwn := range []bool{true, false} {
				resp := postAs(t, c, tokens[role], o.query, vars(isOwn))
				what := fmt.Sprintf("%s as %s on %s object", o.name, role, pick(isOwn, "own", "another's"))
				switch want[i] {
				case ok:
					require.Empty(t, resp.errs, what)
					require.NotNil(t, resp.data[o.name], what)
				case null:
					require.Empty(t, resp.errs, what)
					require.Contains(t, resp.data, o.name, what)
					require.Nil(t, resp.data[o.name], what)
				default:
					require.Equal(t, want[i], resp.code, "%s: %s", what, resp.errs)
				}
			}
		}
		// No token at all is never enough.
		require.Equal(t, "UNAUTHENTICATED", postAs(t, c, "", o.query, vars(true)).code, "%s without a token", o.name)
	}

	// The subscriptions, over websocket, each with seen (so that it starts with a replay, or its
	// refusal): a store's board, then myPage.
	subscriptions := []struct {
		name, query, arg string
		own, other       string
		want             map[model.Role][2]string
	}{
		{"storeOrders", `subscription($a: ID!, $seen: [SeenVersion!]) { storeOrders(storeId: $a, seen: $seen) { orderId storeId } }`,
			"storeId", ownStore, otherStore, map[model.Role][2]string{
				model.RoleCustomer: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAgent: {"FORBIDDEN", "FORBIDDEN"},
				model.RoleMaster: {ok, "FORBIDDEN"}, model.RoleAdmin: {ok, ok},
			}},
		{"myPage", `subscription($a: ID!, $seen: [SeenVersion!]) { myPage(customerId: $a, seen: $seen) { orderId customerId } }`,
			"customerId", "1", "2", map[model.Role][2]string{
				model.RoleCustomer: {ok, "FORBIDDEN"}, model.RoleAgent: {ok, ok},
				model.RoleMaster: {"FORBIDDEN", "FORBIDDEN"}, model.RoleAdmin: {ok, ok},
			}},
	}
	for _, s := range subscriptions {
		for role, want := range s.want {
			for i, object := range []string{s.own, s.other} {
				what := fmt.Sprintf("%s subscription as %s for %s %s", s.name, role, s.arg, object)
				ws := f.connectWith(t, tokens[role])
				ws.subscribeTo("s", s.query, map[string]any{"a": object, "seen": []any{}})
				m := ws.read()
				require.Equal(t, "next", m.Type, "%s: %s", what, m.Payload)
				var p struct {
					Data   map[string]map[string]string
					Errors []struct{ Extensions struct{ Code string } }
				}
				require.NoError(t, json.Unmarshal(m.Payload, &p), what)
				if want[i] == ok {
					require.Empty(t, p.Errors, "%s: %s", what, m.Payload)
					require.Equal(t, object, p.Data[s.name][s.arg], "%s: the replay of its rows", what)
				} else {
					require.Nil(t, p.Data, "%s: nothing of another's: %s", what, m.Payload)
					require.Len(t, p.Errors, 1, what)
					require.Equal(t, want[i], p.Errors[0].Extensions.Code, what)
					require.Equal(t, "complete", ws.read().Type, what)
				}
				require.NoError(t, ws.conn.Close(1000, ""), what)
			}
		}
	}
}
