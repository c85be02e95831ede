#!/bin/sh
# compare.sh [BASE]: the bench-compare run (see the Makefile). Runs the
# scenario benchmarks and the creation benchmark COUNT times each (default 6)
# into ../bench-compare.txt, and, when BASE names another lockwatch checkout
# (an absolute path), the same benchmarks built against it into
# ../bench-compare-old.txt, alternating old and new count by count so that
# both see the same machine load. Prints benchstat and the ratio table.
set -eu
count=${COUNT:-6}
benchtime=${BENCHTIME:-1s}
base=${1:-}
go=${GO:-go}
# bench/ is a module of its own outside the workspace (go.work): its go.mod
# replaces the main module by this checkout (BASE: by another one).
export GOWORK=off
cd "$(dirname "$0")"
scen='^Benchmark(Uncontended|OneLock|OwnLocks)$'
new=../bench-compare.txt
old=../bench-compare-old.txt
: >"$new"
if [ -n "$base" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	sed "s#=> \.\./#=> $base#" go.mod >"$tmp/base.mod"
	cp go.sum "$tmp/base.sum"
	: >"$old"
fi
for i in $(seq "$count"); do
	echo "bench-compare: count $i of $count" >&2
	if [ -n "$base" ]; then
		$go test -modfile="$tmp/base.mod" -run '^$' -bench "$scen" -benchtime "$benchtime" -count 1 . >>"$old"
		$go test -modfile="$tmp/base.mod" -run '^$' -bench '^BenchmarkCreate$' -benchtime 1000x -count 1 . >>"$old"
	fi
	$go test -run '^$' -bench "$scen" -benchtime "$benchtime" -count 1 . >>"$new"
	$go test -run '^$' -bench '^BenchmarkCreate$' -benchtime 1000x -count 1 . >>"$new"
done
if [ -n "$base" ]; then
	$go tool -modfile=../tools/go.mod benchstat old="$old" new="$new"
	$go run ./ratios "$old" "$new"
else
	$go tool -modfile=../tools/go.mod benchstat -col /impl "$new"
	$go run ./ratios "$new"
fi
