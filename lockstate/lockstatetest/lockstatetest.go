// Package lockstatetest is the conformance suite of lock sources: every
// lockstate.Source, diagnosed by the report, must give the findings the
// situation calls for, and none it does not. A backend passes it by
// building each scenario with its own mechanism (real processes, real
// locks, real deaths) through a Harness:
//
//	func TestConformance(t *testing.T) { lockstatetest.Run(t, harness{}) }
//
// A kind of lock that cannot express a scenario (an in-process mutex has no
// holder in a dead process; a kernel file lock is never lost) says so, with
// the reason, and the suite skips that scenario, saying why.
package lockstatetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/report"
)

// A Scenario is a situation of locks a harness builds.
type Scenario string

// The scenarios, in the order Run runs them.
const (
	// DeadHolder: the process holding Lock dies (SIGKILL, or whatever
	// ends a holder of the kind) while a goroutine of another live
	// process waits for Lock.
	DeadHolder Scenario = "dead-holder"
	// LostLock: Lock's holder lost it without releasing it (its backend
	// took it away: an expired lease) and runs on.
	LostLock Scenario = "lost-lock"
	// Cycle: two goroutines each hold one of Locks and wait for the
	// other's.
	Cycle Scenario = "cycle"
	// CycleKinds: a cycle as Cycle through locks of two different kinds.
	CycleKinds Scenario = "cycle-kinds"
	// StuckHolder: a live holder of Lock, waiting for no lock, has held
	// it longer than Setup.StuckAfter while a goroutine of Waiter has
	// waited as long.
	StuckHolder Scenario = "stuck-holder"
	// Readers: two goroutines hold Lock shared, and a writer waits for
	// them: a lock in use, nothing wrong.
	Readers Scenario = "readers"
	// SelfDeadlock: a goroutine waits for a lock it holds itself.
	SelfDeadlock Scenario = "self-deadlock"
	// NoFinding: Lock held and awaited by live goroutines, for less than
	// StuckAfter: nothing wrong.
	NoFinding Scenario = "no-finding"
)

// Scenarios is every scenario, in the order Run runs them.
var Scenarios = []Scenario{DeadHolder, LostLock, Cycle, CycleKinds, StuckHolder, Readers, SelfDeadlock, NoFinding}

// A Setup is a scenario a harness built: what to diagnose, and what the
// scenario's findings must name.
type Setup struct {
	// Sources read the backend: Locks, and Host (report.LocalHost for
	// processes of this machine, when the backend needs no other).
	Sources report.Sources
	// StuckAfter is the diagnosis's Options.StuckAfter; 0 is an hour. For
	// StuckHolder the holder and the waiter have held and waited longer
	// than it when Realize returns.
	StuckAfter time.Duration
	// Lock is the lock at fault (Readers, NoFinding: the lock in use).
	Lock lockstate.Key
	// Locks are the locks of a Cycle's or CycleKinds' loop, and Loop the
	// processes of its goroutines.
	Locks []lockstate.Key
	Loop  []procid.ID
	// Holder is the process of Lock's holder (LostLock: the one that lost
	// it; Cycle: unused); Waiter the process of a goroutine waiting for
	// Lock (SelfDeadlock, Cycle: unused). A Start of 0 matches any start
	// time; Host must be the one the report shows ("" for this machine).
	Holder, Waiter procid.ID
	// Inferred declares that the backend names holders from evidence
	// rather than records (lockstate.Holder.Inferred: a goroutine read
	// from memory with a pending deferred unlock). The suite then wants
	// every holder it checks labelled inferred, and a loop (Cycle,
	// CycleKinds, SelfDeadlock) reported as an inferred cycle on the same
	// locks and goroutines: never a proven deadlock.
	Inferred bool
}

// A Harness builds scenarios with its backend's own mechanism.
type Harness interface {
	// Realize builds s and returns once the backend shows it (every
	// holder and waiter recorded, every death done); t.Cleanup undoes it.
	// It returns an *Unsupported error when the backend's kind of lock
	// cannot express s.
	Realize(t *testing.T, s Scenario) (*Setup, error)
}

// Unsupported says why a kind of lock cannot express a scenario.
type Unsupported struct{ Reason string }

func (u *Unsupported) Error() string { return "unsupported: " + u.Reason }

// Cannot returns the *Unsupported error of reason.
func Cannot(format string, a ...any) error { return &Unsupported{Reason: fmt.Sprintf(format, a...)} }

