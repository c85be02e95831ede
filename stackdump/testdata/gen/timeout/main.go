// Command timeout runs `go test -timeout=1s` on the hanging test in
// ./hang and copies its output: the panic that the testing package makes
// on a timeout. Run it from the stackdump directory; stackdump's tests run
// it with -update to make testdata/timeout.txt.
package main

import (
	"os"
	"os/exec"
)

func main() {
	cmd := exec.Command("go", "test", "-count=1", "-timeout=1s", "./testdata/gen/timeout/hang")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	cmd.Run() // fails, as it should: the test times out
}
