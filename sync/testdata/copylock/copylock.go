// Command copylock copies drop-in mutexes, for go vet to catch
// (TestVetCopylocks).
package main

import "github.com/lockwatch/lockwatch/sync"

func main() {
	var mu sync.Mutex
	var rw sync.RWMutex
	mu.Lock()
	byValue(mu)
	mu.Unlock()
	rw.RLock()
	rw.RUnlock()
	c := rw
	c.Lock()
}

func byValue(m sync.Mutex) { _ = m.TryLock() }
