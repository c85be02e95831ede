package arena

import (
	"testing"

	"github.com/lockwatch/lockwatch/procid"
)

func TestProcessOfFile(t *testing.T) {
	id := procid.ID{PID: 4242, Start: 1234567}
	for _, ext := range []string{"json", "stacks", "sock", "orders.json", "stuck-20261207-183000.000000000.txt"} {
		if got, ok := ProcessOfFile(ProcessFile(id, ext)); !ok || got != id {
			t.Errorf("ProcessOfFile(%q) = %v, %v; want %v", ProcessFile(id, ext), got, ok, id)
		}
	}
	for _, name := range []string{"arena", "p-", "p-1-2", "p-0-2.json", "p-01-2.json", "p-1-02.json", "p--1-2.json",
		"p-1-.json", "p-x-2.json", "p-2147483648-1.json", "q-1-2.json", "p-1-18446744073709551616.json"} {
		if got, ok := ProcessOfFile(name); ok {
			t.Errorf("ProcessOfFile(%q) = %v; want no process", name, got)
		}
	}
}

func TestDropinPID(t *testing.T) {
	if pid, ok := DropinPID("dropin-4242.arena"); !ok || pid != 4242 {
		t.Errorf("DropinPID(dropin-4242.arena) = %d, %v", pid, ok)
	}
	for _, name := range []string{"dropin-.arena", "dropin-0.arena", "dropin-01.arena", "dropin-x.arena", "dropin-1.arena.tmp",
		".sweep-dropin-1.arena", "dropin-2147483648.arena", "arena", "p-1-2.json"} {
		if pid, ok := DropinPID(name); ok {
			t.Errorf("DropinPID(%q) = %d; want none", name, pid)
		}
	}
}
