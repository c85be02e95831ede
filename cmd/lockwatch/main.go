// Command lockwatch is the live deadlock diagnostics tool for multi-process
// Go programs: see internal/app/cli and docs/commands.md.
package main

import (
	"context"
	"os"

	"github.com/lockwatch/lockwatch/internal/app/cli"
)

func main() {
	code := cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	os.Exit(code)
}
