// Package deadtest is a test suite whose TestMain starts lockwatch's probe
// and whose one test deadlocks on drop-in mutexes.
package deadtest

import (
	"fmt"
	"os"
	"testing"

	"github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/sync"
)

func TestMain(m *testing.M) {
	a, err := probe.Start(probe.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	code := m.Run()
	_ = a.Close()
	os.Exit(code)
}

func TestDeadlock(t *testing.T) {
	var first, second sync.Mutex
	first.Lock()
	holds := make(chan struct{})
	go func() {
		second.Lock()
		close(holds)
		first.Lock()
	}()
	<-holds
	second.Lock()
}
