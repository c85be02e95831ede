package dropinsrc

import (
	"slices"
	"testing"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
	"github.com/lockwatch/lockwatch/lockstate"
	"github.com/lockwatch/lockwatch/procid"
	"github.com/lockwatch/lockwatch/stackdump"
)

// TestUnnamedNote: a report naming an unnamed mutex ("site #2") says once
// what the "#N" is; one of named mutexes alone says nothing of it.
func TestUnnamedNote(t *testing.T) {
	id := procid.ID{PID: 42, Start: 7}
	for _, tc := range []struct {
		name    string
		mutexes []probeclient.Mutex
		want    int
	}{
		{"unnamed", []probeclient.Mutex{{ID: 2, Kind: "mutex", Name: "main.f f.go:3", Holder: &probeclient.MutexHolder{Goroutine: 1}},
			{ID: 3, Kind: "mutex", Name: "main.f f.go:3", Holder: &probeclient.MutexHolder{Goroutine: 2}}}, 1},
		{"named", []probeclient.Mutex{{ID: 2, Kind: "mutex", Name: "accounts", Named: true, Holder: &probeclient.MutexHolder{Goroutine: 1}}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &lockstate.Snapshot{}
			Convert(out, &stacks{byID: map[key][]stackdump.Frame{}}, id, &probeclient.MutexView{PID: 42, Start: 7, Live: len(tc.mutexes), Mutexes: tc.mutexes})
			if n := len(slices.DeleteFunc(slices.Clone(out.Notes), func(n string) bool { return n != UnnamedNote })); n != tc.want {
				t.Errorf("notes %q: the unnamed note %d times; want %d", out.Notes, n, tc.want)
			}
			if tc.want > 0 && (len(out.Locks) != 2 || out.Locks[0].Name != "main.f f.go:3 #2" || out.Locks[1].Name != "main.f f.go:3 #3") {
				t.Errorf("locks %+v; want main.f f.go:3 #2 and #3", out.Locks)
			}
		})
	}
}
