// Package deadtest is a test that deadlocks, run by `go test -timeout=0`
// under lockwatch run: as with sync, Go's runtime ends it ("all goroutines
// are asleep - deadlock!") though its probe serves.
package deadtest

import (
	"testing"

	_ "github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/sync"
)

func TestDeadlock(t *testing.T) {
	var mu sync.Mutex
	mu.Lock()
	mu.Lock()
}
