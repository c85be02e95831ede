#!/bin/sh
# capture-reports.sh: capture again the lockwatch output shown in README.md
# and docs/tutorial.md, so that it stays true to the code.
#
# Run from the repository root (make docs-reports). It builds lockwatch and
# the programs with -trimpath (frames name module paths, never this machine's
# directories), runs them deadlocked, and replaces each fenced
# block that follows a marker line
#
#     <!-- capture:NAME -->
#
# with the new output of NAME: run-hang (make demo's report), stuck-line
# (the probe's line when a plain 'demo --hang' has waited 10 s),
# attach-stuck (`lockwatch attach PID` on examples/stuck, a program that
# only changed its sync import, once its goroutines have waited 10 s) or
# dropin-line (that program's probe line) or attach-chain (the same program
# deadlocked through both kinds of lock). The user id in run directories
# (/dev/shm/lockwatch-UID) is written as $UID. A capture whose first line
# is a command ("$ lockwatch attach 123") replaces the command shown.
# attach-chain's wait-for graph is drawn again too, into docs/attach-chain.svg
# (lockwatch attach -o dot | dot -Tsvg), when Graphviz is installed.
set -eu

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$tmp/" ./cmd/lockwatch ./cmd/demo ./examples/stuck
uid=$(id -u)
clean() { sed -e "s#lockwatch-$uid/#lockwatch-\$UID/#g" -e "s#$tmp/#bin/#g"; }

# run-hang: the report of 'make demo', folded as on a 120-column terminal.
# (COLUMNS is honoured in a pipe too.) Exit status 124: deadlock found.
st=0
COLUMNS=120 "$tmp/lockwatch" run --on-deadlock=kill -- "$tmp/demo" --hang >"$tmp/run-hang.out" 2>&1 || st=$?
if [ "$st" -ne 124 ]; then
	echo "capture-reports: lockwatch run exited $st, want 124 (deadlock found):" >&2
	cat "$tmp/run-hang.out" >&2
	exit 1
fi
clean <"$tmp/run-hang.out" >"$tmp/run-hang"
# The run was kept for attach: it is not needed here.
run=$(sed -n 's/^lockwatch report: \([^,]*\),.*/\1/p' "$tmp/run-hang.out" | head -1)
[ -n "$run" ] && rm -rf "$run"

# stuck-line: a plain demo (no lockwatch run) that hangs; its probe speaks
# after 10 s. The demo and its children are killed once the line is out.
# setsid: the demo and its children in a process group of their own.
setsid "$tmp/demo" --hang 2>"$tmp/stuck.err" >/dev/null &
demo=$!
i=0
until grep -q 'has waited' "$tmp/stuck.err" 2>/dev/null; do
	i=$((i + 1))
	if [ "$i" -gt 300 ]; then
		echo "capture-reports: no stuck line after 30 s" >&2
		kill -9 "-$demo" 2>/dev/null
		exit 1
	fi
	sleep 0.1
done
grep 'has waited' "$tmp/stuck.err" | head -1 | clean >"$tmp/stuck-line"
run=$(sed -n 's/.*dump: \([^ ]*\)\/p-[0-9]*-[0-9]*\.stuck.*/\1/p' "$tmp/stuck.err" | head -1)
kill -9 "-$demo"
wait "$demo" 2>/dev/null || true
[ -n "$run" ] && rm -rf "$run"

# attach_example NAME WAY STREAM PATTERN [svg]: runs examples/stuck WAY in a
# process group of its own, waits (30 s at most) for a line matching PATTERN
# on its STREAM (out or err), attaches (exit 3 expected: a deadlock found),
# kills the group, and leaves the report, after its command line, in
# $tmp/NAME (the example's output in $tmp/NAME.out and $tmp/NAME.err);
# with svg, its wait-for graph is drawn into docs/NAME.svg.
attach_example() {
	name=$1 way=$2 stream=$3 pattern=$4 svg=${5:-}
	setsid "$tmp/stuck" "$way" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pid=$!
	i=0
	until grep -q "$pattern" "$tmp/$name.$stream" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -gt 300 ]; then
			echo "capture-reports: examples/stuck $way: no line '$pattern' after 30 s" >&2
			cat "$tmp/$name.err" >&2
			kill -9 "-$pid" 2>/dev/null
			exit 1
		fi
		sleep 0.1
	done
	st=0
	COLUMNS=120 "$tmp/lockwatch" attach "$pid" >"$tmp/$name.report" 2>&1 || st=$?
	if [ -n "$svg" ] && command -v dot >/dev/null; then
		"$tmp/lockwatch" attach -o dot "$pid" >"$tmp/$name.dot" || [ $? -eq 3 ]
		dot -Tsvg "$tmp/$name.dot" >"docs/$name.svg"
	elif [ -n "$svg" ]; then
		echo "capture-reports: Graphviz (dot) is not installed: docs/$name.svg is not drawn again" >&2
	fi
	kill -9 "-$pid"
	wait "$pid" 2>/dev/null || true
	if [ "$st" -ne 3 ]; then
		echo "capture-reports: lockwatch attach on examples/stuck $way exited $st, want 3 (deadlock found):" >&2
		cat "$tmp/$name.report" >&2
		exit 1
	fi
	{ echo "\$ lockwatch attach $pid"; clean <"$tmp/$name.report"; } >"$tmp/$name"
	run=$(sed -n 's/^lockwatch report: \([^,]*\),.*/\1/p' "$tmp/$name.report" | head -1)
	[ -n "$run" ] && rm -rf "$run"
}

# attach-stuck and dropin-line: examples/stuck holder, attached once the
# probe has said that a goroutine waited 10 s (so the holder has held past
# lockwatch's 10 s threshold: a stuck-holder).
attach_example attach-stuck holder err 'has waited'
grep 'has waited' "$tmp/attach-stuck.err" | head -1 | clean >"$tmp/dropin-line"

# attach-chain: examples/stuck chain, attached as soon as it says "stuck":
# a dead holder of a lockreg lock, its waiter holding a drop-in mutex, and
# the goroutines behind that.
attach_example attach-chain chain out '^stuck$' svg

# Replace each marked block.
for doc in README.md docs/tutorial.md; do
	awk -v dir="$tmp" '
		/^<!-- capture:[a-z-]+ -->$/ {
			name = $0; sub(/^<!-- capture:/, "", name); sub(/ -->$/, "", name)
			print; want = 1; next
		}
		want && /^```/ { print "```"; want = 0; head = 1; next }
		head {
			# The command line shown ("$ make demo") is kept, unless the
			# capture begins with its own.
			n = 0
			while ((getline line < (dir "/" name)) > 0) cap[++n] = line
			close(dir "/" name)
			if ($0 ~ /^\$ / && !(n > 0 && cap[1] ~ /^\$ /)) print
			for (i = 1; i <= n; i++) print cap[i]
			delete cap
			print "```"
			head = 0
			if ($0 ~ /^```/) next
			skip = 1; next
		}
		skip && /^```/ { skip = 0; next }
		skip { next }
		{ print }
' "$doc" >"$tmp/doc" && cat "$tmp/doc" >"$doc"
done
echo "capture-reports: README.md and docs/tutorial.md captured again"
