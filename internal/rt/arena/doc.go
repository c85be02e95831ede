// Package arena is the format of a lockreg run, shared by its writer and
// its readers: the run directory (RunDir, an os.Root that refuses symbolic
// links) and its per-process files, the shared-memory arena's layout
// (docs/registry-format.md) with the records in it and their seqlock
// writes and reads, and the reader that copies a run into typed values
// without taking any lock (ReadSnapshot, ScanProcesses).
//
// lockreg, the lock, writes a run through this package; lockwatch (its
// lockreg source, ps, prune, the liveness of a run's processes) and the
// probe (its locks answer, the removal of a run that ended cleanly) read
// it. Nothing here is lockreg's public API: a program takes locks with
// lockreg, and never needs to read a run itself.
//
//	s, err := arena.ReadSnapshot(dir)
//	if err != nil {
//		return err
//	}
//	for _, l := range s.Locks {
//		frames, _ := s.Stack(l.Holder.Identity(), l.Holder.Stack)
//		...
//	}
package arena