// Run runs every scenario as a subtest of t: h builds it, report.Diagnose
// reads it, and the report must hold what the scenario calls for.
func Run(t *testing.T, h Harness) {
	for _, s := range Scenarios {
		t.Run(string(s), func(t *testing.T) {
			setup, err := h.Realize(t, s)
			if u := (*Unsupported)(nil); errors.As(err, &u) {
				t.Skipf("%s cannot be expressed: %s", s, u.Reason)
			}
			if err != nil {
				t.Fatalf("realize %s: %v", s, err)
			}
			stuck := setup.StuckAfter
			if stuck <= 0 {
				stuck = time.Hour
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := report.Diagnose(ctx, setup.Sources, report.Options{StuckAfter: stuck})
			if err != nil {
				t.Fatalf("diagnose: %v", err)
			}
			checks[s](t, setup, r)
			for _, f := range r.Findings {
				if f.Summary == "" || f.Next == "" {
					t.Errorf("%s finding with summary %q, next step %q; want both", f.Kind, f.Summary, f.Next)
				}
			}
			if t.Failed() {
				t.Logf("findings: %s", kinds(r))
			}
		})
	}
}

var checks = map[Scenario]func(*testing.T, *Setup, *report.Report){
	DeadHolder: func(t *testing.T, s *Setup, r *report.Report) {
		f := one(t, r, report.DeadHolder, s.Lock)
		if f == nil {
			return
		}
		if !is(f.Holder, s.Holder) || f.Holder.Alive {
			t.Errorf("dead holder %+v; want %s, not alive", f.Holder, s.Holder)
		}
		if !hasPID(f.Waiters, s.Waiter) {
			t.Errorf("waiters %v; want %s among them", pids(f.Waiters), s.Waiter)
		}
		if !r.Deadlock() || r.Has(report.Cycle) {
			t.Errorf("deadlock %v, cycle %v; want a deadlock, no cycle through the dead", r.Deadlock(), r.Has(report.Cycle))
		}
	},
	LostLock: func(t *testing.T, s *Setup, r *report.Report) {
		f := one(t, r, report.LostLock, s.Lock)
		if f == nil {
			return
		}
		if !is(f.Holder, s.Holder) {
			t.Errorf("lost-lock holder %+v; want %s, the one that lost it", f.Holder, s.Holder)
		}
	},
	Cycle:      checkCycle,
	CycleKinds: checkCycle,
	StuckHolder: func(t *testing.T, s *Setup, r *report.Report) {
		f := one(t, r, report.StuckHolder, s.Lock)
		if f == nil {
			return
		}
		if !is(f.Holder, s.Holder) || !f.Holder.Alive {
			t.Errorf("stuck holder %+v; want %s, alive", f.Holder, s.Holder)
		}
		inferred(t, s, *f.Holder)
		if !hasPID(f.Waiters, s.Waiter) {
			t.Errorf("waiters %v; want %s among them", pids(f.Waiters), s.Waiter)
		}
		if r.Has(report.DeadHolder) || r.Has(report.Cycle) {
			t.Errorf("findings %s; want a live stuck holder only", kinds(r))
		}
	},
	Readers: func(t *testing.T, s *Setup, r *report.Report) {
		none(t, r)
		l := lockRow(t, r, s.Lock)
		if l == nil {
			return
		}
		if len(l.Holders) < 2 || slices.ContainsFunc(l.Holders, func(p report.Party) bool { return !p.Read || !p.Alive }) {
			t.Errorf("holders %+v; want two or more live readers", l.Holders)
		}
		for _, h := range l.Holders {
			inferred(t, s, h)
		}
		if l.Waiting < 1 {
			t.Errorf("%d waiting; want the writer", l.Waiting)
		}
	},
	SelfDeadlock: func(t *testing.T, s *Setup, r *report.Report) {
		kind := report.SelfDeadlock
		if s.Inferred {
			kind = report.InferredCycle
		}
		f := one(t, r, kind, s.Lock)
		if f == nil {
			return
		}
		if !is(f.Holder, s.Holder) || !hasPID(f.Waiters, s.Holder) {
			t.Errorf("holder %+v, waiters %v; want %s both", f.Holder, pids(f.Waiters), s.Holder)
		}
		if f.Holder.Goroutine != 0 && !slices.ContainsFunc(f.Waiters, func(w report.Party) bool { return w.Goroutine == f.Holder.Goroutine }) {
			t.Errorf("holder g%d is none of the waiters %+v; want it to wait for itself", f.Holder.Goroutine, f.Waiters)
		}
		// The holder is the waiter: what is inferred is said in the
		// summary.
		if s.Inferred != strings.Contains(f.Summary, "inferred") {
			t.Errorf("summary %q; want it to say inferred: %v", f.Summary, s.Inferred)
		}
		deadlock(t, s, r)
	},
	NoFinding: func(t *testing.T, s *Setup, r *report.Report) {
		none(t, r)
		if l := lockRow(t, r, s.Lock); l != nil && (!is(l.Holder, s.Holder) || l.Waiting < 1) {
			t.Errorf("lock %+v; want held by %s and awaited", l, s.Holder)
		}
	},
}

func checkCycle(t *testing.T, s *Setup, r *report.Report) {
	kind := report.Cycle
	if s.Inferred {
		kind = report.InferredCycle
	}
	var f *report.Finding
	for i := range r.Findings {
		if r.Findings[i].Kind == kind {
			if f != nil {
				t.Errorf("two cycles; want one: %s", kinds(r))
			}
			f = &r.Findings[i]
		}
	}
	if f == nil {
		t.Errorf("no %s; want one through %v", kind, s.Locks)
		return
	}
	if s.Inferred && (r.Has(report.Cycle) || !strings.Contains(f.Summary, "inferred")) {
		t.Errorf("findings %s; want only an inferred cycle, saying so", kinds(r))
	}
	var got, want []string
	seen := map[procid.ID]bool{}
	for _, st := range f.Cycle {
		got = append(got, st.WaitsFor)
		if !st.Alive {
			t.Errorf("step %+v is not alive", st.Party)
		}
		i := slices.IndexFunc(s.Loop, func(id procid.ID) bool { return is(&st.Party, id) })
		if i < 0 {
			t.Errorf("step %+v: a goroutine of none of %v", st.Party, s.Loop)
			continue
		}
		seen[s.Loop[i]] = true
	}
	if len(seen) != len(s.Loop) {
		t.Errorf("the loop's goroutines are of %d of the processes %v; want all", len(seen), s.Loop)
	}
	for _, k := range s.Locks {
		want = append(want, k.Name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the loop waits for %v; want %v", got, want)
	}
	kindsOf := map[string]bool{}
	for _, k := range s.Locks {
		if l := lockRow(t, r, k); l != nil {
			kindsOf[l.Kind] = true
		}
	}
	wantKinds := map[string]bool{}
	for _, k := range s.Locks {
		wantKinds[k.Kind] = true
	}
	if want := len(wantKinds); len(kindsOf) != want {
		t.Errorf("the loop's locks are of %d kinds; want %d", len(kindsOf), want)
	}
	deadlock(t, s, r)
}

// deadlock checks that r proves a deadlock, or, when the backend infers
// its holders, that it does not claim one.
func deadlock(t *testing.T, s *Setup, r *report.Report) {
	t.Helper()
	if s.Inferred {
		if r.Deadlock() {
			t.Errorf("a deadlock claimed on inferred holders (findings: %s); want none proven", kinds(r))
		}
		return
	}
	if !r.Deadlock() {
		t.Error("not a deadlock")
	}
}

// inferred checks that p is labelled inferred when the backend infers its
// holders, and is not otherwise.
func inferred(t *testing.T, s *Setup, p report.Party) {
	t.Helper()
	if s.Inferred != (p.Inferred != "") {
		t.Errorf("holder %+v: inferred %q; want inferred: %v", p, p.Inferred, s.Inferred)
	}
}

// one returns the only finding of kind k on lock l, failing the test when
// there is none or more than one.
func one(t *testing.T, r *report.Report, k report.Kind, l lockstate.Key) *report.Finding {
	t.Helper()
	var out *report.Finding
	n := 0
	for i := range r.Findings {
		if f := &r.Findings[i]; f.Kind == k {
			n++
			if f.Lock == l.Name && f.LockKind == l.Kind {
				out = f
			}
		}
	}
	if out == nil || n != 1 {
		t.Errorf("%d %s findings; want one, on %s %q (findings: %s)", n, k, l.Kind, l.Name, kinds(r))
	}
	return out
}

func none(t *testing.T, r *report.Report) {
	t.Helper()
	if len(r.Findings) > 0 {
		t.Errorf("findings %s; want none", kinds(r))
	}
}

func lockRow(t *testing.T, r *report.Report, k lockstate.Key) *report.LockRow {
	t.Helper()
	for i := range r.Locks {
		if l := &r.Locks[i]; l.Name == k.Name && l.Kind == k.Kind {
			return l
		}
	}
	t.Errorf("no lock %s %q in the report", k.Kind, k.Name)
	return nil
}

// is reports whether p is a goroutine of the process id names (its start
// time when id has one).
func is(p *report.Party, id procid.ID) bool {
	return p != nil && p.Host == id.Host && p.PID == id.PID && (id.Start == 0 || p.Start == id.Start)
}

func hasPID(ps []report.Party, id procid.ID) bool {
	return slices.ContainsFunc(ps, func(p report.Party) bool { return is(&p, id) })
}

func pids(ps []report.Party) []string {
	var out []string
	for _, p := range ps {
		out = append(out, procid.ID{Host: p.Host, PID: p.PID, Start: p.Start}.String())
	}
	return out
}

func kinds(r *report.Report) string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, fmt.Sprintf("%s on %s %q: %s", f.Kind, f.LockKind, f.Lock, f.Summary))
	}
	return fmt.Sprint(out)
}
