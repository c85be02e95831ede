package cli

import (
	"bufio"
	"context"
	"io"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/lockreg"
	"github.com/lockwatch/lockwatch/report"
)

// watch, not on a terminal, prints a report each time it changes (who
// holds, who waits), not each time it is read: durations that grow are no
// change.
func TestWatchPrintsChanges(t *testing.T) {
	dir := runDir(t)
	reg, err := lockreg.Open(dir, lockreg.Options{Role: "main"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	m, err := reg.Mutex("q")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}

	w := startWatchJSON(t, dir)
	next := w.next
	first := next()
	if len(first.Locks) != 1 || first.Locks[0].Holder == nil {
		t.Fatalf("got locks %+v; want q held", first.Locks)
	}
	// Many reads at 10ms go by; the next line must come from the release.
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	second := next()
	if second.Locks[0].Holder != nil {
		t.Errorf("got locks %+v after the release; want q free (a line printed without a change?)", second.Locks)
	}
	w.stop("without a deadlock")
}

// Reports that differ only in what always grows (durations, the time they
// were taken, summaries that say how long) have one fingerprint; who holds,
// who waits and the findings' keys make another.
func TestFingerprint(t *testing.T) {
	holder := report.Party{PID: 1, Start: 2, Goroutine: 3, Alive: true, State: "alive", For: report.Duration(time.Second)}
	base := func() *report.Report {
		h := holder
		return &report.Report{Taken: time.Unix(100, 0),
			Findings:  []report.Finding{{Kind: report.StuckHolder, Lock: "q", Holder: &h, Summary: "held for 1s"}},
			Locks:     []report.LockRow{{Name: "q", State: "held", Holder: &h}},
			Waiters:   []report.WaiterRow{{Party: report.Party{PID: 4, Goroutine: 5}, Lock: "q"}},
			Processes: []report.ProcRow{{PID: 1, State: "alive"}}}
	}
	same := []func(r *report.Report){
		func(r *report.Report) { r.Taken = r.Taken.Add(time.Hour) },
		func(r *report.Report) { r.Findings[0].Summary = "held for 1h" },
		func(r *report.Report) { r.Locks[0].Holder.For = report.Duration(time.Hour) },
		func(r *report.Report) { r.Waiters[0].For = report.Duration(time.Hour) },
	}
	other := []func(r *report.Report){
		func(r *report.Report) { r.Findings[0].Kind = report.DeadHolder },
		func(r *report.Report) { r.Findings = nil },
		func(r *report.Report) { r.Locks[0].Holder.PID = 9 },
		func(r *report.Report) { r.Locks[0].Holder.State = "dead" },
		func(r *report.Report) { r.Waiters = nil },
		func(r *report.Report) { r.Processes[0].State = "zombie" },
	}
	want := fingerprint(base())
	for i, change := range same {
		r := base()
		change(r)
		if got := fingerprint(r); got != want {
			t.Errorf("change %d: got fingerprint %q; want %q (nothing that matters changed)", i, got, want)
		}
	}
	for i, change := range other {
		r := base()
		change(r)
		if got := fingerprint(r); got == want {
			t.Errorf("change %d: got the same fingerprint %q; want another", i, got)
		}
	}
}

// jsonWatch is 'lockwatch watch -o json --interval=10ms DIR' run by Main in
// this process, its reports read one line at a time.
type jsonWatch struct {
	t      *testing.T
	cancel context.CancelFunc // Ctrl-C
	pr     *io.PipeReader
	lines  *bufio.Scanner
	done   chan int
}

func startWatchJSON(t *testing.T, dir string) *jsonWatch {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	w := &jsonWatch{t: t, cancel: cancel, pr: pr, lines: bufio.NewScanner(pr), done: make(chan int, 1)}
	w.lines.Buffer(nil, 1<<20)
	go func() {
		w.done <- Main(ctx, []string{"watch", "-o", "json", "--interval=10ms", dir}, nil, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(cancel)
	return w
}

// next returns watch's next report; the test fails if watch ends first.
func (w *jsonWatch) next() *report.Report {
	w.t.Helper()
	if !w.lines.Scan() {
		w.t.Fatalf("watch ended early: %v", w.lines.Err())
	}
	return readReport(w.t, w.lines.Bytes())
}

// stop ends watch as Ctrl-C does and checks that it exits 0 (what it says
// is being ended: "without a deadlock", "with a lock-order finding").
func (w *jsonWatch) stop(what string) {
	w.t.Helper()
	w.cancel()
	go io.Copy(io.Discard, w.pr)
	select {
	case code := <-w.done:
		if code != ExitOK {
			w.t.Errorf("got exit %d at Ctrl-C %s; want %d", code, what, ExitOK)
		}
	case <-time.After(probablyStillBlocked):
		w.t.Fatal("watch did not end when its context did")
	}
}
