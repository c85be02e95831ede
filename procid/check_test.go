package procid

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Check proves each status from /proc: alive, reused (another start time),
// zombie (killed, not reaped), dead (reaped), gone (no such pid).
func TestCheck(t *testing.T) {
	self := Self()
	if self.Start == 0 || self.PID != os.Getpid() {
		t.Fatalf("Self() = %v; want this pid with a start time", self)
	}
	if st, err := Check(self); st != Alive || err != nil {
		t.Errorf("Check(self) = %v, %v; want alive", st, err)
	}
	if st, _ := Check(ID{PID: self.PID, Start: self.Start + 1}); st != Reused {
		t.Errorf("Check(self pid, other start) = %v; want reused", st)
	}

	// A killed child that is not reaped yet is a zombie: dead, although
	// its pid still exists.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_, start, err := stat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	id := ID{PID: cmd.Process.Pid, Start: start}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := Check(id)
		if got == Zombie {
			break
		}
		if got != Alive || time.Now().After(deadline) {
			t.Fatalf("killed, unreaped child checks as %v; want alive then zombie", got)
		}
		time.Sleep(time.Millisecond) // the kill takes effect asynchronously
	}
	_ = cmd.Wait()
	if got, _ := Check(id); !got.Dead() {
		t.Errorf("reaped child checks as %v; want dead", got)
	}
	if got, _ := Check(ID{PID: -1}); got != Gone {
		t.Errorf("Check(pid -1) = %v; want gone", got)
	}
}
