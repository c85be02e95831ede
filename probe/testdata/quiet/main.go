// Command quiet runs for ever with lockwatch's probe started (first argument
// "probe") or without it ("none"), and prints "ready SOCKET" ("ready -"
// without the probe) once it runs. With a second argument "idle" (the
// default) one goroutine sleeps (time.Sleep, a day); with "busy", two
// goroutines each compute for 2 ms and sleep for 3, again and again.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/lockwatch/lockwatch/probe"
)

// sink keeps the busy goroutines' work from being optimised away.
var sink [2]uint64

func main() {
	sock := "-"
	switch os.Args[1] {
	case "probe":
		a, err := probe.Start(probe.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		sock = a.SocketPath()
	case "none":
	default:
		fmt.Fprintf(os.Stderr, "quiet: unknown argument %q\n", os.Args[1])
		os.Exit(3)
	}
	load := "idle"
	if len(os.Args) > 2 {
		load = os.Args[2]
	}
	switch load {
	case "idle":
		go time.Sleep(24 * time.Hour)
	case "busy":
		for i := range sink {
			go func() {
				for {
					for end := time.Now().Add(2 * time.Millisecond); time.Now().Before(end); {
						for j := 0; j < 1000; j++ {
							sink[i] += uint64(j) * 2654435761
						}
					}
					time.Sleep(3 * time.Millisecond)
				}
			}()
		}
	default:
		fmt.Fprintf(os.Stderr, "quiet: unknown load %q\n", load)
		os.Exit(3)
	}
	fmt.Println("ready", sock)
	<-make(chan struct{})
}
