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
#
# Exit status: the number of suites that failed.
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

: >"$WORK/failures"
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
