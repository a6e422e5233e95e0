package graph

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/lifecycle"
)

// A pushed myPage row carries id (its order's id) when the client's selection asks for it, as
// Apollo's and urql's normalized caches do by adding id and __typename to every selection: the
// row is then keyed MyPageOrder:<orderId> without any key configuration.
func TestPushedMyPageRowsCarryTheirCacheKey(t *testing.T) {
	t.Parallel()
	f := newWSFixture(t, 0)
	ws := f.connect(t, "c-1")
	q, err := json.Marshal(map[string]any{
		"query":     `subscription($c: ID!) { myPage(customerId: $c) { __typename id orderId version } }`,
		"variables": map[string]any{"c": "c-1"},
	})
	require.NoError(t, err)
	ws.send(wsMessage{ID: "s", Type: "subscribe", Payload: q})
	waitFor(t, "the subscription", func() bool { return f.hub.Subscribers() == 1 })
	f.hub.Publish(update(t, "o-7", "c-1", 1, lifecycle.Received))
	m := ws.read()
	require.Equal(t, "next", m.Type, "%s", m.Payload)
	require.JSONEq(t, `{"data":{"myPage":{"__typename":"MyPageOrder","id":"o-7","orderId":"o-7","version":1}}}`, string(m.Payload))
}
