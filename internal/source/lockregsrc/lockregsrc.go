// Package lockregsrc presents a lockreg run to the diagnosis: it reads the
// run's arena (arena.ReadSnapshot) and turns it into a lockstate.Snapshot
// of locks of kind "lockreg", with the processes' stack dictionaries as the
// stack resolver.
//
//	r, err := report.Diagnose(ctx, report.Sources{Locks: []lockstate.Source{lockregsrc.New(dir)}, Host: liveness.System{}}, report.Options{})
package lockregsrc

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// Kind is the kind of the locks a Source reads.
const Kind = "lockreg"

// OwnerDied is the reason of lockreg's own proof that a holder died: the
// lock word carries FUTEX_OWNER_DIED (the kernel, or a waiter that proved
// the holder dead, marked it).
const OwnerDied lockstate.Reason = "owner-died"

// The names of lockreg's facts. FactWord (a lock's): its futex word in hex,
// the holder's pid in the low 30 bits, 0x80000000 waiters, 0x40000000 owner
// died. FactRobust (a process's): "true" when the kernel marks its locks
// OWNER_DIED if it dies (it registered the robust-futex list). Both are raw:
// in the JSON report, not in the tables. FactToken (a held lock's, shown in
// the tables): the fencing token of the hold its holder record names (a
// dead holder's, after OWNER_DIED), in decimal; absent when no record
// names the holder. FactCounter (raw): the lock's fencing counter, the
// token of its latest acquire (the next acquire gets one more).
// FactSlot (a process's, shown in the tables) is on a process that a
// holder or waiter record names and whose process-table slot a later
// process took (arena.Snapshot.Former): its role and command come from the
// info file it left in the run directory, its start in the run is not
// known.
const (
	FactWord    = "word"
	FactRobust  = "robust"
	FactToken   = "token"
	FactCounter = "counter"
	FactSlot    = "slot"
)

// slotTaken is FactSlot's value.
const slotTaken = "taken by a later process"

// A Source reads the lockreg run in a directory. Its zero value reads
// nothing; build it with New. It is safe for concurrent use.
type Source struct {
	Dir string
	// ReadSnapshot reads the run; nil means arena.ReadSnapshot. Tests
	// give synthetic snapshots.
	ReadSnapshot func(dir string) (*arena.Snapshot, error)
}

// New returns the Source of the run in dir.
func New(dir string) Source { return Source{Dir: dir} }

// Read reads the run's arena once, without joining the run or waiting for
// any lock. Its errors are lockreg's (an *arena.ArenaError, an
// *fs.PathError, lockreg.ErrNotRun).
func (s Source) Read(ctx context.Context) (*lockstate.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	read := s.ReadSnapshot
	if read == nil {
		read = arena.ReadSnapshot
	}
	snap, err := read(s.Dir)
	if err != nil {
		return nil, err
	}
	return Convert(snap), nil
}

