package filelocksrc

import (
	"strings"
	"time"
)

// seen is what a read saw of a holder or a waiter, for the next read.
type seen struct {
	since time.Time
	ran   int64 // a waiter's blocked threads' CPU time and switches; -1 unknown
}

// seenKey names a holder or a waiter of a lock across reads (the lock
// by its kind, file and range, not its name: a file renamed is the same
// lock): the n-th request of a waiter's process on the lock.
type seenKey struct {
	waiter bool
	lock   lockID
	pid    int
	start  uint64
	n      int
}

// sinceNote says what a file lock's durations mean.
const sinceNote = "file locks carry no times: held-for and waiting-for are how long lockwatch has seen each holder and waiter without a break (a lower bound; a waiter whose blocked thread did not run between two looks proves that its lock was not released)"

// since sets the Since of every holder and waiter: when this Source first
// saw it, as long as it has been seen without a break. The kernel keeps no
// times, so this is a lower bound, and a break is proved absent only by a
// waiter's blocked thread that did not run between two reads: the kernel
// wakes the requests right under a lock when it is released, so while one
// of them sleeps on, the lock stays held by the same holder.
func (s *Source) since(r *reader, ms []*model, taken time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range ms {
		if len(m.lock.Waiters) > 0 {
			n += len(m.lock.Holders) + len(m.lock.Waiters)
		}
	}
	next := make(map[seenKey]seen, n)
	threads := map[int][]thread{}
	for _, m := range ms {
		l := &m.lock
		kept := false // a request right under the lock slept through since the last read
		var count map[int]int
		if len(l.Waiters) > 0 {
			count = map[int]int{}
		}
		for i := range l.Waiters {
			w := &l.Waiters[i]
			count[w.PID]++
			key := seenKey{waiter: true, lock: m.id, pid: w.PID, start: w.Start, n: count[w.PID]}
			ran := r.waitRan(w.PID, m.ino, threads)
			w.Since = taken
			if prev, ok := s.last[key]; ok && ran >= 0 && prev.ran == ran {
				w.Since = prev.since
				if m.direct[w.PID] {
					kept = true
				}
			}
			next[key] = seen{since: w.Since, ran: ran}
		}
		for i := range l.Holders {
			h := &l.Holders[i]
			if h.ID.IsZero() {
				continue // a holder nobody can name: no time either
			}
			if len(l.Waiters) == 0 {
				// Seen now; and not remembered: only a waiter seen at this
				// read and the next can carry a holder's time over.
				h.Since = taken
				continue
			}
			key := seenKey{lock: m.id, pid: h.PID, start: h.Start}
			h.Since = taken
			if kept {
				if prev, ok := s.last[key]; ok {
					h.Since = prev.since
				}
			}
			next[key] = seen{since: h.Since}
		}
	}
	s.last = next
}

// waitRan is the CPU time plus time slices of pid's threads blocked taking
// a lock on inode ino: unchanged between two reads, none of them ran in
// between. -1 when no such thread can be told (its system call unreadable
// and more than one thread).
func (r *reader) waitRan(pid int, ino uint64, cache map[int][]thread) int64 {
	ts, ok := cache[pid]
	if !ok {
		tids, err := r.p.tids(pid)
		if err == nil {
			for _, tid := range tids {
				if t, err := r.p.thread(pid, tid, false); err == nil {
					ts = append(ts, t)
				}
			}
		}
		cache[pid] = ts
	}
	var sum int64
	found := false
	for i := range ts {
		fd, _, ok := ts[i].lockWait()
		if !ok || !r.onFd(pid, fd, ino) {
			continue
		}
		if ts[i].ran < 0 {
			return -1
		}
		sum += ts[i].ran
		found = true
	}
	if found {
		return sum
	}
	// Its system call unreadable (another user's process): a process of
	// one thread asleep in a lock wait is that thread.
	if len(ts) == 1 && ts[0].sys == nil && ts[0].ran >= 0 && strings.Contains(ts[0].wchan, "lock") {
		return ts[0].ran
	}
	return -1
}
