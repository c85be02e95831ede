package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"testing"
)

// BenchmarkAttachMemory is 'lockwatch attach -o json PID' in process, on a
// program with the standard sync only and 10,000 (100,000) goroutines
// more than its 11 stuck ones: the whole attach (the binary opened, every
// goroutine read, the report built and written), as a CPU profile of the
// command sees it (-cpuprofile).
func BenchmarkAttachMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("goroutines=%d", n), func(b *testing.B) {
			pid := startPlainGo(b, "default", "-n", strconv.Itoa(n))
			args := []string{"attach", "-o", "json", strconv.Itoa(pid)}
			for b.Loop() {
				if code := Main(context.Background(), args, nil, io.Discard, io.Discard); code != ExitDeadlock {
					b.Fatalf("exit %d; want %d", code, ExitDeadlock)
				}
			}
		})
	}
}

// BenchmarkPSGo is the Go processes part of 'lockwatch ps': every Go
// process of this user that runs no probe, read from its memory (run it
// with -race too: the cli tests run ps so).
func BenchmarkPSGo(b *testing.B) {
	startPlainGo(b, "default")
	for b.Loop() {
		if len(goProcesses(context.Background())) == 0 {
			b.Fatal("ps lists no Go process")
		}
	}
}
