package customercenter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/lifecycle"
)

// A step keeps the time it was first told: a redelivered event, or a second event for the same
// status, changes nothing (and so is not announced again).
func TestStepsKeepTheFirstTimeTold(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var s Steps
	require.True(t, s.record(lifecycle.Received, t0.Add(time.Second)))
	require.False(t, s.record(lifecycle.Received, t0.Add(time.Second)), "a redelivery")
	require.False(t, s.record(lifecycle.Received, t0), "a second event for the same step")
	require.True(t, s.record(lifecycle.Ordered, t0.In(time.FixedZone("KST", 9*3600))))
	require.Equal(t, Steps{lifecycle.Received: t0.Add(time.Second), lifecycle.Ordered: t0}, s)
}
