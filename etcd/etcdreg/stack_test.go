package etcdreg

import (
	"context"
	"testing"
)

// TestAcquireStack: the acquire stack a Lock (and a TryLock) records starts
// at its caller, without etcdreg's own frames.
func TestAcquireStack(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reg, err := Open(ctx, e.cli, e.run, Options{Host: "stack"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	mu, err := reg.Mutex("q")
	if err != nil {
		t.Fatal(err)
	}
	for _, try := range []bool{false, true} {
		id := lockHere(t, mu, try)
		s, err := Read(ctx, e.cli, e.run)
		if err != nil {
			t.Fatal(err)
		}
		fr, ok := s.Stack(reg.self, id)
		if !ok || len(fr) == 0 || fr[0].Func != pkgPath+".lockHere" {
			t.Errorf("TryLock %v: stack %+v (recorded %v); want it to start at lockHere, Lock's caller", try, fr, ok)
		}
		if err := mu.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// lockHere takes mu (TryLock if try) and returns the id of the stack its
// hold recorded.
//
//go:noinline
func lockHere(t *testing.T, mu *Mutex, try bool) uint64 {
	if try {
		if ok, err := mu.TryLock(context.Background()); !ok || err != nil {
			t.Fatalf("TryLock: %v %v", ok, err)
		}
	} else if err := mu.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	return mu.curHold().stack
}
