package stackdump_test

import (
	"fmt"
	"strings"

	"github.com/lockwatch/lockwatch/stackdump"
)

func Example() {
	const dump = `panic: test timed out after 10m0s

goroutine 7 [chan receive, 9 minutes]:
main.worker(0xc000010000)
	/src/app/main.go:12 +0x1d
created by main.main in goroutine 1
	/src/app/main.go:30 +0x25

goroutine 8 [chan receive, 3 minutes]:
main.worker(0xc000020000)
	/src/app/main.go:12 +0x1d
created by main.main in goroutine 1
	/src/app/main.go:30 +0x25

goroutine 1 [sync.Mutex.Lock]:
sync.(*Mutex).Lock(...)
	/usr/local/go/src/sync/mutex.go:46
main.main()
	/src/app/main.go:33 +0x5a
`
	s, err := stackdump.Parse(strings.NewReader(dump))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Reason)
	for _, g := range stackdump.GroupGoroutines(s.Goroutines, stackdump.IgnoreArgs) {
		fmt.Print(g)
	}
	// Output:
	// panic: test timed out after 10m0s
	// 2 goroutines: chan receive 2; longest wait 9m0s
	// ids: 7, 8
	// main.worker(*)
	// 	/src/app/main.go:12
	// created by main.main
	// 	/src/app/main.go:30
	// 1 goroutine: sync.Mutex.Lock 1
	// ids: 1
	// sync.(*Mutex).Lock(...)
	// 	/usr/local/go/src/sync/mutex.go:46
	// main.main()
	// 	/src/app/main.go:33
}
