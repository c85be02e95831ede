package goproc_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/diag/goproc"
)

// ownerTarget is a running testdata/ownerrace: its stdin, and the lines it
// prints after "ready".
type ownerTarget struct {
	pid   int
	stdin io.WriteCloser
	lines chan string
}

// startOwner runs testdata/ownerrace (built once) with args, until
// it says ready.
func startOwner(t testing.TB, args ...string) *ownerTarget {
	t.Helper()
	return startOwnerBuilt(t, "ownerrace", args...)
}

// startOwnerBuilt is startOwner with the build kind of build.
func startOwnerBuilt(t testing.TB, kind string, args ...string) *ownerTarget {
	t.Helper()
	cmd := exec.Command(build(t, kind), args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &ownerTarget{pid: cmd.Process.Pid, stdin: stdin, lines: make(chan string, 16)}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			tg.lines <- sc.Text()
		}
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	if l := tg.line(); l != "ready" {
		t.Fatalf("ownerrace said %q; want ready; its stderr:\n%s", l, stderr.String())
	}
	return tg
}

// line returns the target's next line, or "" if it said none in time.
func (tg *ownerTarget) line() string {
	select {
	case l := <-tg.lines:
		return l
	case <-time.After(probablyStillBlocked):
		return ""
	}
}

// muLock returns the image's lock main.mu.
func muLock(t testing.TB, img *goproc.Image) goproc.Lock {
	t.Helper()
	for _, l := range img.Locks {
		if l.Name == "main.mu" {
			return l
		}
	}
	t.Fatalf("no lock main.mu in the image: %+v", img.Locks)
	return goproc.Lock{}
}

// TestOwnerWordAfterWaiterTookLock: a waiter of a drop-in Mutex that takes
// it after its wait was verified and before the owner word is read (the
// hook makes it so: the holder unlocks, the waiter locks and says so) is
// not reported as both the lock's holder and its waiter: the lock is left
// without an owner, with a note.
func TestOwnerWordAfterWaiterTookLock(t *testing.T) {
	tg := startOwner(t)
	p, err := goproc.Attach(tg.pid, goproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	took := ""
	var once sync.Once
	goproc.SetTestHookOwners(func(pid int) {
		if pid != tg.pid {
			return // another test's target
		}
		once.Do(func() {
			io.WriteString(tg.stdin, "release\n")
			took = tg.line()
		})
	})
	t.Cleanup(func() { goproc.SetTestHookOwners(nil) })
	img, err := p.Read(context.Background())
	goproc.SetTestHookOwners(nil)
	if err != nil {
		t.Fatal(err)
	}
	if took != "took" {
		t.Fatalf("the waiter did not take mu in the hook (it said %q)", took)
	}
	l := muLock(t, img)
	if !l.DropIn || len(l.Waiters) != 1 {
		t.Fatalf("main.mu: %+v; want a drop-in lock with its one waiter", l)
	}
	if l.Owner != 0 {
		t.Fatalf("main.mu's owner word names goroutine %d, its waiter is %d: a holder read after its wait was; want no owner", l.Owner, l.Waiters[0].Goroutine)
	}
	if !slices.ContainsFunc(img.Notes, func(n string) bool { return strings.Contains(n, "1 drop-in locks changed hands") }) {
		t.Fatalf("no note that main.mu's holder is left unnamed: %q", img.Notes)
	}
}

// TestOwnerWordSelfDeadlock: a goroutine that locks a drop-in Mutex twice
// holds it and waits for it: the owner word names it, and it is the
// lock's waiter.
func TestOwnerWordSelfDeadlock(t *testing.T) {
	testOwnerWordSelfDeadlock(t, "ownerrace")
}

// TestOwnerWordSelfDeadlockExternal: the same, in a program linked by gcc
// (-ldflags=-linkmode=external, as cgo programs that link C libraries
// are), with its symbols and stripped: its .text starts with C's start-up
// code, and the pclntab counts from runtime.text, past it.
func TestOwnerWordSelfDeadlockExternal(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("NOTE: no gcc: a program linked externally cannot be built here")
	}
	for _, kind := range []string{"ownerrace-external", "ownerrace-external-stripped"} {
		t.Run(kind, func(t *testing.T) { testOwnerWordSelfDeadlock(t, kind) })
	}
}

func testOwnerWordSelfDeadlock(t *testing.T, kind string) {
	tg := startOwnerBuilt(t, kind, "-self")
	p, err := goproc.Attach(tg.pid, goproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range 2 { // a first Read, then one that confirms (confirm.go)
		img, err := p.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var l goproc.Lock
		switch {
		case !strings.HasSuffix(kind, "-stripped"):
			l = muLock(t, img)
		case len(img.Locks) == 1:
			l = img.Locks[0] // no symbol names it
		default:
			t.Fatalf("locks %+v; want main.mu alone", img.Locks)
		}
		if !l.DropIn || len(l.Waiters) != 1 || l.Owner == 0 || l.Owner != l.Waiters[0].Goroutine || l.OwnerGone {
			for _, g := range img.Goroutines {
				if g.Waits != nil {
					t.Logf("goroutine %d waits; its frames (%s): %+v", g.ID, g.StackNote, g.Frames)
				}
			}
			t.Fatalf("main.mu: %+v; want its one waiter as its owner, live (notes: %q)", l, img.Notes)
		}
	}
}

// BenchmarkReadDropInWaiters: attach and Read of a program whose 10,000
// goroutines wait for one drop-in Mutex (its owner word read, then its
// waiters read again to prove the word held while they waited) beside the
// same with a sync.Mutex (no owner word: nothing read again).
func BenchmarkReadDropInWaiters(b *testing.B) {
	const n = 10_000
	for _, kind := range []string{"dropin", "std"} {
		b.Run("mutex="+kind, func(b *testing.B) {
			args := []string{"-n", fmt.Sprint(n)}
			if kind == "std" {
				args = append(args, "-std")
			}
			tg := startOwner(b, args...)
			var st goproc.Stats
			cpu0 := cpuTime()
			for b.Loop() {
				p, err := goproc.Attach(tg.pid, goproc.Options{})
				if err != nil {
					b.Fatal(err)
				}
				img, err := p.Read(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if kind == "dropin" {
					if l := muLock(b, img); len(l.Waiters) != n || l.Owner != 1 {
						b.Fatalf("main.mu: %d waiters, owner %d; want %d, goroutine 1", len(l.Waiters), l.Owner, n)
					}
				}
				st = p.Stats()
				p.Close()
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(st.Bytes), "bytes-read/op")
		})
	}
}
