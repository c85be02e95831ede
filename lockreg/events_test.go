package lockreg

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// TestEventOrderAcrossRingHalves: a lock's holder events (holder ring) and
// waiter events (waiter ring) come back in the order they happened, with a
// holder and a waiter in different processes.
func TestEventOrderAcrossRingHalves(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{})
	m, err := r.Mutex("test.lock")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	w := startRole(t, true, "wait", dir, "-")
	w.expect("waiting")
	waitForWaiter(t, dir, w.pid())
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	w.expect("acquired")
	w.expect("relocked")
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	me, wp := os.Getpid(), w.pid()
	want := fmt.Sprintf("acquire(%d) wait(%d) release(%d) acquire(%d) release(%d) acquire(%d) release(%d) ",
		me, wp, me, wp, wp, wp, wp)
	// A stuck event of the waiter may come between (its StuckAfter is short,
	// and a loaded machine may take that long to release): it is not an
	// event of either ring half's order.
	if got := strings.ReplaceAll(eventKinds(s), fmt.Sprintf("stuck(%d) ", wp), ""); got != want {
		t.Errorf("events %s; want %s", got, want)
	}
	for i := 1; i < len(s.Events); i++ {
		if s.Events[i].Time.Before(s.Events[i-1].Time) {
			t.Errorf("event %d at %v is before event %d at %v", i, s.Events[i].Time, i-1, s.Events[i-1].Time)
		}
	}
}
