package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lockwatch/lockwatch/internal/app/cli"
)

func ExampleMain() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	tb := filepath.Join(dir, "hang.txt")
	os.WriteFile(tb, []byte(`goroutine 1 [chan receive]:
main.main()
	/src/main.go:9 +0x1d

goroutine 7 [chan receive]:
main.worker()
	/src/main.go:20 +0x25
created by main.main in goroutine 1
	/src/main.go:8 +0x1f
`), 0o600)
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), []string{"stacks", tb}, nil, &stdout, &stderr)
	fmt.Println("exit", code)
	fmt.Println(strings.Split(stdout.String(), "\n")[0][len(tb):])
	// Output:
	// exit 0
	// : 2 goroutines in 2 groups (text)
}
