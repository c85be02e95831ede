package probe

import (
	"context"
	"errors"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockreg"
)

// TestLocksRequest: the locks request answers this process's part of the
// run: the locks it holds, by name, each with the goroutine and stack that
// took it and how many goroutines of the run wait for it; its goroutines
// that wait, by lock, the longest wait first, each with its holder (here
// or in another process). Once that other holder is SIGKILLed holding its
// lock, a goroutine waiting for it is told that the owner died, with the
// dead holder's pid and goroutine.
func TestLocksRequest(t *testing.T) {
	dir := runDir(t)
	holder := startChild(t, "hold", testDirEnv+"="+dir)
	holder.expect(holder.stdout, "held") // holds dead.lock until killed
	deadPID := holder.pid()

	a := startAgent(t, Options{Dir: dir})
	reg := a.Registry()
	mutex := func(name string) *lockreg.Mutex {
		m, err := reg.Mutex(name)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	bLock, aLock, dead := mutex("b.lock"), mutex("a.lock"), mutex("dead.lock")
	for _, m := range []*lockreg.Mutex{bLock, aLock} {
		if err := m.Lock(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wait := func(m *lockreg.Mutex) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Lock(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("%s: Lock returned %v; want it to wait until cancelled", m.Name(), err)
			}
		}()
	}
	cl := &probeclient.Client{Path: a.SocketPath()}
	var lv *probeclient.LockView
	// One waiter at a time, so that their waits are ordered.
	for n, m := range []*lockreg.Mutex{aLock, dead, aLock} {
		wait(m)
		deadline := time.Now().Add(probablyStillBlocked)
		for {
			var err error
			if lv, err = cl.Locks(ctx); err != nil {
				t.Fatal(err)
			}
			if len(lv.Waiting) == n+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines waiting after %v; want %d: %+v", len(lv.Waiting), probablyStillBlocked, n+1, lv.Waiting)
			}
			time.Sleep(quiescent)
		}
	}

	if lv.PID != a.self.PID || lv.Start != a.self.Start {
		t.Errorf("answered for %d@%d; want this process, %v", lv.PID, lv.Start, a.self)
	}
	if len(lv.Held) != 2 || lv.Held[0].Lock != "a.lock" || lv.Held[1].Lock != "b.lock" {
		t.Fatalf("Held = %+v; want a.lock, b.lock", lv.Held)
	}
	for _, h := range lv.Held {
		if h.Goroutine == 0 || len(h.Stack) == 0 || h.Since.IsZero() {
			t.Errorf("held %s: goroutine %d, %d frames, since %v; want the goroutine, stack and time that took it", h.Lock, h.Goroutine, len(h.Stack), h.Since)
		}
	}
	if lv.Held[0].Waiting != 2 || lv.Held[1].Waiting != 0 {
		t.Errorf("waiting for a.lock %d, b.lock %d; want 2, 0", lv.Held[0].Waiting, lv.Held[1].Waiting)
	}
	if len(lv.Waiting) != 3 {
		t.Fatalf("Waiting = %+v; want 3", lv.Waiting)
	}
	first, second, died := lv.Waiting[0], lv.Waiting[1], lv.Waiting[2]
	if first.Lock != "a.lock" || second.Lock != "a.lock" || died.Lock != "dead.lock" {
		t.Fatalf("Waiting for %s, %s, %s; want a.lock, a.lock, dead.lock", first.Lock, second.Lock, died.Lock)
	}
	if first.Since.After(second.Since) {
		t.Errorf("a.lock's waiters since %v, then %v; want the longest wait first", first.Since, second.Since)
	}
	for _, w := range []probeclient.WaitingLock{first, second} {
		if w.HolderPID != a.self.PID || w.HolderGoroutine != lv.Held[0].Goroutine || w.OwnerDied || len(w.Stack) == 0 {
			t.Errorf("waiter %+v; want holder %d goroutine %d, alive, with its stack", w, a.self.PID, lv.Held[0].Goroutine)
		}
	}
	if died.HolderPID != deadPID || died.HolderGoroutine == 0 || died.OwnerDied {
		t.Errorf("waiter for another process's lock: %+v; want holder pid %d and its goroutine, alive", died, deadPID)
	}

	// The holder dies; a waiter proves it (liveness polling, or the
	// kernel in a static binary) and marks the lock's word owner-died,
	// clearing its holder bits.
	holder.kill()
	deadline := time.Now().Add(probablyStillBlocked)
	for {
		lv, err := cl.Locks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(lv.Waiting) != 3 {
			t.Fatalf("Waiting = %+v; want 3", lv.Waiting)
		}
		if w := lv.Waiting[2]; w.OwnerDied {
			if w.HolderPID != deadPID || w.HolderGoroutine != died.HolderGoroutine {
				t.Errorf("waiter for the dead holder's lock: %+v; want holder pid %d goroutine %d", w, deadPID, died.HolderGoroutine)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no owner-died after %v: %+v", probablyStillBlocked, lv.Waiting)
		}
		time.Sleep(quiescent)
	}
}
