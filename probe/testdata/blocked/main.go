// Command blocked starts lockwatch's probe itself (probe.Start, as a program
// run outside lockwatch run does), prints "ready SOCKET", and blocks every
// goroutine it has for ever.
package main

import (
	"fmt"
	"os"

	"github.com/lockwatch/lockwatch/probe"
)

func main() {
	a, err := probe.Start(probe.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	fmt.Println("ready", a.SocketPath())
	<-make(chan struct{})
}
