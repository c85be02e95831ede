package lockreg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// tokenRole is the body of the fencing tests' children (runRole):
//
//	tokens - N      N acquires, each appending "pid token current" to the
//	                run's tokens file while holding the lock
//	tokenhold - N   N-1 acquires and releases, then one more held: prints
//	                "held TOKEN", releases on a line of stdin
//	tokenwait POL   waits for the lock: prints "acquired TOKEN ERR CURRENT",
//	                releases on a line of stdin
func tokenRole(r *Registry, m *Mutex, role string, args []string) int {
	ctx := context.Background()
	fail := func(format string, a ...any) int {
		say("error "+format, a...)
		return 1
	}
	n := 1
	if len(args) > 1 {
		n, _ = strconv.Atoi(args[1])
	}
	switch role {
	case "tokens":
		f, err := os.OpenFile(filepath.Join(r.Dir(), "tokens"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fail("%v", err)
		}
		defer f.Close()
		for i := 0; i < n; i++ {
			if err := m.Lock(ctx); err != nil {
				return fail("%v", err)
			}
			tok := m.Token()
			if _, err := fmt.Fprintf(f, "%d %d %v\n", r.pid, tok, m.IsCurrent(tok)); err != nil {
				return fail("%v", err)
			}
			if err := m.Unlock(); err != nil {
				return fail("%v", err)
			}
			if got := m.Token(); got != 0 {
				return fail("Token after Unlock = %d; want 0", got)
			}
		}
		say("done")
		return 0
	case "tokenhold":
		for i := 0; i < n; i++ {
			if err := m.Lock(ctx); err != nil {
				return fail("%v", err)
			}
			if i < n-1 {
				_ = m.Unlock()
			}
		}
		say("held %d", m.Token())
	case "tokenwait":
		say("waiting")
		err := m.Lock(ctx)
		if err != nil && err != ErrOwnerDead {
			return fail("%v", err)
		}
		tok := m.Token()
		say("acquired %d %v %v", tok, err == ErrOwnerDead, m.IsCurrent(tok))
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	if err := m.Unlock(); err != nil {
		return fail("%v", err)
	}
	say("released")
	return 0
}

// field returns the i-th space-separated field of a child's line.
func field(t *testing.T, line string, i int) int64 {
	t.Helper()
	f := strings.Fields(line)
	if i >= len(f) {
		t.Fatalf("line %q has no field %d", line, i)
	}
	v, err := strconv.ParseInt(f[i], 10, 64)
	if err != nil {
		t.Fatalf("line %q: field %d: %v", line, i, err)
	}
	return v
}

// TestTokenInProcess: a token per acquire, one more than the last, by Lock
// and TryLock; 0 without a hold; IsCurrent only for the hold now.
func TestTokenInProcess(t *testing.T) {
	for _, noRecord := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoRecord=%v", noRecord), func(t *testing.T) {
			r := openT(t, runDir(t), Options{NoRecord: noRecord})
			m, err := r.Mutex("a")
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Token(); got != 0 {
				t.Fatalf("Token of a free lock = %d; want 0", got)
			}
			before := time.Now().UnixNano()
			var last int64
			for i := 0; i < 4; i++ {
				if i%2 == 0 {
					if err := m.Lock(t.Context()); err != nil {
						t.Fatal(err)
					}
				} else if ok, err := m.TryLock(); !ok || err != nil {
					t.Fatalf("TryLock = %v, %v", ok, err)
				}
				tok := m.Token()
				switch {
				case i == 0 && (tok <= 0 || tok > before):
					t.Fatalf("first token %d; want in (0, %d]: the counter starts at the clock when the lock was named", tok, before)
				case i > 0 && tok != last+1:
					t.Fatalf("token %d after %d; want one more", tok, last)
				}
				if got := m.IsCurrent(tok); got == noRecord {
					t.Errorf("IsCurrent(own token) = %v; want %v (a NoRecord hold cannot be told current)", got, !noRecord)
				}
				if m.IsCurrent(tok-1) || m.IsCurrent(tok+1) || m.IsCurrent(0) {
					t.Errorf("IsCurrent of another token is true")
				}
				last = tok
				if err := m.Unlock(); err != nil {
					t.Fatal(err)
				}
				if m.Token() != 0 || m.IsCurrent(tok) {
					t.Errorf("after Unlock: Token %d, IsCurrent %v; want 0, false", m.Token(), m.IsCurrent(tok))
				}
			}
			if r.Close(); m.Token() != 0 || m.IsCurrent(last) {
				t.Errorf("after Close: a token")
			}
		})
	}
}

