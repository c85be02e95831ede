package arena

import (
	"strconv"
	"strings"

	"github.com/lockwatch/lockwatch/internal/diag/proc"
	"github.com/lockwatch/lockwatch/procid"
)

// maxSweepNames bounds the directory entries one sweep looks at, so that a
// run directory filled with other files costs a bounded sweep.
const maxSweepNames = 1 << 16

// ProcessOfFile returns the process a file of the run directory belongs
// to: the identity in its name p-PID-START.*, as ProcessFile makes it.
func ProcessOfFile(name string) (procid.ID, bool) {
	rest, ok := strings.CutPrefix(name, "p-")
	if !ok {
		return procid.ID{}, false
	}
	pid, rest, ok := strings.Cut(rest, "-")
	if !ok {
		return procid.ID{}, false
	}
	start, _, ok := strings.Cut(rest, ".")
	if !ok {
		return procid.ID{}, false
	}
	p, ok1 := decimal(pid, 31)
	st, ok2 := decimal(start, 64)
	if !ok1 || !ok2 || p == 0 {
		return procid.ID{}, false
	}
	return procid.ID{PID: int(p), Start: st}, true
}

// decimal parses s as ProcessFile writes a number: decimal digits without
// a leading zero (but "0" itself), fitting in bits.
func decimal(s string, bits int) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' || s[0] == '+' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, bits)
	return n, err == nil
}

// SweepProcessFiles removes the files of the processes that are done with
// the run and that nothing recorded in it names any more, so that a run
// directory holds files for the processes of its process table and the
// processes its records name, however many processes came and went. A
// process's files (its info file, stack dictionary, socket, dumps: every
// p-PID-START.* file) are removed when:
//
//   - no process-table entry is of it (its slot was reclaimed by another);
//   - no holder record, waiter record, event or lock-order edge names it
//     (each names a stack of its dictionary, which a report reads);
//   - it is proven dead (a live process, registering or not, keeps its
//     files whatever the table says).
//
// The sweep is best effort: it reports how many files it removed, and
// an error only of listing the directory.
func SweepProcessFiles(rd *RunDir, a *Arena) (removed int, err error) {
	names, err := rd.names()
	if err != nil {
		return 0, err
	}
	ids := make(map[procid.ID]bool, len(names)/2)
	for _, n := range names {
		if id, ok := ProcessOfFile(n); ok {
			ids[id] = false
		}
	}
	a.dropReferenced(ids)
	for id := range ids {
		st, _ := proc.Check(id)
		ids[id] = st.Dead()
	}
	for _, n := range names {
		if id, ok := ProcessOfFile(n); ok && ids[id] && rd.Remove(n) == nil {
			removed++
		}
	}
	return removed + sweepDropinFiles(rd, names, a.namedPIDs), nil
}

// dropReferenced deletes from ids every process that the arena names: in
// its process table, a holder or waiter record, an event of a ring in use
// or a lock-order edge.
//
// The records are read without their sequence numbers: a record being
// written (or left torn by a writer that died writing it) is being
// replaced, and so loses the process it named anyway; what it is being
// replaced with names its writer, alive, or (an owner-died event) a dead
// holder that a holder record named when the writer read it.
func (a *Arena) dropReferenced(ids map[procid.ID]bool) {
	a.eachNamed(func(pid uint32, start uint64) bool {
		delete(ids, procid.ID{PID: int(pid), Start: start})
		return len(ids) > 0
	})
}

// eachNamed calls f with every process the arena names (see
// dropReferenced), a process once or more, until f returns false.
func (a *Arena) eachNamed(f func(pid uint32, start uint64) bool) {
	more := true
	drop := func(pid uint32, start uint64) {
		if pid != 0 && more {
			more = f(pid, start)
		}
	}
	for i := uint32(0); i < a.G.MaxProcs && more; i++ {
		p := a.Proc(i)
		if p.Owner.Load() == 0 {
			break // never-used slots follow the used ones
		}
		if p.state.Load() != SlotFree {
			drop(p.pid.Load(), p.start.Load())
		}
	}
	nlocks := min(a.Hdr.Nlocks.Load(), a.G.MaxLocks)
	for i := uint32(0); i < nlocks && more; i++ {
		h := &a.Lock(i).Holder
		drop(h.Pid.Load(), h.start.Load())
	}
	for i := uint32(0); i < a.G.MaxWaiters && more; i++ {
		if w := a.Waiter(i); w.Owner.Load() != 0 {
			drop(w.Pid.Load(), w.Start.Load())
		}
	}
	for i := uint32(0); i < nlocks && more; i++ {
		for k := uint32(0); k < a.G.RingSlots; k++ {
			if e := a.RingSlot(i, k); e.Seq.Load() != 0 {
				drop(e.Pid.Load(), e.Start.Load())
			}
		}
	}
	for i := uint32(0); i < a.G.EdgeSlots && more; i++ {
		if e := a.Edge(i); e.Key.Load() != 0 {
			drop(e.Pid.Load(), e.Start.Load())
		}
	}
}
