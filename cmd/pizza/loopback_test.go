package main

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// A service serves in process only the URLs that lead to its own listener.
func TestLoopbackURLs(t *testing.T) {
	tcp := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		require.NoError(t, err)
		return a
	}
	require.Equal(t, "http://127.0.0.1:8081", loopbackURLs(tcp("127.0.0.1:8081")))
	require.Equal(t, "http://10.0.0.7:8081", loopbackURLs(tcp("10.0.0.7:8081")))
	require.Equal(t, "http://127.0.0.1:8081,http://localhost:8081", loopbackURLs(tcp("0.0.0.0:8081")))
	require.Equal(t, "http://127.0.0.1:8081,http://localhost:8081", loopbackURLs(tcp("[::]:8081")))
}
