package reportcmd

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/report"
)

func TestVerdict(t *testing.T) {
	cycle := &report.Report{Findings: []report.Finding{{Kind: report.Cycle}}}
	lost := &report.Report{Findings: []report.Finding{{Kind: report.LostLock}}}
	order := &report.Report{Findings: []report.Finding{{Kind: report.LockOrder}}}
	for _, tc := range []struct {
		r    *report.Report
		also []report.Kind
		want int
	}{
		{nil, nil, ExitOK},
		{cycle, nil, ExitDeadlock},
		{lost, nil, ExitOK},
		{lost, []report.Kind{report.LostLock}, ExitDeadlock},
		{order, []report.Kind{report.LostLock}, ExitOK},
	} {
		if got := Code(tc.r, tc.also...); got != tc.want {
			t.Errorf("Code(%v, %v) = %d; want %d", tc.r, tc.also, got, tc.want)
		}
		var ee *ExitError
		if err := Verdict(tc.r, tc.also...); (tc.want == ExitOK) != (err == nil) || (err != nil && (!errors.As(err, &ee) || ee.Code != tc.want)) {
			t.Errorf("Verdict(%v, %v) = %v; want exit status %d", tc.r, tc.also, err, tc.want)
		}
	}
	if _, err := ParseFormat("yaml"); err == nil || !strings.Contains(err.Error(), "use table, json or dot") {
		t.Errorf("ParseFormat(yaml) = %v; want the formats named", err)
	}
}

// Watch shows a report when its findings change (not when only time
// passes), says a run of the same error once, says it read again, and
// returns the last report when its context ends.
func TestWatch(t *testing.T) {
	stuck := func(d time.Duration) *report.Report {
		return &report.Report{Findings: []report.Finding{{Kind: report.StuckHolder, Lock: "q", Summary: d.String()}}}
	}
	errA, errB := errors.New("a"), errors.New("b")
	steps := []struct {
		r   *report.Report
		err error
	}{
		{stuck(1), nil}, {stuck(2), nil}, {nil, errA}, {nil, errA}, {nil, errB}, {stuck(3), nil}, {&report.Report{}, nil}, {stuck(4), nil},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var said []string
	n := 0
	last, err := Watch{
		Every: time.Microsecond,
		Diagnose: func(context.Context) (*report.Report, error) {
			s := steps[n]
			if n++; n == len(steps) {
				cancel()
			}
			return s.r, s.err
		},
		Show: func(r *report.Report) error {
			said = append(said, "show "+strings.TrimSuffix(findingsKey(r), "\n"))
			return nil
		},
		Failed:    func(err error) { said = append(said, "failed "+err.Error()) },
		Recovered: func() { said = append(said, "recovered") },
	}.Run(ctx)
	want := []string{"show report:stuck-holder|/q", "failed a", "failed b", "recovered", "show report:"}
	if err != nil || !slices.Equal(said, want) {
		t.Errorf("said %q, %v; want %q", said, err, want)
	}
	// The last step's report was read as the context ended: the one read
	// before it is returned.
	if last == nil || len(last.Findings) != 0 {
		t.Errorf("last report %+v; want the one without findings", last)
	}
}
