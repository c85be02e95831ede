package pipeline

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
)

const probablyStillBlocked = testbound.ProbablyStillBlocked

// testLock is a locker that records, for each write, whether it was held,
// and that can be made to block.
type testLock struct {
	mu      sync.Mutex
	held    bool
	gate    chan struct{} // Lock waits for it to be closed
	entered chan struct{} // receives at each Lock call, while it has room
}

func newTestLock() *testLock {
	l := &testLock{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	close(l.gate)
	return l
}

func (l *testLock) Lock(ctx context.Context) error {
	select {
	case l.entered <- struct{}{}:
	default:
	}
	select {
	case <-l.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held {
		return errors.New("test lock: locked twice")
	}
	l.held = true
	return nil
}

func (l *testLock) Unlock() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held {
		return errors.New("test lock: unlock of an unlocked lock")
	}
	l.held = false
	return nil
}

// lockedWriter fails any write made without the lock held.
type lockedWriter struct {
	lock *testLock
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.lock.mu.Lock()
	held := w.lock.held
	w.lock.mu.Unlock()
	if !held {
		return 0, errors.New("write without the lock")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func TestQueueFlushesUnderLock(t *testing.T) {
	lock := newTestLock()
	w := &lockedWriter{lock: lock}
	q := newQueue(context.Background(), w, lock)
	for range 100 {
		if err := q.Put(KindMessage, []byte("result")); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Put(KindStop, []byte("STOP")); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := q.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, stopped, err := readAll(w.buf.Bytes())
	if msgs != 100 || !stopped || err != nil {
		t.Errorf("got %d messages, stopped %v, error %v; want 100, true, nil", msgs, stopped, err)
	}
	if err := q.Put(KindMessage, nil); err == nil {
		t.Error("Put after Close: got nil error; want one")
	}
}

// TestQueuePutNeverBlocks: while another process holds the write lock,
// Put still returns, and the frames wait in the buffer; if the queue's
// context ends, the feeder gives up and reports them.
func TestQueuePutNeverBlocks(t *testing.T) {
	lock := newTestLock()
	lock.gate = make(chan struct{}) // held elsewhere, for ever
	ctx, cancel := context.WithCancel(context.Background())
	q := newQueue(ctx, &lockedWriter{lock: lock}, lock)

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			if err := q.Put(KindMessage, make([]byte, 2000)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(probablyStillBlocked):
		t.Fatal("Put blocked while the write lock was held")
	}
	<-lock.entered // the feeder waits for the lock
	cancel()
	if err := q.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait: got %v; want context.Canceled", err)
	}
}
