package clock

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor polls cond until it holds, failing the test after a generous
// deadline: a condition, never a timed assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNeverAheadAndMonotonicPerReader(t *testing.T) {
	c := New(time.Millisecond, 20*time.Millisecond)
	c.Start()
	defer c.Stop()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := int64(0)
			for i := 0; i < 200_000; i++ {
				v := c.Now()
				after := Exact()
				if v > after {
					t.Errorf("Now = %d is ahead of the exact time %d", v, after)
					return
				}
				if v < prev {
					t.Errorf("Now went back from %d to %d", prev, v)
					return
				}
				prev = v
			}
		}()
	}
	wg.Wait()
}

func TestMonotonicAcrossParking(t *testing.T) {
	c := New(time.Millisecond, time.Millisecond)
	c.Start()
	defer c.Stop()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := int64(0)
			for i := 0; i < 200; i++ {
				v := c.Now()
				if v < prev {
					t.Errorf("Now went back from %d to %d", prev, v)
					return
				}
				prev = v
				// Idle gaps of 0-3 ms against a 1 ms idle limit: the
				// ticker parks now and then, so reads race with wake-ups.
				time.Sleep(time.Duration(i%4) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
}

func TestTicks(t *testing.T) {
	c := New(time.Millisecond, time.Hour)
	c.Start()
	defer c.Stop()
	first := c.Now()
	waitFor(t, "the ticker to advance the clock", func() bool { return c.Now() > first })
}

func TestParksWhenIdleAndWakesOnRead(t *testing.T) {
	c := New(time.Millisecond, 5*time.Millisecond)
	c.Start()
	defer c.Stop()
	waitFor(t, "the idle ticker to park", func() bool { return c.state.Load() == parked })
	// Parked, the stored value is stale; the reader that wakes the ticker
	// must get the exact time, and so must everyone after it.
	before := Exact()
	if v := c.Now(); v < before {
		t.Fatalf("first read after parking = %d, older than the exact time %d before the call", v, before)
	}
	if st := c.state.Load(); st != running && st != probing {
		t.Fatalf("state after a read of a parked clock = %d; want running", st)
	}
	if v := c.Now(); v < before {
		t.Fatalf("second read = %d, older than %d", v, before)
	}
	// The ticker runs again: the clock advances without further wake-ups.
	v := c.Now()
	waitFor(t, "the woken ticker to tick", func() bool { return c.now.Load() > v })
}

func TestReadersAnswerTheProbe(t *testing.T) {
	c := New(time.Millisecond, time.Hour)
	c.Start()
	defer c.Stop()
	// The ticker asks whether anyone reads by storing probing; a reader
	// answers by storing running, which keeps the ticker from parking.
	c.state.Store(probing)
	c.Now()
	if st := c.state.Load(); st != running {
		t.Fatalf("state after a read of a probing clock = %d; want running (%d)", st, running)
	}
	// Without a reader, the next probe parks it (tested by
	// TestParksWhenIdleAndWakesOnRead).
}

func TestStopped(t *testing.T) {
	c := New(time.Millisecond, time.Hour)
	before := Exact()
	if v := c.Now(); v < before {
		t.Fatalf("a clock never started reads %d, older than the exact %d", v, before)
	}
	c.Start()
	c.Start()
	c.Stop()
	if c.state.Load() == stopped {
		t.Fatal("stopped after one of two Stops")
	}
	c.Stop()
	c.Stop() // an extra Stop is harmless
	if c.state.Load() != stopped {
		t.Fatal("still running after the last Stop")
	}
	before = Exact()
	if v := c.Now(); v < before {
		t.Fatalf("a stopped clock reads %d, older than the exact %d", v, before)
	}
	// A restart works, also with a wake token left over.
	c.wake <- struct{}{}
	c.Start()
	defer c.Stop()
	first := c.Now()
	waitFor(t, "the restarted ticker to tick", func() bool { return c.Now() > first })
}

func BenchmarkNow(b *testing.B) {
	c := New(time.Millisecond, 100*time.Millisecond)
	c.Start()
	defer c.Stop()
	var s int64
	for i := 0; i < b.N; i++ {
		s += c.Now()
	}
	_ = s
}

func BenchmarkExact(b *testing.B) {
	var s int64
	for i := 0; i < b.N; i++ {
		s += Exact()
	}
	_ = s
}
