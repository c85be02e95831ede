package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/pprof/profile"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/probe"
	lwsync "github.com/lockwatch/lockwatch/sync"
)

// dropinRoles are the child processes of the drop-in tests.
func dropinRoles(role, dir string) int {
	switch role {
	case "hold-x":
		return holdXRole()
	case "chain":
		return chainRole()
	case "self", "rwtrap", "cycle":
		return selfRole(role)
	case "stuck-holder":
		return stuckHolderRole()
	case "many":
		return manyRole()
	}
	return dropinRole(dir)
}

// dropinLocks are dropinRole's two mutexes, in one allocation so that
// their order in memory is fixed: the RWMutex first. The probe's view lists
// mutexes by id, which is the mutex's address, so here the RWMutex comes
// first in the view, though the Mutex was locked first. (Allocated apart,
// the two come from spans of different size classes, in an order that
// varies from run to run: 4 runs in 100 under CPU load put the RWMutex
// first, and a check of the view that took its first mutex for the Mutex
// then waited forever.)
type dropinLocks struct {
	rw lwsync.RWMutex
	mu lwsync.Mutex
}

// dropinRole starts a probe in dir, then holds a named drop-in mutex in one
// goroutine while another waits for it and two goroutines read-lock an
// RWMutex; it says "ready" once the probe's view shows the waiter and the
// two readers, each on its own mutex, and stays until killed.
func dropinRole(dir string) int {
	a, err := probe.Start(probe.Options{Dir: dir, Role: "dropin"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer a.Close()
	l := new(dropinLocks)
	mu, rw := &l.mu, &l.rw
	lwsync.SetName(mu, "queue.buf")
	mu.Lock()
	go func() { mu.Lock() }()
	for i := 0; i < 2; i++ {
		go func() { rw.RLock(); select {} }()
	}
	c := &probeclient.Client{Path: a.SocketPath()}
	// Each mutex is found in the view by its id (its address), never by its
	// place in the list; what was seen is said if the records do not come
	// (an "error" line fails the test, where a silent loop would hang it).
	muID, rwID := uint64(uintptr(unsafe.Pointer(mu))), uint64(uintptr(unsafe.Pointer(rw)))
	deadline := time.Now().Add(3 * probablyStillBlocked)
	for {
		v, err := c.Mutexes(context.Background())
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		waiters, readers := -1, -1
		for _, m := range v.Mutexes {
			switch m.ID {
			case muID:
				waiters = len(m.Waiters)
			case rwID:
				readers = len(m.Readers)
			}
		}
		if len(v.Mutexes) == 2 && waiters == 1 && readers == 2 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("error: the probe's view never showed the Mutex's waiter and the RWMutex's 2 readers: %d mutexes, %d waiters, %d readers (-1: mutex not listed)\n",
				len(v.Mutexes), waiters, readers)
			return 1
		}
	}
	fmt.Println("ready")
	awake()
	select {}
}

// TestHoldersProfile: lockwatch holders saves a pprof profile of a live
// process's drop-in mutexes that go's profile reader accepts, with one
// sample per holder, reader and waiter, labelled.
func TestHoldersProfile(t *testing.T) {
	dir := runDir(t)
	cmd, _, out := child(t, "dropin", dir, probe.EnvDir+"="+dir)
	expectLine(t, out, "ready")
	pid := strconv.Itoa(cmd.Process.Pid)
	file := filepath.Join(t.TempDir(), "holders.pb.gz")
	code, stdout, stderr := lockwatch(t, "holders", pid, "--file", file, "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	var o holdersOutput
	if err := json.Unmarshal([]byte(stdout), &o); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if o.Mutexes != 2 || o.Holders != 1 || o.Readers != 2 || o.Waiters != 1 || o.Live != 2 {
		t.Errorf("summary %+v; want 2 mutexes: 1 holder, 2 readers, 1 waiter", o)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, s := range p.Sample {
		role := s.Label["role"][0]
		roles[role]++
		if name := s.Label["name"][0]; role != "reader" && name != "queue.buf" {
			t.Errorf("%s sample named %q; want queue.buf", role, name)
		}
		if len(s.Location) == 0 || !strings.Contains(s.Location[0].Line[0].Function.Name, "dropinRole") {
			t.Errorf("%s sample at %v; want a stack from dropinRole", role, s.Location)
		}
	}
	if roles["holder"] != 1 || roles["reader"] != 2 || roles["waiter"] != 1 {
		t.Errorf("roles %v; want 1 holder, 2 readers, 1 waiter", roles)
	}

	// Bad input: not a pid, and a process without a probe.
	if code, _, stderr := lockwatch(t, "holders", "x1"); code != ExitUsage || !strings.Contains(stderr, "not a pid") {
		t.Errorf("holders x1: exit %d, %q; want usage error", code, stderr)
	}
}
