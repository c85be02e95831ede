package proc

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name, in string
		want     Stat
		wantErr  bool
	}{
		{"plain", "42 (demo) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0",
			Stat{PID: 42, State: 'S', PPID: 1, PGID: 42, Start: 123456, Comm: "demo"}, false},
		{"comm with spaces and parens", "7 (a) b (c)) Z 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0",
			Stat{PID: 7, State: 'Z', PPID: 3, PGID: 7, Start: 99, Comm: "a) b (c)"}, false},
		{"truncated", "7 (x) S 1 2", Stat{}, true},
		{"garbage", "nothing here", Stat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat(tt.want.PID, []byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v; want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	self := Self()
	if self.Start == 0 || self.PID != os.Getpid() {
		t.Fatalf("Self() = %v; want this pid with a start time", self)
	}
	if st, err := Check(self); st != Alive || err != nil {
		t.Errorf("Check(self) = %v, %v; want alive", st, err)
	}
	if st, _ := Check(Identity{PID: self.PID, Start: self.Start + 1}); st != Reused {
		t.Errorf("Check(self pid, other start) = %v; want reused", st)
	}

	// A killed child that is not reaped yet is a zombie: dead, although
	// its pid still exists.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	id := st.Identity()
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
	if got, _ := Check(Identity{PID: -1}); got != Gone {
		t.Errorf("Check(pid -1) = %v; want gone", got)
	}
}
