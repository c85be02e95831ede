//go:build nolockwatch || !(amd64 || arm64)

package sync_test

import (
	gosync "sync"
	"testing"

	lwsync "github.com/lockwatch/lockwatch/sync"
)

// Under nolockwatch the types are sync's own: these assignments compile
// only if they are the same types.
var (
	_ *gosync.Mutex   = (*lwsync.Mutex)(nil)
	_ *gosync.RWMutex = (*lwsync.RWMutex)(nil)
)

func TestOffIsSync(t *testing.T) {
	if lwsync.Enabled {
		t.Error("Enabled under nolockwatch")
	}
	var mu lwsync.Mutex
	var s *gosync.Mutex = &mu
	s.Lock()
	lwsync.SetName(&mu, "ignored")
	s.Unlock()
}
