package etcdcli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lockwatch/lockwatch/internal/report"
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
