package filelocksrc

import (
	"fmt"
	"slices"
	"testing"
)

// TestScope is the knot of pid 10 in a table of POSIX locks: its own lock
// nobody waits for (kept: its own), the lock of pid 20 it waits for, then
// the lock of pid 30 that 20 waits for, and the same range read-locked by
// pid 40 too (a holder of that lock, kept with it); 20's and 30's locks
// nobody waits for are left out and counted by holder; the locks of pids
// 50 and 60, which no process of the knot meets, are neither kept nor
// counted.
func TestScope(t *testing.T) {
	table := []byte("1: POSIX  ADVISORY  WRITE 10 fe:00:1 0 EOF\n" +
		"2: POSIX  ADVISORY  WRITE 20 fe:00:2 0 EOF\n" +
		"2: -> POSIX  ADVISORY  WRITE 10 fe:00:2 0 EOF\n" +
		"3: POSIX  ADVISORY  READ 30 fe:00:3 0 9\n" +
		"3: -> POSIX  ADVISORY  WRITE 20 fe:00:3 0 9\n" +
		"4: POSIX  ADVISORY  READ 40 fe:00:3 0 9\n" +
		"5: POSIX  ADVISORY  WRITE 20 fe:00:5 0 EOF\n" +
		"6: POSIX  ADVISORY  WRITE 30 fe:00:6 0 EOF\n" +
		"7: POSIX  ADVISORY  WRITE 30 fe:00:7 0 EOF\n" +
		"8: POSIX  ADVISORY  WRITE 50 fe:00:8 0 EOF\n" +
		"9: POSIX  ADVISORY  WRITE 50 fe:00:9 0 EOF\n" +
		"9: -> POSIX  ADVISORY  WRITE 60 fe:00:9 0 EOF\n")
	p := Parse(table, Limits{})
	if p.Errors > 0 {
		t.Fatal(p.Err)
	}
	blocks := group(p.Entries)
	r := &reader{}
	x := indexBlocks(blocks)
	k := r.scope(blocks, x, 10)
	var inodes []uint64
	for _, i := range k.kept {
		inodes = append(inodes, blocks[i].root.Inode)
	}
	if want := []uint64{1, 2, 3, 3}; !slices.Equal(inodes, want) {
		t.Errorf("kept the locks on inodes %v; want %v", inodes, want)
	}
	if want := []int{10, 20, 30, 40}; !slices.Equal(k.met, want) {
		t.Errorf("met pids %v; want %v", k.met, want)
	}
	if len(k.left) != 2 || k.left[20] != 1 || k.left[30] != 2 {
		t.Errorf("left out %v; want 1 of pid 20 and 2 of pid 30", k.left)
	}
	// Each list of the index has every block of its key, once.
	count := func(seq func(func(int) bool)) int {
		n := 0
		for range seq {
			n++
		}
		return n
	}
	if n := count(indexed(&x, x.byPID, 20)); n != 3 {
		t.Errorf("pid 20 is in %d blocks; want 3 (the owner of two, a waiter in one)", n)
	}
	if n := count(indexed(&x, x.byIno, 3)); n != 2 {
		t.Errorf("inode 3 has %d blocks; want 2", n)
	}
	if n := count(indexed(&x, x.byID, indexIDOf(&blocks[2].root))); n != 2 {
		t.Errorf("the read lock on inode 3 has %d blocks; want 2 (one per holder)", n)
	}
	for i := range blocks {
		if want := count(indexed(&x, x.byID, indexIDOf(&blocks[i].root))) > 1; x.shared[i] != want {
			t.Errorf("block %d (inode %d) marked shared %v; want %v", i, blocks[i].root.Inode, x.shared[i], want)
		}
	}
	if n := count(indexed(&x, x.byPID, 99)); n != 0 {
		t.Errorf("pid 99 is in %d blocks; want none", n)
	}
}

// BenchmarkScope is the knot of a process that waits for one of another
// process's 10,000 flock'ed files, found from a table of 10,000 locks
// (indexBlocks and scope, the part of a read that grows with the table
// apart from parsing it and /proc): the attach of a waiter in
// BenchmarkAttachFileLocks.
func BenchmarkScope(b *testing.B) {
	var table []byte
	for i := range 10000 {
		table = fmt.Appendf(table, "%d: FLOCK  ADVISORY  WRITE 100 fe:00:%d 0 EOF\n", i+1, i+1)
		if i == 0 {
			table = fmt.Appendf(table, "%d: -> FLOCK  ADVISORY  WRITE 200 fe:00:%d 0 EOF\n", i+1, i+1)
		}
	}
	table = append(table, "10001: FLOCK  ADVISORY  WRITE 200 fe:00:20000 0 EOF\n10001: -> FLOCK  ADVISORY  WRITE 100 fe:00:20000 0 EOF\n"...)
	p := Parse(table, Limits{})
	blocks := group(p.Entries)
	r := &reader{}
	for b.Loop() {
		k := r.scope(blocks, indexBlocks(blocks), 200)
		if len(k.kept) != 2 || k.left[100] != 9999 {
			b.Fatalf("kept %d blocks, left %v; want 2 and 9,999 of pid 100", len(k.kept), k.left)
		}
	}
}
