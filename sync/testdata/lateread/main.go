// Command lateread releases, in the records mode, read locks taken before
// the probe switched it on, for TestLateRecordsReaders. Package aa's init
// read-locked aa.RW in the owner mode, with no reader record. Then:
//
//  1. goroutine B read-locks aa.RW (a record);
//  2. main's goroutine releases its own read lock (the one without a
//     record): B's record must stay;
//  3. a writer W waits to lock aa.RW, and a reader R behind it;
//  4. goroutine C releases B's read lock (sync allows it): B's record
//     must go, though sync's reader count also has R;
//  5. W locks and unlocks, then R reads and unlocks: no reader is left.
//
// It prints what the records show at each step, and exits 1 if they are
// wrong.
package main

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"github.com/lockwatch/lockwatch/internal/rt/inproc"
	"github.com/lockwatch/lockwatch/internal/rt/record"
	_ "github.com/lockwatch/lockwatch/probe"
	"github.com/lockwatch/lockwatch/sync/testdata/lateread/aa"
)

// readers lists the goroutines with a reader record of aa.RW, and the
// count of those without.
func readers() ([]int64, int) {
	l, _ := inproc.Describe(uint64(uintptr(unsafe.Pointer(&aa.RW))))
	var gs []int64
	for _, r := range l.Readers {
		gs = append(gs, r.Goroutine)
	}
	return gs, l.MoreReaders
}

// waiters returns once n goroutines wait for aa.RW.
func waiters(n int) {
	id := uint64(uintptr(unsafe.Pointer(&aa.RW)))
	for {
		for _, l := range inproc.Take(0).Locks {
			if l.ID == id && len(l.Waiters) >= n {
				return
			}
		}
		runtime.Gosched()
	}
}

func main() {
	bad := false
	check := func(step string, want []int64) {
		gs, more := readers()
		fmt.Printf("%s: readers %v, %d counted\n", step, gs, more)
		if fmt.Sprint(gs) != fmt.Sprint(want) || more != 0 {
			fmt.Printf("%s: want readers %v, none counted\n", step, want)
			bad = true
		}
	}
	// The init's read lock has no record: it was taken in the owner mode.
	check("after init", nil)

	b := make(chan int64)
	go func() {
		aa.RW.RLock()
		b <- record.Goid()
	}()
	gb := <-b
	check("B read-locked", []int64{gb})

	aa.RW.RUnlock() // main's, from the init
	check("main unlocked", []int64{gb})

	w, wUnlock := make(chan bool), make(chan bool)
	go func() {
		aa.RW.Lock()
		w <- true
		<-wUnlock
		aa.RW.Unlock()
	}()
	waiters(1)
	r := make(chan bool)
	go func() {
		aa.RW.RLock()
		aa.RW.RUnlock()
		r <- true
	}()
	waiters(2)

	done := make(chan bool)
	go func() {
		aa.RW.RUnlock() // B's
		done <- true
	}()
	<-done
	<-w
	check("C unlocked B's, W locked", nil)
	wUnlock <- true
	<-r
	if !aa.RW.TryLock() {
		fmt.Println("aa.RW is still read-locked")
		bad = true
	}
	if bad {
		os.Exit(1)
	}
}
