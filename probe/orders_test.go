//lint:file-ignore SA2001 the order of acquires is what is measured: the critical sections are empty on purpose

package probe

import (
	"context"
	"encoding/json"
	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/internal/rt/probewire"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockwatch/lockwatch/stackdump"
	lwsync "github.com/lockwatch/lockwatch/sync"
)

// TestOrders: the orders request lists an edge taken in this process with
// both mutexes' names and both stacks, and Close leaves the same edges in
// the orders file for after the process.
func TestOrders(t *testing.T) {
	a, err := Start(Options{Dir: t.TempDir() + "/run"})
	if err != nil {
		t.Fatal(err)
	}
	var outer, inner lwsync.Mutex
	lwsync.SetName(&outer, "orders.outer")
	lwsync.SetName(&inner, "orders.inner")
	outer.Lock()
	inner.Lock()
	inner.Unlock()
	outer.Unlock()

	v, err := (&probeclient.Client{Path: a.SocketPath()}).Orders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var found *probeclient.OrderEdge
	for i, e := range v.Edges {
		if e.From.Name == "orders.outer" && e.To.Name == "orders.inner" {
			found = &v.Edges[i]
		}
	}
	if found == nil {
		t.Fatalf("edges %+v; want orders.outer -> orders.inner", v.Edges)
	}
	if !found.From.Named || found.From.Kind != "mutex" || found.Goroutine == 0 || found.Time.IsZero() {
		t.Errorf("edge %+v; want named mutexes, a goroutine and a time", found)
	}
	for _, st := range [][]any{{"from", found.FromStack}, {"to", found.ToStack}} {
		fs := st[1].([]stackdump.Frame)
		if len(fs) == 0 || !strings.HasSuffix(fs[0].Func, "TestOrders") {
			t.Errorf("%s stack %v; want it to start in TestOrders", st[0], fs)
		}
	}
	// Asked with the mutexes, in one request: the same edges. Past what a
	// client reads whole, the edges are left out (nil), to be asked alone.
	cl := &probeclient.Client{Path: a.SocketPath()}
	mv, both, err := cl.MutexesAndOrders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if mv == nil || mv.PID != os.Getpid() || both == nil || len(both.Edges) != len(v.Edges) {
		t.Fatalf("mutexes and orders: %+v and %+v; want this process's mutexes and %d edges", mv, both, len(v.Edges))
	}
	defer func(n int) { combinedMax = n }(combinedMax)
	combinedMax = 64
	if mv, both, err = cl.MutexesAndOrders(context.Background()); err != nil || mv == nil || both != nil {
		t.Fatalf("mutexes and orders past %d bytes: %+v, %+v, %v; want the mutexes alone", combinedMax, mv, both, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(a.Dir(), probewire.OrdersFile(a.base)))
	if err != nil {
		t.Fatal(err)
	}
	var saved probeclient.OrderView
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	if len(saved.Edges) != len(v.Edges) || saved.PID != os.Getpid() {
		t.Errorf("orders file: %d edges of pid %d; want %d of pid %d", len(saved.Edges), saved.PID, len(v.Edges), os.Getpid())
	}
}

// cpuNanos is the CPU time this process has used (client and probe are
// both in it): on a shared machine, wall time counts others' work too.
func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkOrdersFull is an orders request answered with a full table
// (4,096 edges, each with both stacks): what attach adds to read one
// process's edges. answer-KiB is the answer's JSON.
func BenchmarkOrdersFull(b *testing.B) {
	a, err := Start(Options{Dir: b.TempDir() + "/run"})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	var root lwsync.Mutex
	ms := make([]*lwsync.Mutex, 4096)
	for i := range ms {
		ms[i] = new(lwsync.Mutex)
		root.Lock()
		ms[i].Lock()
		ms[i].Unlock()
		root.Unlock()
	}
	cl := &probeclient.Client{Path: a.SocketPath(), Timeout: time.Minute}
	var v *probeclient.OrderView
	// The agent writes its orders file 100 ms after the last new edge:
	// let it, before measuring.
	for {
		if _, err := os.Stat(filepath.Join(a.Dir(), probewire.OrdersFile(a.base))); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c0 := cpuNanos()
	for b.Loop() {
		if v, err = cl.Orders(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	if len(v.Edges)+v.Omitted != v.Capacity {
		b.Fatalf("%d edges, %d omitted; want a full table of %d", len(v.Edges), v.Omitted, v.Capacity)
	}
	b.ReportMetric(float64(v.Cut), "cut")
	b.ReportMetric(float64(v.Omitted), "omitted")
	b.ReportMetric(float64(cpuNanos()-c0)/float64(b.N)/1e6, "cpu-ms/op")
	j, _ := json.Marshal(v)
	b.ReportMetric(float64(len(j))/(1<<10), "answer-KiB")
}
