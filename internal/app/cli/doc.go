// Package cli is the lockwatch command: its commands (run, attach, watch,
// ps, stacks), flags, output formats and exit codes. cmd/lockwatch calls
// Main and exits with its code; nothing else here exits or touches the real
// standard streams.
//
//	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
//	os.Exit(code)
//
// # Exit codes
//
//	0 nothing found (run: PROGRAM succeeded)
//	1 run: PROGRAM failed (its own non-zero status is passed through)
//	2 usage or environment error (one line on stderr says what to do)
//	3 a deadlock was found
package cli
