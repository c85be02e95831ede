package deadcheck

import (
	"fmt"
	"runtime/metrics"
)

// The metrics a Look reads, in this order.
var metricNames = [...]string{
	"/sched/goroutines/running:goroutines",
	"/sched/goroutines/runnable:goroutines",
	"/sched/goroutines/not-in-go:goroutines",
	"/sched/goroutines:goroutines",
	"/sched/goroutines-created:goroutines",
	"/gc/cycles/total:gc-cycles",
}

// counts are the goroutine counts a Look reads.
type counts struct {
	running, runnable, notInGo, total, created, gcs uint64
}

// readCounts reads the metrics into c; an error when this Go release does
// not have one of them.
func readCounts(s []metrics.Sample) (counts, error) {
	for i := range s {
		s[i].Name = metricNames[i]
	}
	metrics.Read(s)
	var v [6]uint64
	for i := range s {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return counts{}, fmt.Errorf("this Go release has no metric %s", metricNames[i])
		}
		v[i] = s[i].Value.Uint64()
	}
	return counts{running: v[0], runnable: v[1], notInGo: v[2], total: v[3], created: v[4], gcs: v[5]}, nil
}

// awake says what in c keeps the process awake, or "" (the caller's own
// goroutine is running).
func (c counts) awake() string {
	switch {
	case c.running > 1:
		return goroutines(c.running-1) + " running besides the caller"
	case c.runnable > 0:
		return goroutines(c.runnable) + " runnable"
	case c.notInGo > 0:
		return goroutines(c.notInGo) + " in a system call or in C"
	}
	return ""
}

// goroutines is "1 goroutine is", "2 goroutines are".
func goroutines(n uint64) string {
	if n == 1 {
		return "1 goroutine is"
	}
	return fmt.Sprintf("%d goroutines are", n)
}

// GCOff reports whether garbage collection is off (GOGC=off, or
// debug.SetGCPercent(-1)): then the runtime forces no collection every 2
// minutes, and nothing that waits for one (the probe that stood down) is
// sure to wake.
func GCOff() bool {
	s := [1]metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s[:])
	return s[0].Value.Kind() == metrics.KindUint64 && int64(s[0].Value.Uint64()) < 0
}
