package liveness

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
)

// A Watcher is told by the kernel, through a pidfd per process, the moment a
// watched process exits (a zombie counts: pidfds become readable at exit,
// not at reaping). Wait blocks until a death, a Wake, or a timeout.
//
// Add, Wait and Close belong to one goroutine; Wake may be called from any.
// The zero value is not usable: use NewWatcher.
type Watcher struct {
	wakeR, wakeW *os.File

	mu   sync.Mutex // guards the fields below, against Wake
	fds  map[proc.Identity]int
	dead []proc.Identity // found dead by Add, reported by the next Wait
}

// NewWatcher returns an empty Watcher.
func NewWatcher() (*Watcher, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &Watcher{wakeR: r, wakeW: w, fds: make(map[proc.Identity]int)}, nil
}

// Add watches id. It opens a pidfd first and only then checks the start
// time, so that the pidfd cannot name a process that took a reused pid. A
// process already dead is reported by the next Wait. Adding an identity twice
// is harmless.
func (w *Watcher) Add(id proc.Identity) error {
	w.mu.Lock()
	_, seen := w.fds[id]
	w.mu.Unlock()
	if seen || id.IsZero() {
		return nil
	}
	fd, err := unix.PidfdOpen(id.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			w.markDead(id)
			return nil
		}
		return fmt.Errorf("liveness: pidfd_open %d: %w", id.PID, err)
	}
	st, err := proc.Check(id)
	if err != nil || st.Dead() {
		unix.Close(fd)
		if err != nil {
			return err
		}
		w.markDead(id)
		return nil
	}
	w.mu.Lock()
	w.fds[id] = fd
	w.mu.Unlock()
	return nil
}

func (w *Watcher) markDead(id proc.Identity) {
	w.mu.Lock()
	w.fds[id] = -1 // known, not watched
	w.dead = append(w.dead, id)
	w.mu.Unlock()
}

// Wake makes a Wait in progress (or the next one) return at once.
func (w *Watcher) Wake() {
	w.wakeW.Write([]byte{0}) // a full pipe already wakes Wait
}

// Wait waits up to timeout for a watched process to exit, and returns the
// processes that did (empty after a Wake or the timeout). It stops watching
// them.
func (w *Watcher) Wait(timeout time.Duration) ([]proc.Identity, error) {
	w.mu.Lock()
	died := w.dead
	w.dead = nil
	ids := make([]proc.Identity, 0, len(w.fds))
	pfd := []unix.PollFd{{Fd: int32(w.wakeR.Fd()), Events: unix.POLLIN}}
	for id, fd := range w.fds {
		if fd >= 0 {
			ids = append(ids, id)
			pfd = append(pfd, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		}
	}
	w.mu.Unlock()
	if len(died) > 0 {
		timeout = 0
	}
	ms := int(timeout.Milliseconds())
	for {
		_, err := unix.Poll(pfd, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return died, fmt.Errorf("liveness: poll: %w", err)
		}
		break
	}
	if pfd[0].Revents != 0 {
		var buf [64]byte
		unix.SetNonblock(int(w.wakeR.Fd()), true)
		w.wakeR.Read(buf[:]) // drain; EAGAIN is fine
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, p := range pfd[1:] {
		if p.Revents != 0 {
			id := ids[i]
			unix.Close(w.fds[id])
			w.fds[id] = -1
			died = append(died, id)
		}
	}
	return died, nil
}

// Close stops watching every process.
func (w *Watcher) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, fd := range w.fds {
		if fd >= 0 {
			unix.Close(fd)
		}
		delete(w.fds, id)
	}
	return errors.Join(w.wakeR.Close(), w.wakeW.Close())
}
