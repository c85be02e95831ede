// Command crosscheck type-checks packages, from source, for every GOOS/GOARCH
// pair the Go toolchain supports (go tool dist list), with cgo off: the
// cross-build check of `make lint`. A full cross-compile of the standard
// library for some 47 targets takes minutes on a cold cache; type-checking
// from source takes seconds, and finds what breaks a build on another
// platform here (a name defined only in files for some GOOS or GOARCH, a
// constant that overflows on 32 bits). Assembly and the link are not
// checked.
//
//	go run ./internal/app/crosscheck ./sync
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

type target struct{ GOOS, GOARCH string }

const childEnv = "CROSSCHECK_CHILD"

func main() {
	if os.Getenv(childEnv) != "" {
		failed := false
		for _, dir := range os.Args[1:] {
			if err := check(dir); err != nil {
				fmt.Printf("%s: %v\n", dir, err)
				failed = true
			}
		}
		if failed {
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: crosscheck PACKAGE-DIR... (type-checks each for every GOOS/GOARCH)")
		os.Exit(2)
	}
	out, err := exec.Command("go", "tool", "dist", "list", "-json").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "crosscheck: go tool dist list: %v\n", err)
		os.Exit(2)
	}
	var targets []target
	if err := json.Unmarshal(out, &targets); err != nil {
		fmt.Fprintf(os.Stderr, "crosscheck: go tool dist list -json: %v\n", err)
		os.Exit(2)
	}
	// One child per target, NumCPU at once: go/build reads GOOS, GOARCH
	// and the experiments they imply (the tool tags) from the environment
	// when it initializes.
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "crosscheck: %v\n", err)
		os.Exit(2)
	}
	results := make([]string, len(targets))
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cmd := exec.Command(self, os.Args[1:]...)
			cmd.Env = append(os.Environ(), childEnv+"=1", "GOOS="+t.GOOS, "GOARCH="+t.GOARCH, "CGO_ENABLED=0", "GOFLAGS=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				results[i] = fmt.Sprintf("%s/%s: %v\n%s", t.GOOS, t.GOARCH, err, out)
			}
		})
	}
	wg.Wait()
	failed := 0
	for _, r := range results {
		if r != "" {
			fmt.Print(r)
			failed++
		}
	}
	if failed > 0 {
		os.Exit(1)
	}
	fmt.Printf("crosscheck: %s type-check on all %d targets\n", strings.Join(os.Args[1:], " "), len(targets))
}

// check type-checks the package in dir, and what it imports, for the
// target of build.Default (the environment's).
func check(dir string) error {
	ctx := build.Default
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "source", nil)
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	pkg, err := ctx.ImportDir(abs, 0)
	if err != nil {
		return err
	}
	var files []*ast.File
	for _, name := range pkg.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(abs, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	var errs bytes.Buffer
	conf := types.Config{Importer: imp.(types.ImporterFrom), Sizes: types.SizesFor("gc", ctx.GOARCH),
		Error: func(err error) {
			if errs.Len() < 2000 {
				fmt.Fprintln(&errs, err)
			}
		}}
	if _, err := conf.Check(pkg.ImportPath, fset, files, nil); err != nil {
		return fmt.Errorf("%s", strings.TrimSpace(errs.String()))
	}
	return nil
}
