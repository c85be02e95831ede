package lockreg

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/arena"
)

// runNamesRole is the body of the name-index roles:
//
//	names K N      create shared.0..N-1 (starting at a place that depends on K)
//	               and own.K.0..N-1, check each handle's slot, print "done"
//	parkcreate     create "victim", parking after the slot is published and
//	               before it is indexed (the parent SIGKILLs it there)
func runNamesRole(r *Registry, role string, args []string) int {
	switch role {
	case "names":
		k, _ := strconv.Atoi(args[0])
		n, _ := strconv.Atoi(args[1])
		var names []string
		for i := 0; i < n; i++ {
			names = append(names, fmt.Sprintf("shared.%d", (i+k*n/4)%n), fmt.Sprintf("own.%d.%d", k, i))
		}
		for _, name := range names {
			m, err := r.Mutex(name)
			if err != nil {
				say("error %v", err)
				return 1
			}
			s := r.a.Lock(m.idx)
			if got := string(s.Name[:s.NameLen]); got != name {
				say("error Mutex(%q) got slot %d named %q", name, m.idx, got)
				return 1
			}
		}
		say("done")
		return 0
	case "parkcreate":
		testHook = func(point string) {
			if point == "name-published" {
				say("parked")
				select {} // until the parent kills us
			}
		}
		_, err := r.Mutex("victim")
		say("error created victim without parking: %v", err)
		return 1
	}
	return 2
}

// lockCount counts the locks of the run called each name.
func lockCount(t *testing.T, dir string) map[string]int {
	t.Helper()
	s, err := arena.ReadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	count := make(map[string]int)
	for _, l := range s.Locks {
		count[l.Name]++
	}
	return count
}

func TestNameIndexConcurrentCreators(t *testing.T) {
	dir := runDir(t)
	const procs, n = 4, 150
	var cs []*child
	for k := 0; k < procs; k++ {
		cs = append(cs, startRole(t, k%2 == 0, "names", dir, strconv.Itoa(k), strconv.Itoa(n)))
	}
	for _, c := range cs {
		c.expect("done")
	}
	count := lockCount(t, dir)
	if want := 1 + n + procs*n; len(count) != want {
		t.Errorf("got %d distinct lock names; want %d", len(count), want)
	}
	for name, c := range count {
		if c != 1 {
			t.Errorf("%d locks named %q; want 1", c, name)
		}
	}
	// Every name is found again through the index by a process that did
	// not create it.
	r := openT(t, dir, Options{})
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("shared.%d", i)
		idx, ok := r.findSlot(name)
		if !ok || string(r.a.Lock(idx).Name[:r.a.Lock(idx).NameLen]) != name {
			t.Fatalf("findSlot(%q) = %d, %v; want its slot", name, idx, ok)
		}
	}
	if r.a.Hdr.Nindexed.Load() != r.a.Hdr.Nlocks.Load() {
		t.Errorf("%d of %d slots indexed; want all", r.a.Hdr.Nindexed.Load(), r.a.Hdr.Nlocks.Load())
	}
}

func TestNameIndexCreatorKilledMidInsert(t *testing.T) {
	modes(t, func(t *testing.T, robust bool) {
		dir := runDir(t)
		c := startRole(t, robust, "parkcreate", dir)
		c.expect("parked")
		c.kill() // holding the name lock; "victim" published, not indexed
		r := openT(t, dir, Options{})
		if _, ok := r.findSlot("victim"); ok {
			t.Fatal("victim is indexed already: the creator did not park where the test wants it")
		}
		m, err := r.Mutex("victim") // takes the name lock over, repairs the index
		if err != nil {
			t.Fatal(err)
		}
		other, err := r.Mutex("after")
		if err != nil {
			t.Fatal(err)
		}
		count := lockCount(t, dir)
		if count["victim"] != 1 || count["after"] != 1 {
			t.Fatalf("locks by name %v; want one victim and one after", count)
		}
		if idx, ok := r.findSlot("victim"); !ok || idx != m.idx || m.idx == other.idx {
			t.Errorf("findSlot(victim) = %d, %v; want %d, found without the name lock", idx, ok, m.idx)
		}
		if r.a.Hdr.Nindexed.Load() != r.a.Hdr.Nlocks.Load() {
			t.Errorf("%d of %d slots indexed; want all", r.a.Hdr.Nindexed.Load(), r.a.Hdr.Nlocks.Load())
		}
	})
}

func TestNameIndexFull(t *testing.T) {
	dir := runDir(t)
	r := openT(t, dir, Options{MaxLocks: 5})
	for i := 0; i < 5; i++ {
		if _, err := r.Mutex("l" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Mutex("one.more"); err == nil {
		t.Error("a sixth lock in a run of 5: got no error")
	}
	// Another process's view: every name is found, an unknown one is not.
	r2 := openT(t, dir, Options{})
	for i := 0; i < 5; i++ {
		if _, ok := r2.findSlot("l" + strconv.Itoa(i)); !ok {
			t.Errorf("l%d not found", i)
		}
	}
	if _, ok := r2.findSlot("one.more"); ok {
		t.Error("found a lock that was never created")
	}
}
