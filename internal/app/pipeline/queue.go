package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lockwatch/lockwatch/sync"
)

// A locker is the queue's cross-process write lock; *lockreg.Mutex is one.
type locker interface {
	Lock(ctx context.Context) error
	Unlock() error
}

// A Queue is the writing side of the run's queue in one process, built as
// Python's multiprocessing.Queue is: Put appends a frame to a local buffer and
// returns at once, and a feeder goroutine, started by the first Put, moves
// buffered frames into the pipe, one frame per write under the queue's
// cross-process write lock.
//
// The lock is held across the whole write of a frame, header and body. A
// frame larger than PIPE_BUF (4096 bytes) is not written atomically: the
// kernel may copy part of it and block until the reader makes room. A
// process killed there leaves the lock held and a partial frame in the pipe;
// killed anywhere between Lock and Unlock, it leaves the lock held, and every
// other process's feeder waits for it for ever.
//
// Whatever is still buffered when the process dies is lost. Close then
// Wait flushes the buffer, as Python's close and join_thread do.
//
// A Queue is safe for concurrent use. Its zero value is not usable: get one
// from newQueue.
type Queue struct {
	w    io.Writer
	lock locker
	ctx  context.Context // ends the feeder's wait for the lock

	mu      sync.Mutex
	buf     [][]byte // frames not yet handed to the feeder
	closed  bool
	started bool
	err     error // the feeder's first error
	failed  int   // frames the feeder could not write

	wake chan struct{} // a Put or Close for the feeder; capacity 1
	done chan struct{} // closed when the feeder returns
}

// newQueue returns a Queue writing to w under lock. The feeder gives up
// waiting for the lock when ctx ends, dropping what it has not written.
func newQueue(ctx context.Context, w io.Writer, lock locker) *Queue {
	q := &Queue{w: w, lock: lock, ctx: ctx, wake: make(chan struct{}, 1), done: make(chan struct{})}
	// The buffer's mutex is lockwatch's drop-in: lockwatch attach shows it
	// under this name whenever a goroutine holds it or waits for it.
	sync.SetName(&q.mu, "queue.buf")
	return q
}

// Put queues one frame of kind k. It copies body and never blocks.
func (q *Queue) Put(k Kind, body []byte) error {
	f := appendFrame(make([]byte, 0, headerSize+len(body)), k, body)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return errors.New("put on a closed queue")
	}
	q.buf = append(q.buf, f)
	if !q.started {
		q.started = true
		go q.feed()
	}
	q.notify()
	return nil
}

// Close says no more frames will be put. The feeder writes what is buffered,
// then returns. Close does not wait: call Wait.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	if !q.started {
		close(q.done)
		return
	}
	q.notify()
}

// Called with mu held.
func (q *Queue) notify() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Wait waits until the feeder returns, after Close or when the queue's
// context ends, and returns its first error.
func (q *Queue) Wait() error {
	<-q.done
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return fmt.Errorf("queue: %d frames not written: %w", q.failed, q.err)
	}
	return nil
}

// feed is the feeder goroutine: it takes the whole buffer, writes its frames
// one by one, and starts again, until the queue is closed and empty or the
// context ends.
func (q *Queue) feed() {
	defer close(q.done)
	for {
		q.mu.Lock()
		batch, closed := q.buf, q.closed
		q.buf = nil
		q.mu.Unlock()
		for i, f := range batch {
			if err := q.send(f); err != nil {
				q.mu.Lock()
				if q.err == nil {
					q.err = err
				}
				q.failed++
				q.mu.Unlock()
				if q.ctx.Err() != nil {
					q.mu.Lock()
					q.failed += len(batch) - i - 1 + len(q.buf)
					q.buf = nil
					q.mu.Unlock()
					return
				}
			}
		}
		if len(batch) > 0 {
			continue
		}
		if closed {
			return
		}
		select {
		case <-q.wake:
		case <-q.ctx.Done():
			q.mu.Lock()
			q.failed += len(q.buf)
			if q.err == nil && len(q.buf) > 0 {
				q.err = q.ctx.Err()
			}
			q.buf = nil
			q.mu.Unlock()
			return
		}
	}
}

// send writes one frame under the write lock, which it holds across the
// whole frame.
func (q *Queue) send(f []byte) error {
	if err := q.lock.Lock(q.ctx); err != nil {
		return fmt.Errorf("write lock: %w", err)
	}
	_, werr := q.w.Write(f)
	uerr := q.lock.Unlock()
	if werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if uerr != nil {
		return fmt.Errorf("write unlock: %w", uerr)
	}
	return nil
}
