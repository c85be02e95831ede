//go:build !nolockwatch && (amd64 || arm64)

package sync_test

import (
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	lwsync "github.com/lockwatch/lockwatch/sync"
)

// TestOwnerWord: in the owner mode a mutex held for writing keeps its
// holder's goroutine id in its owner word, by every path (Lock, TryLock,
// after a wait, an RWMutex's writer), and nothing else: no arena record,
// nothing for readers; the word is 0 again once it is unlocked, also by
// another goroutine.
func TestOwnerWord(t *testing.T) {
	defer lwsync.SetRecords(lwsync.SetRecords(false))
	me := record.Goid()
	var mu lwsync.Mutex
	var rw lwsync.RWMutex
	check := func(what string, got, want int64) {
		t.Helper()
		if got != want {
			t.Errorf("%s: owner word %d; want %d", what, got, want)
		}
	}
	mu.Lock()
	check("Lock", lwsync.Owner(&mu), me)
	if s := inproc.Take(0); len(s.Locks) != 0 {
		t.Errorf("records in the owner mode: %+v", s.Locks)
	}
	mu.Unlock()
	check("Unlock", lwsync.Owner(&mu), 0)
	if !mu.TryLock() {
		t.Fatal("TryLock failed")
	}
	check("TryLock", lwsync.Owner(&mu), me)

	// A waiter that then holds it: its own id, once the holder (here)
	// unlocks.
	got := make(chan int64)
	go func() {
		mu.Lock()
		got <- lwsync.Owner(&mu) - record.Goid()
		mu.Unlock()
		got <- 0
	}()
	time.Sleep(5 * time.Millisecond)
	mu.Unlock()
	check("after a wait, less the waiter's id", <-got, 0)
	<-got
	check("unlocked by the waiter", lwsync.Owner(&mu), 0)

	rw.Lock()
	check("RWMutex.Lock", lwsync.Owner(&rw), me)
	rw.Unlock()
	rw.RLock()
	rw.RLock()
	check("RLock", lwsync.Owner(&rw), 0)
	rw.RUnlock()
	rw.RUnlock()
	if !rw.TryLock() {
		t.Fatal("RWMutex.TryLock failed")
	}
	check("RWMutex.TryLock", lwsync.Owner(&rw), me)
	done := make(chan bool)
	go func() { rw.Unlock(); done <- true }() // unlocked by another goroutine
	<-done
	check("RWMutex unlocked", lwsync.Owner(&rw), 0)
}

// TestOwnerWordWithoutGoid: where the goroutine id's offset in g is not
// known (a Go release the package does not know), the owner mode writes
// no owner word, by any path, and the locks work as sync's.
func TestOwnerWordWithoutGoid(t *testing.T) {
	defer lwsync.SetRecords(lwsync.SetRecords(false))
	defer lwsync.SetGoidOffset(lwsync.SetGoidOffset(0))
	var mu lwsync.Mutex
	var rw lwsync.RWMutex
	check := func(what string, got int64) {
		t.Helper()
		if got != 0 {
			t.Errorf("%s: owner word %d; want 0 (no goroutine id offset)", what, got)
		}
	}
	mu.Lock()
	check("Lock", lwsync.Owner(&mu))
	if mu.TryLock() {
		t.Fatal("TryLock of a locked Mutex succeeded")
	}
	mu.Unlock()
	if !mu.TryLock() {
		t.Fatal("TryLock failed")
	}
	check("TryLock", lwsync.Owner(&mu))
	// A waiter that then holds it.
	got := make(chan int64)
	go func() {
		mu.Lock()
		got <- lwsync.Owner(&mu)
		mu.Unlock()
	}()
	time.Sleep(5 * time.Millisecond)
	mu.Unlock()
	check("after a wait", <-got)

	rw.Lock()
	check("RWMutex.Lock", lwsync.Owner(&rw))
	if rw.TryRLock() {
		t.Fatal("TryRLock of a write-locked RWMutex succeeded")
	}
	rw.Unlock()
	if !rw.TryLock() {
		t.Fatal("RWMutex.TryLock failed")
	}
	check("RWMutex.TryLock", lwsync.Owner(&rw))
	rw.Unlock()
	rw.RLock()
	check("RLock", lwsync.Owner(&rw))
	rw.RUnlock()
	if !rw.TryLock() {
		t.Fatal("RWMutex.TryLock after RUnlock failed")
	}
	rw.Unlock()
}
