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

// dropinRole starts a probe in dir, then holds a named drop-in mutex in one
// goroutine while another waits for it and two goroutines read-lock an
// RWMutex; it says "ready" once the waiter is recorded, and stays until
// killed.
func dropinRole(dir string) int {
	a, err := probe.Start(probe.Options{Dir: dir, Role: "dropin"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer a.Close()
	var mu lwsync.Mutex
	lwsync.SetName(&mu, "queue.buf")
	var rw lwsync.RWMutex
	mu.Lock()
	go func() { mu.Lock() }()
	for i := 0; i < 2; i++ {
		go func() { rw.RLock(); select {} }()
	}
	c := &probeclient.Client{Path: a.SocketPath()}
	// The view lists the two mutexes in an order of its own: count the
	// waiter and the readers over both, and say what was seen if they do
	// not come (an "error" line fails the test, where a silent loop hung it).
	deadline := time.Now().Add(3 * probablyStillBlocked)
	for {
		v, err := c.Mutexes(context.Background())
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		waiters, readers := 0, 0
		for _, m := range v.Mutexes {
			waiters += len(m.Waiters)
			readers += len(m.Readers)
		}
		if len(v.Mutexes) == 2 && waiters == 1 && readers == 2 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("error: the probe's view never showed 1 waiter and 2 readers: %d mutexes, %d waiters, %d readers\n", len(v.Mutexes), waiters, readers)
			return 1
		}
	}
	fmt.Println("ready")
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
