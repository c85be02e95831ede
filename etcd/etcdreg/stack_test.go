package etcdreg

import (
	"context"
	"strings"
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

//go:noinline
func lockFromA(ctx context.Context, m *Mutex) error { return m.Lock(ctx) }

//go:noinline
func lockFromB(ctx context.Context, m *Mutex) error { return m.Lock(ctx) }

// TestStackIDsTwoRegistries: P/stack/PROC/ID names the process, not the
// Registry, so two Registries of one process in one run (at once, or one
// after the other closed) never give one id to two call sites: each
// holder's stack reads back with its own frames.
func TestStackIDsTwoRegistries(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ra, err := Open(ctx, e.cli, e.run, Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb, err := Open(ctx, e.cli, e.run, Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	ma, _ := ra.Mutex("a")
	mb, _ := rb.Mutex("b")
	if err := lockFromA(ctx, ma); err != nil {
		t.Fatal(err)
	}
	if err := lockFromB(ctx, mb); err != nil {
		t.Fatal(err)
	}
	sa, sb := ma.curHold().stack, mb.curHold().stack
	if sa == sb {
		t.Errorf("both call sites have stack id %d", sa)
	}
	for _, c := range []struct {
		ref  StackRef
		want string
	}{{StackRef{ID: ra.ID(), Stack: sa}, "lockFromA"}, {StackRef{ID: rb.ID(), Stack: sb}, "lockFromB"}} {
		st, err := ReadStacks(ctx, e.cli, e.run, []StackRef{c.ref})
		if err != nil {
			t.Fatal(err)
		}
		var fs []string
		for _, f := range st[c.ref] {
			fs = append(fs, f.Func)
		}
		if !strings.Contains(strings.Join(fs, " "), c.want) {
			t.Errorf("the stack of id %d reads %v; want %s's frames", c.ref.Stack, fs, c.want)
		}
	}
}
