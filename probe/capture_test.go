package probe

import (
	"bytes"
	"errors"
	"io"
	"runtime/trace"
	"testing"
)

func TestCaptureTextBuffer(t *testing.T) {
	full, err := captureTextDump()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		size    int
		wantErr error
	}{
		{"fits", len(full) + 4096, nil},
		{"second try", len(full) / 2, nil},
		{"truncated", 16, errTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := captureText(tt.size)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("captureText(%d): got error %v; want %v", tt.size, err, tt.wantErr)
			}
			if !bytes.HasPrefix(b, []byte("goroutine ")) {
				t.Errorf("captureText(%d): got %q; want a dump", tt.size, b[:min(len(b), 40)])
			}
		})
	}
	if got := textBufferSize(10_000); got < 10_000*400 {
		t.Errorf("textBufferSize(10000): got %d; want at least 400 bytes a goroutine", got)
	}
}

// TestCaptureTraceBusy: a program that traces itself keeps its trace; the
// capture says why it took none.
func TestCaptureTraceBusy(t *testing.T) {
	if err := trace.Start(io.Discard); err != nil {
		t.Skipf("tracer in use already: %v", err)
	}
	defer trace.Stop()
	if _, err := captureTrace(); !errors.Is(err, errTracerBusy) {
		t.Fatalf("captureTrace while tracing: %v; want errTracerBusy", err)
	}
}
