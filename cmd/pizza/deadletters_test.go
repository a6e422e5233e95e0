package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph/model"
	"github.com/1588-pizza/pizza/lifecycle"
	"github.com/1588-pizza/pizza/outbox"
	"github.com/1588-pizza/pizza/outbox/outboxtest"
	"github.com/1588-pizza/pizza/services/order"
	"github.com/1588-pizza/pizza/services/store"
)

const deadLettersQuery = `query($service: String, $limit: Int) { deadLetters(service: $service, limit: $limit) {
	id service eventId type routingKey orderId reason error attempts deadLetteredAt body } }`

type gqlDeadLetter struct {
	ID, Service, RoutingKey, Reason, Body string
	EventID, Type, OrderID, Error         *string
	Attempts                              int
	DeadLetteredAt                        time.Time
}

type gqlDeadLetterOutcome struct {
	Service string
	Count   int
	IDs     []string
}

// poisonDeliveries makes the delivery service fail on the order, as a missing row or a bad
// deploy would: its insert breaks a constraint until heal is called.
func poisonDeliveries(t *testing.T, sys *system, orderID string) (heal func()) {
	t.Helper()
	ctx := context.Background()
	_, err := sys.pools[db.Delivery].Exec(ctx, fmt.Sprintf(
		`ALTER TABLE deliveries ADD CONSTRAINT test_poison CHECK (order_id <> '%s') NOT VALID`, orderID))
	require.NoError(t, err)
	return func() {
		_, err := sys.pools[db.Delivery].Exec(ctx, `ALTER TABLE deliveries DROP CONSTRAINT test_poison`)
		require.NoError(t, err)
	}
}

// publishRaw publishes body to the default exchange with routing key queue: straight into it.
func publishRaw(t *testing.T, queue string, msg amqp.Publishing) {
	t.Helper()
	publishTo(t, "", queue, msg)
}

// publishTo publishes msg to exchange with routing key key, and waits for the broker's confirm.
func publishTo(t *testing.T, exchange, key string, msg amqp.Publishing) {
	t.Helper()
	conn, err := amqp.Dial(outboxtest.URL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	c, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, false, false, msg)
	require.NoError(t, err)
	require.True(t, c.Wait(), "the broker took it")
}

func (sys *system) queue(s db.Service) string {
	return string(s) + ".events" + sys.env["PIZZA_QUEUE_SUFFIX"]
}

