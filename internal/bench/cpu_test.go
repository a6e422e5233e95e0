package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The machine's busy time grows while this process computes.
func TestHostCPUSeesTheMachineBusy(t *testing.T) {
	before, ok := readHostCPU()
	if !ok {
		t.Skip("no /proc on this system")
	}
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		after, _ := readHostCPU()
		if busy, _ := after.since(before); busy > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "no busy time seen while computing")
	}
	require.NotZero(t, x)
}

// By group, a process seen twice counts its difference, one that started in between counts
// whole, and a pid reused by another kind of process counts as new.
func TestHostCPUByGroup(t *testing.T) {
	before := hostCPU{busy: time.Second, procs: map[int]procCPU{
		1: {"PostgreSQL", 100 * time.Millisecond},
		2: {"RabbitMQ", 300 * time.Millisecond},
		3: {"PostgreSQL", 50 * time.Millisecond},
	}}
	after := hostCPU{busy: 3 * time.Second, procs: map[int]procCPU{
		1: {"PostgreSQL", 400 * time.Millisecond}, // +300
		2: {"RabbitMQ", 500 * time.Millisecond},   // +200
		3: {"RabbitMQ", 70 * time.Millisecond},    // a new process under an old pid: 70
		4: {"PostgreSQL", 20 * time.Millisecond},  // new: 20
	}}
	busy, by := after.since(before)
	require.Equal(t, 2*time.Second, busy)
	require.Equal(t, map[string]time.Duration{"PostgreSQL": 320 * time.Millisecond, "RabbitMQ": 270 * time.Millisecond}, by)
}
