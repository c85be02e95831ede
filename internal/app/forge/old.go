package forge

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"io"
)

//go:embed arena-v4.gz
var arenaV4 []byte

// ArenaV4 returns an arena of format version 4, the format before fencing
// tokens, as lockreg wrote it (capacities 4 processes, 4 locks, 4 waiters,
// 16 events, 4 edges; one lock, queue.wlock, taken once by a process that
// then closed its registry): what a reader of version 5 must refuse.
func ArenaV4() []byte {
	z, err := gzip.NewReader(bytes.NewReader(arenaV4))
	if err != nil {
		panic("forge: the embedded version-4 arena: " + err.Error())
	}
	b, err := io.ReadAll(z)
	if err != nil {
		panic("forge: the embedded version-4 arena: " + err.Error())
	}
	return b
}
