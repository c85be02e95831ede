package lockreg

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/lockwatch/lockwatch/internal/rt/stackdict"
)

// TestStackTableKnowsEveryStack: every stack id interned is known on the
// fast path afterwards, however many there are, so that no acquire pays
// the mutex and the symbolizer twice for one stack. (A set of 4,096 slots
// searched 8 slots deep forgot most of 10,000.) Each id is written to the
// dictionary once.
func TestStackTableKnowsEveryStack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stacks")
	d, err := stackdict.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tab := &stackTable{dict: d}
	defer d.Close()
	var st stackPCs
	st.capture()
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]uint64, 10000)
	for i := range ids {
		ids[i] = r.Uint64() | 1
		tab.intern(ids[i], &st)
	}
	forgotten := 0
	for _, id := range ids {
		if !tab.known(id) {
			forgotten++
		}
	}
	if forgotten > 0 {
		t.Errorf("%d of %d interned stacks not known", forgotten, len(ids))
	}
	if tab.known(2) {
		t.Errorf("known(2): true for a stack never interned")
	}
	for _, id := range ids[:100] {
		tab.intern(id, &st) // known: nothing written
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, c := range b {
		if c == '\n' {
			lines++
		}
	}
	if lines != len(ids) {
		t.Errorf("the dictionary has %d lines; want one per stack, %d", lines, len(ids))
	}
}
