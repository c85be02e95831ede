package stackdump

import (
	"bytes"
	"context"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
)

const probablyStillBlocked = testbound.ProbablyStillBlocked

// blockedInCapture is a function the tests find in stacks.
func blockedInCapture(ch chan struct{}) { <-ch }

// startBlocked starts a goroutine blocked in blockedInCapture, with pprof
// labels, and waits until a dump shows it blocked. The returned function
// releases it and waits for it to end.
func startBlocked(t *testing.T) (stop func()) {
	t.Helper()
	ch := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	pprof.Do(context.Background(), pprof.Labels("test", "capture"), func(context.Context) {
		go func() {
			defer wg.Done()
			blockedInCapture(ch)
		}()
	})
	stop = func() { close(ch); wg.Wait() }
	for deadline := time.Now().Add(probablyStillBlocked); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s, err := Capture()
		if err != nil {
			stop()
			t.Fatal(err)
		}
		for _, g := range s.Calling("github.com/lockwatch/lockwatch/stackdump.blockedInCapture") {
			if g.State == "chan receive" {
				return stop
			}
		}
	}
	stop()
	t.Fatal("goroutine did not block")
	return nil
}

func TestCapture(t *testing.T) {
	stop := startBlocked(t)
	defer stop()
	s, err := Capture()
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.Time.IsZero() {
		t.Errorf("Capture: got pid %d, time %v; want %d and now", s.PID, s.Time, os.Getpid())
	}
	gs := s.Calling("github.com/lockwatch/lockwatch/stackdump.blockedInCapture")
	if len(gs) != 1 {
		t.Fatalf("Capture: got %d goroutines in blockedInCapture; want 1", len(gs))
	}
	g := gs[0]
	if g.ID == 0 || g.State != "chan receive" || g.CreatedBy == nil || g.CreatorID == 0 {
		t.Errorf("Capture: got %+v; want an id, chan receive, a creator", g)
	}
	if !strings.HasSuffix(g.Frames[0].File, "stackdump/capture_test.go") || g.Frames[0].Line == 0 {
		t.Errorf("Capture: got frame %v; want one in capture_test.go", g.Frames[0])
	}
}

func TestCaptureProfile(t *testing.T) {
	stop := startBlocked(t)
	defer stop()
	b, err := CaptureProfile()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseProfile(b)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(p.Time) > time.Minute {
		t.Errorf("ParseProfile: got time %v; want now", p.Time)
	}
	var found *Sample
	for i, s := range p.Samples {
		for _, f := range s.Frames {
			if f.Func == "github.com/lockwatch/lockwatch/stackdump.blockedInCapture" {
				found = &p.Samples[i]
			}
		}
	}
	if found == nil {
		t.Fatalf("ParseProfile: no sample in blockedInCapture among %d", len(p.Samples))
	}
	if found.Count != 1 || found.Labels["test"] != "capture" || found.Frames[0].Func != "runtime.gopark" {
		t.Errorf("ParseProfile: got %+v; want count 1, label test=capture, runtime.gopark innermost", *found)
	}
	var total int64
	for _, g := range GroupSamples(p.Samples) {
		total += g.Count
	}
	if total < 2 {
		t.Errorf("GroupSamples: got %d goroutines; want at least 2", total)
	}
}

func TestParseProfileErrors(t *testing.T) {
	var heap bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&heap, 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"garbage", []byte("goroutine 1 [running]:\n"), "stackdump: goroutine profile:"},
		{"heap profile", heap.Bytes(), "not a goroutine profile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseProfile(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseProfile: got error %v; want %q", err, tt.want)
			}
		})
	}
}
