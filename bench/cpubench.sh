#!/bin/sh
# cpubench.sh: the CPU time per operation of benchmarks run by two test
# binaries of the same package (sync, and the drop-in), interleaved: each
# benchmark runs a fixed number of operations (-test.benchtime Nx) in a
# process of its own, whose user+system time (/usr/bin/time) is divided by
# N. On a shared machine the wall time (ns/op) counts the others' work;
# the CPU time does not. Prints benchstat lines, impl=sync and
# impl=lockwatch.
#
#   bench/cpubench.sh SYNC.test DROPIN.test ROUNDS < list
#
# list: one "BenchmarkName N" a line.
set -eu
a=$1 b=$2 rounds=$3
list=$(cat)
i=0
while [ "$i" -lt "$rounds" ]; do
	i=$((i + 1))
	echo "$list" | while read -r name n; do
		[ -n "$name" ] || continue
		for impl in sync lockwatch; do
			bin=$a
			[ "$impl" = lockwatch ] && bin=$b
			t=$(/usr/bin/time -f '%U %S' "$bin" -test.run '^$' -test.bench "^$name\$" -test.benchtime "${n}x" 2>&1 >/dev/null | tail -1)
			echo "$t" | awk -v name="$name" -v impl="$impl" -v n="$n" \
				'{ printf "%s/impl=%s 1 %.2f cpu-ns/op\n", name, impl, ($1 + $2) * 1e9 / n }'
		done
	done
done
