// Package hang has a test that blocks on a mutex until `go test -timeout`
// panics. It is run only by ../main.go.
package hang

import (
	"sync"
	"testing"
)

func TestHang(t *testing.T) {
	var mu sync.Mutex
	mu.Lock()
	mu.Lock()
}
