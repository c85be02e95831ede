// Command shortlived changed only its sync import line (the drop-in; no
// probe): it locks and unlocks a mutex, and exits. Under lockwatch run it
// joins the run by its drop-in arena file, for the tests of the run
// directory's bound.
package main

import "github.com/lockwatch/lockwatch/sync"

func main() {
	var mu sync.Mutex
	mu.Lock()
	mu.Unlock()
}
