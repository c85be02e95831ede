package liveness

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lockwatch/lockwatch/internal/app/testbound"
	"github.com/lockwatch/lockwatch/internal/diag/proc"
)

const probablyStillBlocked = testbound.ProbablyStillBlocked

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role, os.Getenv(dirEnv)))
	}
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/lockwatch/lockwatch/internal/rt/record.tickCoarse")) // the coarse clock of lockreg registries the tests open
}

func sleeper(t *testing.T) (*exec.Cmd, proc.Identity) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	st, err := proc.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, st.Identity()
}

// A killed, unreaped child is a zombie: dead, and the watcher says so at
// once.
func TestWatcherAndZombie(t *testing.T) {
	cmd, id := sleeper(t)
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(id); err != nil {
		t.Fatal(err)
	}
	if died, err := w.Wait(0); err != nil || len(died) != 0 {
		t.Fatalf("got %v, %v; want no death yet", died, err)
	}
	cmd.Process.Signal(os.Kill)
	began := time.Now()
	died, err := w.Wait(probablyStillBlocked)
	if err != nil || len(died) != 1 || died[0] != id {
		t.Fatalf("got %v, %v; want [%v]", died, err, id)
	}
	if took := time.Since(began); took > probablyStillBlocked/2 {
		t.Errorf("death seen after %v", took)
	}
	if st, err := (System{}).Check(id); st != proc.Zombie {
		t.Errorf("got %v, %v; want zombie", st, err)
	}
}

func TestCheckReused(t *testing.T) {
	_, id := sleeper(t)
	tests := []struct {
		name string
		id   proc.Identity
		want proc.Status
	}{
		{"alive", id, proc.Alive},
		{"other start time", proc.Identity{PID: id.PID, Start: id.Start + 1}, proc.Reused},
		{"no such pid", proc.Identity{PID: 1 << 22, Start: 1}, proc.Gone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := (System{}).Check(tt.id); got != tt.want {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func ExampleSystem_Check() {
	st, err := System{}.Check(proc.Self())
	fmt.Println(st, err)
	// Output: alive <nil>
}
