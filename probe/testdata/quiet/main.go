// Command quiet idles for ever, one goroutine asleep (time.Sleep), with
// lockwatch's probe started (argument "probe") or without it ("none"), and
// prints "ready SOCKET" ("ready -" without the probe) once it idles.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/lockwatch/lockwatch/probe"
)

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
	go time.Sleep(24 * time.Hour)
	fmt.Println("ready", sock)
	<-make(chan struct{})
}
