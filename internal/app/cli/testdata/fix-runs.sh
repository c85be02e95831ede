#!/bin/sh
# fix-runs.sh N: runs the demo with --fix N times (default 20) under
# `lockwatch run -o json` and counts the runs with a finding or a non-zero
# exit. Expects lockwatch and demo in $BIN (default ./bin, as `make build`
# leaves them).
set -u
BIN=${BIN:-./bin}
N=${1:-20}
out=$(mktemp -d)
bad=0
i=1
while [ "$i" -le "$N" ]; do
	"$BIN/lockwatch" run --interval=20ms -o json --report "$out/$i.json" -- "$BIN/demo" --fix >/dev/null 2>"$out/$i.err"
	st=$?
	n=$(grep -c '"kind"' "$out/$i.json" 2>/dev/null)
	n=${n:-0}
	if [ "$st" -ne 0 ] || [ "$n" -ne 0 ]; then
		bad=$((bad + 1))
		echo "run $i: exit $st, $n findings (see $out/$i.json)"
	fi
	i=$((i + 1))
done
echo "$N runs of demo --fix under lockwatch run: $bad with a finding or a failure"
[ "$bad" -eq 0 ] && rm -rf "$out"
[ "$bad" -eq 0 ]
