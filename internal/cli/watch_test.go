package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/report"
	"github.com/lockwatch/lockwatch/lockreg"
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

	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"watch", "-o", "json", "--interval=10ms", dir}, nil, pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	lines.Buffer(nil, 1<<20)
	next := func() *report.Report {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("watch ended early: %v", lines.Err())
		}
		var r report.Report
		if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
			t.Fatalf("not a JSON report on one line: %v\n%s", err, lines.Bytes())
		}
		return &r
	}
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
	cancel()
	go io.Copy(io.Discard, pr)
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("got exit %d on Ctrl-C without a deadlock; want %d", code, ExitOK)
		}
	case <-time.After(probablyStillBlocked):
		t.Fatal("watch did not end when its context did")
	}
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
