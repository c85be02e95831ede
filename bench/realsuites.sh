#!/bin/sh
# realsuites.sh: six real projects' own test suites (and go-cache's
# benchmarks), with only their "sync" import swapped for the drop-in.
# Each project is fetched at a pinned version from the module proxy (go mod
# download), copied to a scratch directory, its `import "sync"` lines (and
# `"sync"` in import blocks) rewritten to
# `sync "github.com/lockwatch/lockwatch/sync"`, pointed at this checkout
# with a replace directive, and tested: without and with -race (goleak and
# synctest tests included, as the projects have them).
#
#   bench/realsuites.sh            # every project, both ways
#   RACE=0 bench/realsuites.sh     # without -race only
#   ONLY=go-cache bench/realsuites.sh
#   BENCH=1 ONLY=go-cache bench/realsuites.sh   # also go-cache's benchmarks, sync then drop-in
#   ONLY=go-sync bench/realsuites.sh            # Go's own sync tests alone
#
# Exit status: the number of suites that failed.
#
# go-sync is Go's own tests of package sync, from the installed Go
# ($(go env GOROOT)/src/sync, copied at run time, never kept here), with
# `. "sync"` and `"sync"` swapped for the drop-in, in a scratch module.
# What cannot apply is taken out, by name (the script fails if Go's files
# no longer have it), because it tests the runtime's or the standard
# library's internals through names that only package sync's own
# export_test.go or std's internal packages give, not package sync's API:
#   - export_test.go (package sync itself: exports its internals) and
#     runtime_sema_test.go (all of it: the runtime's semaphores, through
#     Runtime_Semacquire and Runtime_Semrelease);
#   - mutex_test.go: HammerSemaphore, TestSemaphore,
#     BenchmarkUncontendedSemaphore, BenchmarkContendedSemaphore (the same
#     semaphores);
#   - pool_test.go: TestPool and TestPoolNew (pin the goroutine to its P with
#     Runtime_procPin), TestPoolDequeue, TestPoolChain and testPoolDequeue
#     (Pool's internal queues), TestPoolGC, TestPoolRelease and testPool
#     (wait for the runtime's cleanup queue through a function the runtime
#     gives, by go:linkname, to the package named sync_test alone);
#   - oncefunc_test.go: TestOnceXGC and runCleanups (the same function);
#   - map_test.go: applyHashTrieMap and TestMapMatchesHashTrieMap, and in
#     map_reference_test.go and map_bench_test.go the HashTrieMap variant
#     (internal/sync.HashTrieMap, which sync.Map is built on; std-only).
# internal/testenv, which std's tests may import, is replaced by the few
# functions they use (Executable, MustHaveExec, SkipIfOptimizationOff).
# Pool, Map, Once, WaitGroup and Cond are the standard library's own types
# in the drop-in (aliases), so their tests run Go's types, with the
# drop-in's Mutex as the Cond's Locker.
#
# The tests run with -vet=off: requiring this module raises a project's go
# directive to this module's, which turns on vet checks (non-constant
# format strings) that the project's own tests fail with sync too. zap's
# TestStacktraceFiltersVendorZap is skipped: it copies zap's sources into a
# GOPATH vendor tree of its own, where the swapped import has no module.
set -u
GO=${GO:-go}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
RACE=${RACE:-1}
ONLY=${ONLY:-}
BENCH=${BENCH:-0}

# name module@version [tests to skip]
PROJECTS="
golang-lru github.com/hashicorp/golang-lru/v2@v2.0.7
go-cache github.com/patrickmn/go-cache@v2.1.0+incompatible
groupcache github.com/golang/groupcache@v0.0.0-20241129210726-2c02b8208cf8
bigcache github.com/allegro/bigcache/v3@v3.1.0
x-sync golang.org/x/sync@v0.25.0
zap go.uber.org/zap@v1.28.0 ^TestStacktraceFiltersVendorZap$
"

# dropfunc FILE NAME removes the top-level function NAME (gofmt'd: from
# "func NAME(" to the next line that is "}") from FILE; it fails if FILE has
# none.
dropfunc() {
	grep -q "^func $2(" "$1" || { echo "go-sync: $(basename "$1") has no func $2: Go's sync tests changed; update bench/realsuites.sh"; return 1; }
	awk -v f="func $2(" 'index($0, f) == 1 { skip = 1 } !skip { print } skip && $0 == "}" { skip = 0 }' "$1" >"$1.tmp" && mv "$1.tmp" "$1"
}

# dropline FILE TEXT removes the lines of FILE that contain TEXT; it fails if
# none does.
dropline() {
	grep -qF "$2" "$1" || { echo "go-sync: $(basename "$1") has no line with $2: Go's sync tests changed; update bench/realsuites.sh"; return 1; }
	grep -vF "$2" "$1" >"$1.tmp"; mv "$1.tmp" "$1"
}