// deliveriesOf counts the order's delivery rows and delivery.started events.
func (sys *system) deliveriesOf(t *testing.T, orderID string) (rows, started int) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, sys.pools[db.Delivery].QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE order_id = $1`, orderID).Scan(&rows))
	require.NoError(t, sys.pools[db.Delivery].QueryRow(ctx,
		`SELECT count(*) FROM outbox_events WHERE order_id = $1 AND type = 'delivery.started'`, orderID).Scan(&started))
	return rows, started
}

// metric is the value of the series that starts with prefix on the service's /metrics, or "".
func (sys *system) metric(t *testing.T, s db.Service, prefix string) string {
	t.Helper()
	_, body := get(t, "http://"+sys.env[strings.ToUpper(string(s))+"_ADDR"]+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			return strings.Fields(line)[len(strings.Fields(line))-1]
		}
	}
	return ""
}

// An event the delivery service fails on is dead-lettered through the real system; an admin sees
// it with its reason, error and attempts (others may not), replays it once the cause is fixed
// and it is applied once, replays it again and it is still applied once, and discards a
// malformed message. Bad input changes nothing.
func TestDeadLettersThroughGraphQL(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, map[string]string{"CONSUMER_MAX_ATTEMPTS": "3"})
	sys.start(t, db.Order, db.Store, db.CustomerCenter)
	stopDelivery := sys.start(t, db.Delivery)
	base := sys.startBFF(t)
	storeID := registerStore(t, base, "강남점", "강남구")
	o := placed(t, base, mint(t, model.RoleCustomer, "1"), "1", "강남구")
	sys.waitOrder(t, o.ID, lifecycle.Received)
	heal := poisonDeliveries(t, sys, o.ID)
	gql(t, base, mint(t, model.RoleMaster, storeID), cookMutation, map[string]any{"id": o.ID}).decode(t, "markCooked", &struct{}{})
	publishRaw(t, sys.queue(db.Delivery), amqp.Publishing{MessageId: "garbage", Body: []byte("not an event")})

	admin := mint(t, model.RoleAdmin, "")
	list := func(vars map[string]any) []gqlDeadLetter {
		var got []gqlDeadLetter
		gql(t, base, admin, deadLettersQuery, vars).decode(t, "deadLetters", &got)
		return got
	}
	var got []gqlDeadLetter
	require.Eventually(t, func() bool {
		got = list(map[string]any{"service": "delivery"})
		return len(got) == 2
	}, 30*time.Second, 20*time.Millisecond, "two dead letters in delivery; have %+v", got)
	failed, bad := got[0], got[1]
	if failed.Reason != outbox.ReasonFailed {
		failed, bad = bad, failed
	}
	require.Equal(t, "delivery", failed.Service)
	require.Equal(t, outbox.ReasonFailed, failed.Reason)
	require.Equal(t, 3, failed.Attempts, "CONSUMER_MAX_ATTEMPTS")
	require.NotNil(t, failed.Error)
	require.Contains(t, *failed.Error, "test_poison")
	require.Equal(t, lifecycle.StoreOrderCooked, *failed.Type)
	require.Equal(t, lifecycle.StoreOrderCooked, failed.RoutingKey)
	require.Equal(t, o.ID, *failed.OrderID)
	require.True(t, strings.HasPrefix(failed.ID, "delivery:"), "a dead letter's id names its service: %s", failed.ID)
	require.NotNil(t, failed.EventID)
	require.Contains(t, failed.Body, *failed.EventID)
	require.WithinDuration(t, time.Now(), failed.DeadLetteredAt, time.Minute)
	require.Equal(t, outbox.ReasonMalformed, bad.Reason)
	require.Zero(t, bad.Attempts)
	require.Nil(t, bad.EventID)
	require.Nil(t, bad.OrderID)
	require.Contains(t, *bad.Error, "not an event")
	require.Equal(t, "not an event", bad.Body)
	require.Len(t, list(nil), 2, "every service's, without service")
	require.Len(t, list(map[string]any{"limit": 1}), 1)
	// Counted once its delivery is acked, which may come after the DLQ's copy was parked.
	deadLettered := `pizza_consumer_dead_lettered_total{queue="` + sys.queue(db.Delivery) + `",reason="handler_failed"}`
	require.Eventually(t, func() bool { return sys.metric(t, db.Delivery, deadLettered) == "1" }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, "2", sys.metric(t, db.Delivery, `pizza_dead_letters_parked{service="delivery"}`))

	// Admins only.
	const replay = `mutation($service: String!, $ids: [ID!]) { replayDeadLetters(service: $service, ids: $ids) { service count ids } }`
	const discard = `mutation($service: String!, $ids: [ID!]!) { discardDeadLetters(service: $service, ids: $ids) { service count ids } }`
	one := map[string]any{"service": "delivery", "ids": []string{failed.ID}}
	for _, tok := range []string{mint(t, model.RoleCustomer, "1"), mint(t, model.RoleAgent, ""), mint(t, model.RoleMaster, storeID)} {
		require.Equal(t, "FORBIDDEN", gql(t, base, tok, deadLettersQuery, nil).code())
		require.Equal(t, "FORBIDDEN", gql(t, base, tok, replay, one).code())
		require.Equal(t, "FORBIDDEN", gql(t, base, tok, discard, one).code())
	}
	require.Equal(t, "UNAUTHENTICATED", gql(t, base, "", deadLettersQuery, nil).code())
	require.Equal(t, "UNAUTHENTICATED", gql(t, base, "", replay, one).code())

	// Bad input: a clear code, the field, and nothing done.
	for _, c := range []struct {
		query       string
		vars        map[string]any
		code, field string
	}{
		{deadLettersQuery, map[string]any{"service": "kitchen"}, "BAD_USER_INPUT", "service"},
		{deadLettersQuery, map[string]any{"limit": 0}, "BAD_USER_INPUT", "limit"},
		{deadLettersQuery, map[string]any{"limit": 501}, "BAD_USER_INPUT", "limit"},
		{replay, map[string]any{"service": "kitchen", "ids": []string{failed.ID}}, "BAD_USER_INPUT", "service"},
		{replay, map[string]any{"service": "delivery", "ids": []string{}}, "BAD_USER_INPUT", "ids"},
		{replay, map[string]any{"service": "delivery", "ids": []string{failed.ID, "999999", "x"}}, "NOT_FOUND", "ids"},
		{replay, map[string]any{"service": "store", "ids": []string{failed.ID}}, "NOT_FOUND", "ids"},
		{discard, map[string]any{"service": "delivery", "ids": []string{}}, "BAD_USER_INPUT", "ids"},
		{discard, map[string]any{"service": "delivery", "ids": []string{bad.ID, "999999"}}, "NOT_FOUND", "ids"},
	} {
		resp := gql(t, base, admin, c.query, c.vars)
		require.Len(t, resp.Errors, 1, "%v", c.vars)
		require.Equal(t, c.code, resp.code(), "%v: %+v", c.vars, resp.Errors)
		require.Equal(t, c.field, resp.Errors[0].Extensions.Field, "%v", c.vars)
	}
	resp := gql(t, base, admin, replay, map[string]any{"service": "delivery", "ids": []string{failed.ID, "999999"}})
	require.Equal(t, "no dead letter 999999 in delivery; nothing was done", resp.Errors[0].Message, "names the unknown id, only it")
	require.Len(t, list(map[string]any{"service": "delivery"}), 2, "nothing was replayed or discarded")
	rows, _ := sys.deliveriesOf(t, o.ID)
	require.Zero(t, rows)

	// Fixed, replayed: applied once.
	heal()
	var out gqlDeadLetterOutcome
	gql(t, base, admin, replay, one).decode(t, "replayDeadLetters", &out)
	require.Equal(t, gqlDeadLetterOutcome{Service: "delivery", Count: 1, IDs: []string{failed.ID}}, out)
	sys.waitMyPage(t, o.ID, status(lifecycle.DeliveryStarted))
	require.Equal(t, "NOT_FOUND", gql(t, base, admin, replay, one).code(), "replayed dead letters are gone")

	// The same event dead-lettered again (a replay whose row survived a crash, or a relay's
	// second copy): replayed, and the inbox skips it.
	publishRaw(t, sys.queue(db.Delivery)+".dlq", amqp.Publishing{MessageId: *failed.EventID, Body: []byte(failed.Body),
		Headers: amqp.Table{outbox.HeaderDLQReason: outbox.ReasonFailed, outbox.HeaderDLQError: "again"}})
	var again []gqlDeadLetter
	require.Eventually(t, func() bool {
		again = list(map[string]any{"service": "delivery"})
		return len(again) == 2
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, *failed.EventID, *again[1].EventID)
	gql(t, base, admin, replay, map[string]any{"service": "delivery", "ids": []string{again[1].ID}}).decode(t, "replayDeadLetters", &out)
	require.Equal(t, 1, out.Count)
	duplicates := `pizza_consumer_consumed_total{outcome="duplicate",queue="` + sys.queue(db.Delivery) + `",type="store.order_cooked"}`
	require.Eventually(t, func() bool { return sys.metric(t, db.Delivery, duplicates) == "1" }, 30*time.Second, 20*time.Millisecond)
	rows, started := sys.deliveriesOf(t, o.ID)
	require.Equal(t, 1, rows, "one delivery")
	require.Equal(t, 1, started, "one delivery.started")
	for _, s := range []db.Service{db.Order, db.CustomerCenter} { // they consume store.order_cooked too
		require.Empty(t, sys.metric(t, s, `pizza_consumer_consumed_total{outcome="duplicate",queue="`+sys.queue(s)+`",type="store.order_cooked"}`),
			"a replay goes to the service that dead-lettered it, no other")
	}

	// Discarded: gone.
	bare := strings.TrimPrefix(bad.ID, "delivery:") // the service's own id works too
	gql(t, base, admin, discard, map[string]any{"service": "delivery", "ids": []string{bare}}).decode(t, "discardDeadLetters", &out)
	require.Equal(t, gqlDeadLetterOutcome{Service: "delivery", Count: 1, IDs: []string{bad.ID}}, out)
	require.Empty(t, list(nil))

	require.Equal(t, "0", sys.metric(t, db.Delivery, `pizza_dead_letters_parked{service="delivery"}`))
	require.Equal(t, "2", sys.metric(t, db.Delivery, `pizza_dead_letters_replayed_total{service="delivery"}`))
	require.Equal(t, "1", sys.metric(t, db.Delivery, `pizza_dead_letters_discarded_total{service="delivery"}`))
	require.Equal(t, "0", sys.metric(t, db.Store, `pizza_dead_letters_parked{service="store"}`))

	// A service that cannot be reached: the others' dead letters, and an error naming it.
	require.NoError(t, sys.pools[db.Store].QueryRow(context.Background(),
		`INSERT INTO outbox_dead_letters (dedupe_key, reason, body) VALUES ('k', 'malformed', '{') RETURNING id::text`).Scan(new(string)))
	stopDelivery()
	resp = gql(t, base, admin, deadLettersQuery, nil)
	require.Len(t, resp.Errors, 1)
	require.Equal(t, "UNAVAILABLE", resp.code())
	require.True(t, strings.HasPrefix(resp.Errors[0].Message, "delivery: "), resp.Errors[0].Message)
	var rest []gqlDeadLetter
	require.NoError(t, json.Unmarshal(resp.Data["deadLetters"], &rest))
	require.Len(t, rest, 1)
	require.Equal(t, "store", rest[0].Service)
	resp = gql(t, base, admin, deadLettersQuery, map[string]any{"service": "delivery"})
	require.Equal(t, "UNAVAILABLE", resp.code())
	require.Empty(t, resp.Data["deadLetters"], "no dead letters from a service that cannot be asked")
}

// pizza dlq works on the databases and the broker directly: with the delivery service down it
// lists what the service parked and what is still in its DLQ, replays (applied when the service
// is back) and discards, and refuses bad input without changing anything.
func TestDLQCommand(t *testing.T) {
	t.Parallel()
	sys := newSystem(t, map[string]string{"CONSUMER_MAX_ATTEMPTS": "2"})
	sys.start(t, db.Order, db.Store, db.CustomerCenter)
	stopDelivery := sys.start(t, db.Delivery)
	ctx := context.Background()
	_, err := sys.store.Register(ctx, store.RegisterInput{Name: "강남점", Region: "강남구", Open: open(true)})
	require.NoError(t, err)
	o, err := sys.order.Place(ctx, order.PlaceInput{CustomerID: "1", Pizza: "하와이안피자", Qty: 1, Region: "강남구"})
	require.NoError(t, err)
	sys.waitOrder(t, o.ID, lifecycle.Received)
	heal := poisonDeliveries(t, sys, o.ID)
	_, err = sys.store.MarkCooked(ctx, o.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var n int
		err := sys.pools[db.Delivery].QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letters`).Scan(&n)
		return err == nil && n == 1
	}, 30*time.Second, 20*time.Millisecond, "the running service parks its dead letter")
	stopDelivery()
	// Dead-lettered while the service is down: still in the broker's DLQ.
	publishRaw(t, sys.queue(db.Delivery)+".dlq", amqp.Publishing{MessageId: "garbage", Body: []byte("{"),
		Headers: amqp.Table{outbox.HeaderDLQReason: outbox.ReasonMalformed, outbox.HeaderDLQError: "not an event: unexpected EOF",
			outbox.HeaderRoutingKey: lifecycle.StoreOrderCooked}})

	pizza := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"dlq"}, args...), sys.env, &out, io.Discard)
		return out.String(), err
	}
	listed := func(args ...string) []outbox.DeadLetter {
		out, err := pizza(append([]string{"list", "--json"}, args...)...)
		require.NoError(t, err)
		var got []outbox.DeadLetter
		require.NoError(t, json.Unmarshal([]byte(out), &got), out)
		return got
	}
	got := listed("--service", "delivery")
	require.Len(t, got, 2)
	failed, bad := got[0], got[1]
	require.Equal(t, outbox.ReasonFailed, failed.Reason)
	require.Equal(t, 2, failed.Attempts)
	require.Contains(t, failed.Error, "test_poison")
	require.Equal(t, o.ID, failed.OrderID)
	require.Equal(t, outbox.ReasonMalformed, bad.Reason)
	require.Equal(t, lifecycle.StoreOrderCooked, bad.RoutingKey)
	require.Len(t, listed(), 2, "every service's")
	require.Len(t, listed("--limit", "1"), 1)
	text, err := pizza("list")
	require.NoError(t, err)
	require.Contains(t, text, "SERVICE")
	require.Contains(t, text, "test_poison")
	require.Contains(t, text, "malformed")

	failedID, badID := fmt.Sprint(failed.ID), fmt.Sprint(bad.ID)
	for _, args := range [][]string{
		{},
		{"peek"},
		{"list", "--service", "kitchen"},
		{"list", "--limit", "0"},
		{"list", "extra"},
		{"replay", failedID},
		{"replay", "--service", "delivery"},
		{"replay", "--service", "delivery", "--all", failedID},
		{"replay", "--service", "kitchen", failedID},
		{"replay", "--service", "delivery", failedID, "999999"},
		{"discard", "--service", "delivery"},
		{"discard", "--service", "delivery", badID, "x"},
	} {
		_, err := pizza(args...)
		require.Error(t, err, "%q", args)
	}
	_, err = pizza("replay", "--service", "delivery", failedID, "999999")
	require.ErrorContains(t, err, "no dead letter 999999 in delivery; nothing was done")
	require.Len(t, listed("--service", "delivery"), 2, "nothing replayed or discarded")

	heal()
	out, err := pizza("replay", failedID, "--service", "delivery") // flags may follow the ids
	require.NoError(t, err)
	require.Equal(t, "replayed 1 dead letter(s) of delivery: "+failedID+"\n", out)
	out, err = pizza("discard", "--service", "delivery", badID)
	require.NoError(t, err)
	require.Equal(t, "discarded 1 dead letter(s) of delivery: "+badID+"\n", out)
	require.Empty(t, listed())
	out, err = pizza("list")
	require.NoError(t, err)
	require.Equal(t, "no dead letters\n", out)

	rows, _ := sys.deliveriesOf(t, o.ID)
	require.Zero(t, rows, "the replay waits in the queue for the service")
	sys.start(t, db.Delivery)
	sys.waitMyPage(t, o.ID, status(lifecycle.DeliveryStarted))
	require.Eventually(t, func() bool { rows, started := sys.deliveriesOf(t, o.ID); return rows == 1 && started == 1 },
		30*time.Second, 20*time.Millisecond)
	code, _ := get(t, "http://"+sys.env["DELIVERY_ADDR"]+"/dead-letters?limit=0")
	require.Equal(t, http.StatusBadRequest, code)
}
