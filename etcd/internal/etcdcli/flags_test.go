package etcdcli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/report"
)

// TestLiveStacksFlag: --live-stacks refuses a negative count with a line
// that says what it wants, and reaches report.Options as the report takes
// it (0, every process, is report.AllLiveStacks there).
func TestLiveStacksFlag(t *testing.T) {
	var stderr bytes.Buffer
	err := Main(context.Background(), []string{"attach", "--live-stacks", "-1", "etcd://127.0.0.1:1/run-1"}, &bytes.Buffer{}, &stderr)
	var xe *ExitError
	if !errors.As(err, &xe) || !strings.Contains(stderr.String(), "--live-stacks -1: want how many processes") {
		t.Errorf("--live-stacks -1: %v, stderr %q; want a usage error saying what it wants", err, stderr.String())
	}
	for n, want := range map[int]int{0: report.AllLiveStacks, 3: 3, report.DefaultLiveStacks: report.DefaultLiveStacks} {
		if got := (config{liveStacks: n}).liveStackOption(); got != want {
			t.Errorf("--live-stacks %d: option %d; want %d", n, got, want)
		}
	}
}

// TestOutputDot: -o dot writes the report's wait-for graph; another format
// is refused in one line that names the three.
func TestOutputDot(t *testing.T) {
	var stderr bytes.Buffer
	err := Main(context.Background(), []string{"attach", "-o", "yaml", "etcd://127.0.0.1:1/run-1"}, &bytes.Buffer{}, &stderr)
	var xe *ExitError
	if !errors.As(err, &xe) || !strings.Contains(stderr.String(), `-o "yaml": use table, json or dot`) {
		t.Errorf("-o yaml: %v, stderr %q; want a usage error naming the formats", err, stderr.String())
	}
	var out bytes.Buffer
	r := &report.Report{Schema: report.Schema, Run: "etcd://h:1/run-1", Findings: []report.Finding{}}
	if err := (config{output: "dot"}).write(&out, r, true); err != nil || !strings.HasPrefix(out.String(), "digraph lockwatch {") {
		t.Errorf("-o dot: %v\n%s\nwant a DOT digraph", err, out.String())
	}
}