// TestTokensIncreaseAcrossProcesses: processes with and without the robust
// list and the record take one lock in turns; the tokens, in the order the
// holds happened (the order of appends to a file under the lock), go up by
// one at each acquire, whoever took it; and the snapshot shows the last one
// as the lock's, and each acquire event with its token.
func TestTokensIncreaseAcrossProcesses(t *testing.T) {
	dir := runDir(t)
	const procs, each = 4, 300
	var cs []*child
	for i := 0; i < procs; i++ {
		env := []string{"LOCKREG_TEST_NORECORD=" + strconv.Itoa(i/2)}
		cs = append(cs, startRoleEnv(t, i%2 == 0, "tokens", dir, env, "-", strconv.Itoa(each)))
	}
	for _, c := range cs {
		c.expect("done")
	}
	b, err := os.ReadFile(filepath.Join(dir, "tokens"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != procs*each {
		t.Fatalf("%d holds recorded; want %d", len(lines), procs*each)
	}
	pids := map[int64]bool{}
	var last int64
	for i, l := range lines {
		pid, tok := field(t, l, 0), field(t, l, 1)
		pids[pid] = true
		if i > 0 && tok != last+1 {
			t.Fatalf("hold %d (pid %d) has token %d after %d; want %d", i, pid, tok, last, last+1)
		}
		last = tok
		// Recording processes (the first two) see their hold current;
		// NoRecord ones cannot tell.
		if cur := strings.HasSuffix(l, "true"); cur != (pid == int64(cs[0].pid()) || pid == int64(cs[1].pid())) {
			t.Errorf("hold %q: IsCurrent %v", l, cur)
		}
	}
	if len(pids) != procs {
		t.Errorf("holds of %d processes; want %d", len(pids), procs)
	}
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Locks[0].Token; got != uint64(last) {
		t.Errorf("snapshot: lock token %d; want the last hold's %d", got, last)
	}
	acquires := 0
	for _, e := range s.Events {
		if e.Kind == arena.EventAcquire || e.Kind == arena.EventRelease {
			if e.Token == 0 || e.Token > uint64(last) {
				t.Errorf("event %s of pid %d has token %d; want one of the holds' (at most %d)", e.Kind, e.PID, e.Token, last)
			}
			acquires++
		}
	}
	if acquires == 0 {
		t.Errorf("no acquire or release events read: %s", eventKinds(s))
	}
}

// TestTokenAfterKilledHolder: a holder SIGKILLed holding the lock, a Recover
// waiter takes it: the waiter's token is the next one, the owner-died event
// carries the dead hold's token and the recovered event the new one; and a
// resource's Fence refuses the dead holder's late write (a write it had in
// flight), admits the new holder's, and refuses both once each hold ends.
func TestTokenAfterKilledHolder(t *testing.T) {
	modes(t, func(t *testing.T, robust bool) {
		dir := runDir(t)
		holder := startRole(t, robust, "tokenhold", dir, "-", "3")
		old := field(t, holder.expect("held"), 1)

		// The resource: a process of the run that admits writes.
		r := openT(t, dir, Options{})
		m, err := r.Mutex("test.lock")
		if err != nil {
			t.Fatal(err)
		}
		res, plain := &Fence{Mutex: m}, &Fence{}
		for _, f := range []*Fence{res, plain} {
			if err := f.Admit(old); err != nil {
				t.Fatalf("the holder's write refused while it holds the lock: %v", err)
			}
		}

		waiter := startRole(t, robust, "tokenwait", dir, "recover")
		waiter.expect("waiting")
		waitForWaiter(t, dir, waiter.pid())
		holder.kill()
		line := waiter.expect("acquired")
		tok := field(t, line, 1)
		if tok != old+1 || !strings.HasSuffix(line, "true true") {
			t.Fatalf("recovering waiter: %q; want token %d, ErrOwnerDead, current", line, old+1)
		}

		// The dead holder's write arrives late: refused by the current-hold
		// check before the new holder has written anything.
		if err := res.Admit(old); !errors.Is(err, ErrStaleToken) || !strings.Contains(err.Error(), "not the current hold") {
			t.Errorf("dead holder's late write: %v; want refused as not current", err)
		}
		for _, f := range []*Fence{res, plain} {
			if err := f.Admit(tok); err != nil {
				t.Fatalf("the new holder's write refused: %v", err)
			}
			if err := f.Admit(old); !errors.Is(err, ErrStaleToken) || !strings.Contains(err.Error(), "older than") {
				t.Errorf("dead holder's write after the new holder's: %v; want refused as older", err)
			}
		}

		s, err := arena.ReadSnapshot(dir)
		if err != nil {
			t.Fatal(err)
		}
		var died, recovered uint64
		for _, e := range s.Events {
			switch e.Kind {
			case arena.EventOwnerDied:
				died = e.Token
			case arena.EventRecovered:
				recovered = e.Token
			}
		}
		if died != uint64(old) || recovered != uint64(tok) {
			t.Errorf("events %s: owner-died token %d, recovered %d; want %d, %d", eventKinds(s), died, recovered, old, tok)
		}
		if l := s.Locks[0]; l.Token != uint64(tok) || l.Holder == nil || l.Holder.Token != uint64(tok) {
			t.Errorf("snapshot lock %+v; want token %d with its holder", l, tok)
		}

		// The new hold ends: a write with its token is refused by the
		// current-hold check; the highest-token check alone admits it.
		if _, err := waiter.stdin.Write([]byte("\n")); err != nil {
			t.Fatal(err)
		}
		waiter.expect("released")
		if err := res.Admit(tok); !errors.Is(err, ErrStaleToken) {
			t.Errorf("write of a released hold: %v; want refused", err)
		}
		if err := plain.Admit(tok); err != nil {
			t.Errorf("highest-token fence refused the highest token: %v", err)
		}
		// The next hold, in this process, gets the next token.
		if err := m.Lock(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := m.Token(); got != tok+1 {
			t.Errorf("next token %d; want %d", got, tok+1)
		}
		_ = m.Unlock()
	})
}

// TestTokensAfterRunRemoved: a run's directory removed while a holder of
// its lock still runs (a stale holder: its mapping outlives the file), and
// made again at the same path: the lock of the same name starts above
// every token of the old run, so a resource that kept the old run's highest
// token refuses the stale holder and admits the new one. With counters
// starting at 0 the new holder's token would be below the old.
func TestTokensAfterRunRemoved(t *testing.T) {
	dir := runDir(t)
	stale := startRole(t, true, "tokenhold", dir, "-", "2000")
	old := field(t, stale.expect("held"), 1)
	f := &Fence{}
	if err := f.Admit(old); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r := openT(t, dir, Options{})
	m, err := r.Mutex("test.lock")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok := m.Token()
	if tok <= old {
		t.Fatalf("new run's token %d; want above the old run's %d", tok, old)
	}
	if err := f.Admit(tok); err != nil {
		t.Errorf("new holder refused: %v", err)
	}
	if err := f.Admit(old); !errors.Is(err, ErrStaleToken) {
		t.Errorf("stale holder of the removed run admitted: %v", err)
	}
	_ = m.Unlock()
	// The stale holder still holds its own (removed) arena's lock.
	if _, err := stale.stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	stale.expect("released")
}

// TestIsCurrentWindows: the instants in which the counter still holds a
// hold's token although that hold has ended: another process's CAS before
// its increment, after a release or after a death. A check of the counter
// alone would call the old token current there; IsCurrent, which pairs the
// token with the holder record's pid and the word's, does not.
func TestIsCurrentWindows(t *testing.T) {
	r := openT(t, runDir(t), Options{})
	m, err := r.Mutex("a")
	if err != nil {
		t.Fatal(err)
	}
	const other = 4242 // a pid in the word: what another process's CAS writes
	if err := m.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok := m.Token()
	if !m.IsCurrent(tok) {
		t.Fatal("own hold not current")
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	// Released, then another process's CAS: the counter is still tok.
	m.s.Word.Store(other)
	if got := int64(m.s.Holder.Token.Load()); got != tok || m.IsCurrent(tok) {
		t.Errorf("after a release and another's CAS: counter %d, IsCurrent(%d) %v; want the counter unchanged and false", got, tok, m.IsCurrent(tok))
	}
	// Or this process's own next CAS, before its record: the word names
	// the old hold's pid again.
	m.s.Word.Store(r.pid)
	if m.IsCurrent(tok) {
		t.Errorf("after a release and this process's next CAS: IsCurrent(%d) true", tok)
	}
	m.s.Word.Store(0)

	if err := m.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok = m.Token()
	// The holder "died": the kernel's mark, then a Recover waiter's CAS
	// before it writes its record and token.
	m.s.Word.Store(arena.OwnerDiedBit)
	if m.IsCurrent(tok) {
		t.Error("a dead holder's hold is current")
	}
	m.s.Word.Store(other)
	if m.IsCurrent(tok) {
		t.Error("a dead holder's hold is current after a recoverer's CAS")
	}
	m.s.Word.Store(r.pid)
	if !m.IsCurrent(tok) {
		t.Error("the hold is not current once the word names its holder again")
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestNoRecordRecovererKilled: a recording holder is SIGKILLed, a NoRecord
// Recover waiter takes the lock over (and writes no record of its own), and
// is SIGKILLed in turn, holding it: the lock's dead holder is not the
// first one, whose record would still name it, but an unnamed process; the
// recoverer's token goes on from the first holder's.
func TestNoRecordRecovererKilled(t *testing.T) {
	dir := runDir(t)
	first := startRole(t, true, "tokenhold", dir, "-", "1")
	tok := field(t, first.expect("held"), 1)
	rec := startRoleEnv(t, true, "tokenwait", dir, []string{"LOCKREG_TEST_NORECORD=1"}, "recover")
	rec.expect("waiting")
	waitForWaiter(t, dir, rec.pid())
	first.kill()
	line := rec.expect("acquired")
	if field(t, line, 1) != tok+1 || !strings.HasSuffix(line, "true false") {
		t.Fatalf("NoRecord recoverer: %q; want token %d, ErrOwnerDead, not current (no record)", line, tok+1)
	}
	rec.kill() // the kernel marks the word: robust lists in both children
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	l := s.Locks[0]
	if !l.OwnerDied || l.Holder != nil || l.Token != uint64(tok+1) {
		t.Errorf("lock %+v (holder %+v); want OWNER_DIED, no holder record (the first holder's would name the wrong process), counter %d", l, l.Holder, tok+1)
	}
}