# dropunused FILE removes the imports of FILE's import block that the rest of
# it no longer uses (NAME. nowhere else), after the removals above.
dropunused() {
	sed -n '/^import (/,/^)/p' "$1" | grep '^	' | while read -r a b; do
		if [ -n "$b" ]; then name=$a; else name=$(basename "$(echo "$a" | tr -d '"')"); fi
		case $name in _ | .) continue ;; esac
		if ! sed '/^import (/,/^)/d' "$1" | grep -q "\b$name\."; then
			grep -vxF "	$a${b:+ $b}" "$1" >"$1.tmp"; mv "$1.tmp" "$1"
		fi
	done
}

# gosync prepares Go's own sync tests in $WORK/go-sync (see the top).
gosync() {
	src=$($GO env GOROOT)/src/sync
	dst=$WORK/go-sync
	rm -rf "$dst" && mkdir -p "$dst/testenv" || return 1
	cp "$src"/*_test.go "$dst"/ && chmod u+w "$dst"/*.go || return 1
	rm "$dst/export_test.go" "$dst/runtime_sema_test.go" || return 1
	dropfunc "$dst/mutex_test.go" HammerSemaphore &&
		dropfunc "$dst/mutex_test.go" TestSemaphore &&
		dropfunc "$dst/mutex_test.go" BenchmarkUncontendedSemaphore &&
		dropfunc "$dst/mutex_test.go" BenchmarkContendedSemaphore &&
		dropfunc "$dst/pool_test.go" TestPool &&
		dropfunc "$dst/pool_test.go" TestPoolNew &&
		dropfunc "$dst/pool_test.go" TestPoolDequeue &&
		dropfunc "$dst/pool_test.go" TestPoolChain &&
		dropfunc "$dst/pool_test.go" testPoolDequeue &&
		dropfunc "$dst/pool_test.go" TestPoolGC &&
		dropfunc "$dst/pool_test.go" TestPoolRelease &&
		dropfunc "$dst/pool_test.go" testPool &&
		dropfunc "$dst/oncefunc_test.go" TestOnceXGC &&
		dropfunc "$dst/oncefunc_test.go" runCleanups &&
		dropline "$dst/oncefunc_test.go" '//go:linkname runtime_blockUntilEmptyCleanupQueue' &&
		dropline "$dst/oncefunc_test.go" 'func runtime_blockUntilEmptyCleanupQueue(int64) bool' &&
		dropfunc "$dst/map_test.go" applyHashTrieMap &&
		dropfunc "$dst/map_test.go" TestMapMatchesHashTrieMap &&
		dropline "$dst/map_reference_test.go" '_ mapInterface = &isync.HashTrieMap[any, any]{}' &&
		dropline "$dst/map_test.go" 'isync "internal/sync"' &&
		dropline "$dst/map_reference_test.go" 'isync "internal/sync"' &&
		dropline "$dst/map_bench_test.go" 'isync "internal/sync"' || return 1
	grep -qF '&isync.HashTrieMap[any, any]{}, ' "$dst/map_bench_test.go" || { echo "go-sync: map_bench_test.go has no HashTrieMap variant: Go's sync tests changed; update bench/realsuites.sh"; return 1; }
	sed -i 's#&isync.HashTrieMap\[any, any\]{}, ##' "$dst/map_bench_test.go"
	for f in "$dst"/*_test.go; do dropunused "$f"; done
	if grep -n 'isync\.\|Runtime_\|PoolDequeue\|NewPoolChain\|linkname\|runtime_' "$dst"/*.go; then
		echo "go-sync: internals left after the removals: Go's sync tests changed; update bench/realsuites.sh"; return 1
	fi
	# The swap, and testenv's stand-in.
	sed -i -e 's#^\([[:space:]]*\)\. "sync"$#\1. "github.com/lockwatch/lockwatch/sync"#' \
		-e 's#^\([[:space:]]*\)"sync"$#\1sync "github.com/lockwatch/lockwatch/sync"#' \
		-e 's#^\([[:space:]]*\)"internal/testenv"$#\1"gosync/testenv"#' "$dst"/*_test.go
	cat >"$dst/testenv/testenv.go" <<'GO'
// Package testenv stands in for the standard library's internal/testenv,
// with the functions Go's sync tests use.
package testenv

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// Executable is the test binary's path.
func Executable(t testing.TB) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	return exe
}

// MustHaveExec: Linux can run a program.
func MustHaveExec(t testing.TB) {}

// SkipIfOptimizationOff skips a test built with -gcflags=-N.
func SkipIfOptimizationOff(t testing.TB) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-gcflags" && strings.Contains(s.Value, "-N") {
				t.Skip("optimizations are off")
			}
		}
	}
}
GO
	swapped=$(grep -l 'lockwatch/lockwatch/sync"' "$dst"/*_test.go | wc -l)
	(cd "$dst" && $GO mod init gosync >/dev/null 2>&1 &&
		$GO mod edit -require=github.com/lockwatch/lockwatch@v0.0.0 -replace=github.com/lockwatch/lockwatch="$ROOT" &&
		$GO mod tidy >/dev/null 2>&1) || { echo "go-sync: cannot make its module in $dst"; return 1; }
	echo "== go-sync ($($GO env GOVERSION) src/sync): $swapped files swapped"
}

: >"$WORK/failures"
if [ -z "$ONLY" ] || [ "$ONLY" = go-sync ]; then
	if gosync; then
		cd "$WORK/go-sync" || exit 1
		if $GO test -vet=off -count=1 . >"$WORK/go-sync.test.txt" 2>&1; then
			echo "go-sync: ok"
		else
			echo "go-sync: FAIL (log: $WORK/go-sync.test.txt)"; tail -20 "$WORK/go-sync.test.txt"; echo "go-sync" >>"$WORK/failures"
		fi
		if [ "$RACE" = 1 ]; then
			if CGO_ENABLED=1 $GO test -vet=off -race -count=1 . >"$WORK/go-sync.race.txt" 2>&1; then
				echo "go-sync -race: ok"
			else
				echo "go-sync -race: FAIL (log: $WORK/go-sync.race.txt)"; tail -20 "$WORK/go-sync.race.txt"; echo "go-sync -race" >>"$WORK/failures"
			fi
		fi
		cd "$ROOT" || exit 1
	else
		echo "go-sync prepare" >>"$WORK/failures"
	fi
fi
echo "$PROJECTS" | while read -r name modver skip; do
	[ -n "$name" ] || continue
	[ -z "$ONLY" ] || [ "$ONLY" = "$name" ] || continue
	dir=$($GO mod download -json "$modver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$dir" ]; then
		echo "$name: cannot download $modver"; echo "$name download" >>"$WORK/failures"; continue
	fi
	src=$WORK/$name
	rm -rf "$src" && cp -r "$dir" "$src" && chmod -R u+w "$src"
	cd "$src" || { echo "$name copy" >>"$WORK/failures"; continue; }
	mod=${modver%@*}
	if [ ! -f go.mod ]; then
		$GO mod init "$mod" >/dev/null 2>&1
	fi
	# The swap: the import of sync, alone or in a block.
	find . -name '*.go' -type f | xargs sed -i \
		-e 's#^import "sync"$#import sync "github.com/lockwatch/lockwatch/sync"#' \
		-e 's#^\([[:space:]]*\)"sync"$#\1sync "github.com/lockwatch/lockwatch/sync"#'
	swapped=$(grep -rl 'sync "github.com/lockwatch/lockwatch/sync"' --include='*.go' . | wc -l)
	$GO mod edit -require=github.com/lockwatch/lockwatch@v0.0.0 -replace=github.com/lockwatch/lockwatch="$ROOT"
	$GO mod tidy >/dev/null 2>&1 || $GO mod tidy
	echo "== $name ($modver): $swapped files swapped"
	if $GO test -vet=off -skip "${skip:-^$}" -count=1 ./... >"$WORK/$name.test.txt" 2>&1; then
		echo "$name: ok"
	else
		echo "$name: FAIL (log: $WORK/$name.test.txt)"; tail -20 "$WORK/$name.test.txt"; echo "$name" >>"$WORK/failures"
	fi
	if [ "$RACE" = 1 ]; then
		if CGO_ENABLED=1 $GO test -vet=off -skip "${skip:-^$}" -race -count=1 ./... >"$WORK/$name.race.txt" 2>&1; then
			echo "$name -race: ok"
		else
			echo "$name -race: FAIL (log: $WORK/$name.race.txt)"; tail -20 "$WORK/$name.race.txt"; echo "$name -race" >>"$WORK/failures"
		fi
	fi
	if [ "$BENCH" = 1 ]; then
		# The same benchmarks with sync (the tag makes the drop-in sync's
		# own types) and with the drop-in, interleaved.
		for i in 1 2 3 4 5; do
			$GO test -vet=off -run '^$' -bench . -tags nolockwatch . | sed 's/^Benchmark/BenchmarkSync/'
			$GO test -vet=off -run '^$' -bench . .
		done >"$WORK/$name.bench.txt" 2>&1
		echo "$name benchmarks: $WORK/$name.bench.txt"
	fi
	cd "$ROOT" || exit 1
done
failed=$(wc -l <"$WORK/failures")
echo "realsuites: $failed failed; work in $WORK"
exit "$failed"
