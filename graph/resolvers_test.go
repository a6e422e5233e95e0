package graph

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/errs"
	"github.com/1588-pizza/pizza/graph/model"
)

// adminClient is gqlgen's client on the BFF over be, with an admin's token.
func adminClient(t *testing.T, be Backends) (*client.Client, string) {
	t.Helper()
	f := newWSFixtureOver(t, be, time.Minute)
	tok, err := f.auth.Mint(model.RoleAdmin, "", time.Hour)
	require.NoError(t, err)
	return client.New(NewHandler(ServerConfig{}, f.auth, be, f.hub)), tok
}

// orderTimeline joins what each service wrote and consumed by eventId, oldest first, each
// event's consumers in the order they consumed it.
func TestOrderTimelineJoinsTheServicesAnswers(t *testing.T) {
	t.Parallel()
	be := fakeBackends()
	be.Services["order"] = fakeService{answers: map[string]any{"GET /timeline/21": `{
		"written": [{"eventId": "e2", "type": "order.cancelled", "producer": "order", "writtenAt": "2026-12-04T12:00:02Z", "attempts": 1},
		            {"eventId": "e1", "type": "order.placed", "producer": "order", "writtenAt": "2026-12-04T12:00:00Z", "attempts": 2}],
		"consumed": []}`}}
	be.Services["store"] = fakeService{answers: map[string]any{"GET /timeline/21": `{"written": [],
		"consumed": [{"eventId": "e1", "consumedAt": "2026-12-04T12:00:01Z"}, {"eventId": "unknown", "consumedAt": "2026-12-04T12:00:01Z"}]}`}}
	be.Services["customercenter"] = fakeService{answers: map[string]any{"GET /timeline/21": `{"written": [],
		"consumed": [{"eventId": "e1", "consumedAt": "2026-12-04T12:00:00.5Z"}]}`}}
	c, tok := adminClient(t, be)
	resp := postAs(t, c, tok, `{ orderTimeline(orderId: "21") { eventId type producer publishAttempts consumed { service } } }`, nil)
	require.Empty(t, resp.errs)
	got, err := json.Marshal(resp.data["orderTimeline"])
	require.NoError(t, err)
	require.JSONEq(t, `[
		{"eventId": "e1", "type": "order.placed", "producer": "order", "publishAttempts": 2,
		 "consumed": [{"service": "customercenter"}, {"service": "store"}]},
		{"eventId": "e2", "type": "order.cancelled", "producer": "order", "publishAttempts": 1, "consumed": []}]`, string(got))

	// One service that cannot answer fails the whole timeline: half a story would mislead.
	be.Services["delivery"] = fakeService{answers: map[string]any{"GET /timeline/21": errs.Errorf(errs.Unavailable, "away")}}
	c, tok = adminClient(t, be)
	require.Equal(t, "UNAVAILABLE", postAs(t, c, tok, `{ orderTimeline(orderId: "21") { eventId } }`, nil).code)
}

// systemStatus lists every service in a fixed order; one that fails is ready=false with its
// reason, and the query still answers for the others.
func TestSystemStatusReportsAFailingServiceBesideTheOthers(t *testing.T) {
	t.Parallel()
	be := fakeBackends()
	be.Services["store"] = fakeService{answers: map[string]any{"GET /status": `{"ready": true, "outboxBacklog": 3,
		"deadLetters": 2, "breakers": [{"name": "store-availability", "state": "OPEN"}]}`}}
	be.Services["delivery"] = fakeService{answers: map[string]any{"GET /status": errors.New("connection refused")}}
	c, tok := adminClient(t, be)
	resp := postAs(t, c, tok, `{ systemStatus { services { name ready error outboxBacklog deadLetters breakers { name state } } } }`, nil)
	require.Empty(t, resp.errs)
	got, err := json.Marshal(resp.data["systemStatus"])
	require.NoError(t, err)
	require.JSONEq(t, `{"services": [
		{"name": "order", "ready": true, "error": null, "outboxBacklog": 0, "deadLetters": 0, "breakers": []},
		{"name": "store", "ready": true, "error": null, "outboxBacklog": 3, "deadLetters": 2, "breakers": [{"name": "store-availability", "state": "OPEN"}]},
		{"name": "delivery", "ready": false, "error": "connection refused", "outboxBacklog": 0, "deadLetters": 0, "breakers": []},
		{"name": "customercenter", "ready": true, "error": null, "outboxBacklog": 0, "deadLetters": 0, "breakers": []}]}`, string(got))
}

// deadLetters merges every service's, oldest first, with ids unique across services; a service
// that fails is reported beside the others' dead letters, and asked alone it fails the query.
func TestDeadLettersMergeTheServices(t *testing.T) {
	t.Parallel()
	be := fakeBackends()
	be.Services["store"] = fakeService{answers: map[string]any{"GET /dead-letters?limit=50": `[
		{"id": "3", "service": "store", "routingKey": "order.placed", "reason": "poison", "attempts": 1, "deadLetteredAt": "2026-12-04T12:00:02Z", "body": "x"}]`}}
	be.Services["delivery"] = fakeService{answers: map[string]any{"GET /dead-letters?limit=50": `[
		{"id": "3", "service": "delivery", "routingKey": "store.order_cooked", "reason": "poison", "attempts": 1, "deadLetteredAt": "2026-12-04T12:00:01Z", "body": "y"}]`}}
	be.Services["order"] = fakeService{answers: map[string]any{"GET /dead-letters?limit=50": errs.Errorf(errs.Unavailable, "away")}}
	c, tok := adminClient(t, be)
	resp := postAs(t, c, tok, `{ deadLetters { id service } }`, nil)
	require.Equal(t, "UNAVAILABLE", resp.code, "the order service's failure, beside the others: %s", resp.errs)
	require.Contains(t, resp.errs, "order: away")
	got, err := json.Marshal(resp.data["deadLetters"])
	require.NoError(t, err)
	require.JSONEq(t, `[{"id": "delivery:3", "service": "delivery"}, {"id": "store:3", "service": "store"}]`, string(got))

	resp = postAs(t, c, tok, `{ deadLetters(service: "order") { id } }`, nil)
	require.Equal(t, "UNAVAILABLE", resp.code)
	require.Nil(t, resp.data)
	require.Equal(t, "BAD_USER_INPUT", postAs(t, c, tok, `{ deadLetters(service: "pizzeria") { id } }`, nil).code)
	require.Equal(t, "BAD_USER_INPUT", postAs(t, c, tok, `{ deadLetters(limit: 501) { id } }`, nil).code)
}