// Convert turns a lockreg snapshot into the diagnosis's model. Stacks are
// resolved through s.Stack, which reads a process's dictionary file the
// first time one of its stacks is asked for.
func Convert(s *arena.Snapshot) *lockstate.Snapshot {
	out := &lockstate.Snapshot{Run: s.Dir, Taken: s.Taken, Stacks: dictionaries{s}, WaitLabel: arena.WaitLabel}
	// One array backs every lock's and process's facts: a process has one,
	// a lock at most three.
	facts := make([]lockstate.Fact, 0, len(s.Processes)+2*len(s.Former)+3*len(s.Locks))
	fact := func(fs ...lockstate.Fact) lockstate.Facts {
		n := len(facts)
		facts = append(facts, fs...)
		return lockstate.Facts{Extra: facts[n:len(facts):len(facts)]}
	}
	for _, p := range s.Processes {
		lp := lockstate.Process{ID: p.Identity(), Started: p.Registered,
			Facts: fact(lockstate.Fact{Name: FactRobust, Value: strconv.FormatBool(p.Robust), Raw: true})}
		if p.Info != nil {
			lp.Role, lp.Command = p.Info.Role, strings.Join(p.Info.Args, " ")
		}
		if p.State == arena.ProcExited {
			lp.Closed, lp.ClosedAt = true, p.Exited
		}
		out.Processes = append(out.Processes, lp)
	}
	for _, p := range s.Former {
		lp := lockstate.Process{ID: p.Identity(), Facts: fact(lockstate.Fact{Name: FactSlot, Value: slotTaken})}
		if p.Info != nil {
			lp.Role, lp.Command = p.Info.Role, strings.Join(p.Info.Args, " ")
			lp.Facts = fact(lockstate.Fact{Name: FactSlot, Value: slotTaken},
				lockstate.Fact{Name: FactRobust, Value: strconv.FormatBool(p.Robust), Raw: true})
		}
		out.Processes = append(out.Processes, lp)
	}
	at := make(map[int]int, len(s.Locks)) // lock index -> position in out.Locks
	for i := range s.Locks {
		l := &s.Locks[i]
		word := lockstate.Fact{Name: FactWord, Value: wordText(l.Word), Raw: true}
		counter := lockstate.Fact{Name: FactCounter, Value: strconv.FormatUint(l.Token, 10), Raw: true}
		var ll lockstate.Lock
		if l.Holder != nil && l.Holder.Token != 0 {
			ll.Facts = fact(lockstate.Fact{Name: FactToken, Value: strconv.FormatUint(l.Holder.Token, 10)}, word, counter)
		} else {
			ll.Facts = fact(word, counter)
		}
		ll.Kind, ll.Name, ll.Recovery = Kind, l.Name, recovery
		h, held := holderOf(s, l)
		if held {
			ll.Holders = []lockstate.Holder{h}
		}
		if l.OwnerDied {
			robust := false
			if held {
				if p, ok := s.Process(h.ID); ok {
					robust = p.Robust
				}
			}
			ll.Abandoned = &lockstate.Proof{Reason: OwnerDied, Says: diedHow(robust)}
		}
		at[l.Index] = len(out.Locks)
		out.Locks = append(out.Locks, ll)
	}
	// s.Waiters is sorted longest-waiting first: each lock's waiters keep
	// that order.
	for _, w := range s.Waiters {
		i, ok := at[w.Lock]
		if !ok {
			continue
		}
		out.Locks[i].Waiters = append(out.Locks[i].Waiters, lockstate.Waiter{
			Party: lockstate.Party{ID: w.Identity(), Goroutine: w.Goroutine}, Since: w.Since, Stack: w.Stack})
	}
	out.Events = make([]lockstate.Event, 0, len(s.Events))
	for _, e := range s.Events {
		out.Events = append(out.Events, lockstate.Event{Seq: e.Seq, Time: e.Time, Kind: e.Kind.String(),
			Lock:  lockstate.Key{Kind: Kind, Name: e.LockName},
			Party: lockstate.Party{ID: procid.ID{PID: e.PID, Start: e.Start}, Goroutine: e.Goroutine}, Stack: e.Stack,
			Token: int64(e.Token)})
	}
	if len(s.Orders.Edges) > 0 {
		out.Orders = make([]lockstate.OrderEdge, 0, len(s.Orders.Edges))
	}
	for _, e := range s.Orders.Edges {
		out.Orders = append(out.Orders, lockstate.OrderEdge{
			From: lockstate.Key{Kind: Kind, Name: e.From}, To: lockstate.Key{Kind: Kind, Name: e.To},
			Party:     lockstate.Party{ID: procid.ID{PID: e.PID, Start: e.Start}, Goroutine: e.Goroutine},
			FromStack: e.FromStack, ToStack: e.ToStack, Time: e.Time})
	}
	out.OrdersDropped = s.Orders.Dropped
	if s.Orders.Dropped > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("%d lock-order edges were not recorded: the run's edge table (%d edges) was full; a lock-order cycle through them is missed (start the run with a larger lockreg.Options.MaxEdges)",
			s.Orders.Dropped, s.Orders.Capacity))
	}
	if s.Orders.Untracked > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("%d acquires were not tracked for lock order: goroutines held more than 15 locks at once; edges from those locks are missed", s.Orders.Untracked))
	}
	if s.Torn > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("%d records were left out: they stayed mid-write (a process died writing them)", s.Torn))
	}
	// What the bounded read left out (arena.ReadOptions); what the
	// dictionaries leave out is known once the stacks are resolved
	// (dictionaries.Notes).
	out.Notes = append(out.Notes, s.Notes()...)
	return out
}

// wordText is a lock word in hex, 0x and eight digits; a free lock's
// (most of a run's) without allocating.
func wordText(w uint32) string {
	if w == 0 {
		return "0x00000000"
	}
	return fmt.Sprintf("0x%08x", w)
}

// holderOf returns the holder of a held lock: its record, or, while the
// record is being written, the pid in the word with the start time of the
// process table's entry for that pid (goroutine unknown). A lock marked
// OWNER_DIED whose record is unreadable has no holder to name.
func holderOf(s *arena.Snapshot, l *arena.Lock) (lockstate.Holder, bool) {
	if !l.Held() {
		return lockstate.Holder{}, false
	}
	if h := l.Holder; h != nil {
		return lockstate.Holder{Party: lockstate.Party{ID: h.Identity(), Goroutine: h.Goroutine}, Since: h.Since, Stack: h.Stack}, true
	}
	if l.HolderPID == 0 {
		return lockstate.Holder{}, false
	}
	id := procid.ID{PID: l.HolderPID}
	for _, p := range s.Processes {
		if p.PID == l.HolderPID && p.State == arena.ProcRunning {
			id.Start = p.Start
		}
	}
	return lockstate.Holder{Party: lockstate.Party{ID: id}}, true
}

// recovery is what the waiters of a dead holder's lock can do.
const recovery = "waiters never get it under the Stall policy: kill the run, or use the Recover policy to repair and take it"

// diedHow says who marked the lock word: the kernel, for a holder whose
// process registered the robust list; otherwise a waiter that proved the
// holder dead (pid gone, zombie or reused) and marked it as the kernel would.
func diedHow(robust bool) string {
	if robust {
		return "the kernel marked it OWNER_DIED"
	}
	return "a waiter proved its death and marked it OWNER_DIED"
}

// dictionaries resolves stack ids through the processes' stack dictionary
// files, which stay readable after a process died.
type dictionaries struct{ s *arena.Snapshot }

func (d dictionaries) Stack(p procid.ID, id uint64) ([]stackdump.Frame, bool) {
	fs, ok := d.s.Stack(p, id)
	if fs == nil {
		return nil, ok
	}
	out := make([]stackdump.Frame, len(fs))
	for i, f := range fs {
		out[i] = stackdump.Frame{Func: f.Func, File: f.File, Line: f.Line}
	}
	return out, ok
}

// Notes says what the dictionaries could not give, once the report has
// resolved its stacks.
func (d dictionaries) Notes() []string { return d.s.StackNotes() }
