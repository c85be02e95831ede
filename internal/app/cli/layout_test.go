package cli

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lockwatch/lockwatch/report"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// layoutReport is a report with what makes layout hard: seven stale waiters
// with the same advice, long function names and paths, many events.
func layoutReport() *report.Report {
	t0 := time.Date(2026, 11, 25, 19, 58, 5, 834_000_000, time.UTC)
	where := &report.FrameJSON{Func: "github.com/lockwatch/lockwatch/internal/app/pipeline.(*Queue).send", File: "github.com/lockwatch/lockwatch/internal/app/pipeline/queue.go", Line: 161}
	holder := &report.Party{PID: 27301, Start: 1, Goroutine: 26, State: "dead", Role: "worker", Since: t0, For: report.Duration(246 * time.Millisecond), Where: where}
	r := &report.Report{Schema: report.Schema, Run: "/dev/shm/lockwatch-1000/run-20261125-195805-27281-0", Taken: t0.Add(time.Second),
		Findings: []report.Finding{{Kind: report.DeadHolder, Lock: "queue.wlock", Holder: holder, Waiters: []report.Party{{PID: 27286, Goroutine: 33}},
			Proof:   "owner-died",
			Summary: `pid 27301 [worker] (dead) holds "queue.wlock" (the kernel marked it OWNER_DIED); 1 goroutine waits for it`,
			Next:    `find why pid 27301 died holding "queue.wlock" (its acquire stack is below); waiters never get it under the Stall policy: kill the run, or use the Recover policy to repair and take it`}},
		Locks: []report.LockRow{{Name: "queue.wlock", State: "owner-died", Holder: holder, Waiting: 8}},
	}
	for i := range 7 {
		pid := 27310 + i
		r.Findings = append(r.Findings, report.Finding{Kind: report.StaleWaiter, Lock: "queue.wlock", Waiters: []report.Party{{PID: pid, Goroutine: 9, State: "dead"}},
			Summary: fmt.Sprintf(`pid %d [worker] (dead) is recorded waiting for "queue.wlock"`, pid),
			Next:    "harmless to the lock itself, but the process died inside Lock; look for why it died (stacks below)"})
		r.Waiters = append(r.Waiters, report.WaiterRow{Party: report.Party{PID: pid, Goroutine: 9, State: "dead", For: report.Duration(245 * time.Millisecond), Where: where}, Lock: "queue.wlock"})
		r.Processes = append(r.Processes, report.ProcRow{PID: pid, Role: "worker", State: "dead", Started: t0, Exit: "died"})
	}
	r.Processes = append(r.Processes, report.ProcRow{PID: 27286, Command: "/home/someone/src/a/very/long/path/to/the/program/binary --with --many --arguments", State: "alive", Alive: true, Started: t0})
	for i := range 12 {
		r.Events = append(r.Events, report.EventRow{Seq: uint64(i), Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: "acquire", Lock: "queue.wlock", PID: 27301, Goroutine: 26})
	}
	r.Stacks = append(r.Stacks, report.StackRow{PID: 27301, Lock: "queue.wlock", Role: "holder", Source: "dictionary", Count: 1, Goroutines: []int64{26}, State: "dead",
		Frames: []report.FrameJSON{*where, {Func: "github.com/lockwatch/lockwatch/internal/app/pipeline.(*Queue).feed[go.shape.struct { Name string; Payload []uint8 }]", File: "github.com/lockwatch/lockwatch/internal/app/pipeline/queue.go", Line: 121}}})
	return r
}

// TestLayoutGolden renders the report for terminals 80 and 200 columns
// wide (and a watch screen of 80x24), and compares with the golden files;
// -update rewrites them. Whatever the golden files say, no line may be
// wider than the terminal or end in a blank, no finding's advice may be
// cut, and the watch screen must hold the findings and fit its height.
func TestLayoutGolden(t *testing.T) {
	for _, tt := range []struct {
		name       string
		cols, rows int
	}{{"attach-80", 80, 0}, {"attach-200", 200, 0}, {"watch-80x24", 80, 24}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("COLUMNS", fmt.Sprint(tt.cols))
			a := &app{output: "table"}
			var b bytes.Buffer
			if err := a.printFit(&b, layoutReport(), tt.rows); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			for i, l := range lines {
				if n := utf8.RuneCountInString(l); n > tt.cols {
					t.Errorf("line %d is %d columns wide; want at most %d: %q", i+1, n, tt.cols, l)
				}
				if strings.HasSuffix(l, " ") {
					t.Errorf("line %d ends in a blank: %q", i+1, l)
				}
			}
			if tt.rows > 0 {
				if len(lines) > tt.rows-1 {
					t.Errorf("%d lines on a screen of %d rows; want at most %d", len(lines), tt.rows, tt.rows-1)
				}
				if !strings.HasPrefix(lines[len(lines)-1], "... ") || !strings.Contains(lines[len(lines)-1], " more lines") {
					t.Errorf("last line %q; want one saying how many lines are left out", lines[len(lines)-1])
				}
			}
			if !strings.Contains(strings.Join(strings.Fields(got), " "), "use the Recover policy to repair and take it") {
				t.Errorf("the dead holder's advice is cut:\n%s", got)
			}
			if !strings.Contains(got, "DEAD-HOLDER") {
				t.Errorf("no DEAD-HOLDER finding on top:\n%s", got)
			}
			file := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (go test -run TestLayoutGolden -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("got a layout other than %s (-update rewrites it after a deliberate change):\n%s", file, got)
			}
		})
	}
}
