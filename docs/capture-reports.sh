#!/bin/sh
# capture-reports.sh: capture again the lockwatch output shown in README.md
# and docs/tutorial.md, so that it stays true to the code.
#
# Run from the repository root (make docs-reports). It builds lockwatch and
# the demo with -trimpath (frames name module paths, never this machine's
# directories), runs the demo under lockwatch, and replaces each fenced
# block that follows a marker line
#
#     <!-- capture:NAME -->
#
# with the new output of NAME: run-hang (make demo's report) or stuck-line
# (the probe's line when a plain 'demo --hang' has waited 10 s). The user id
# in run directories (/dev/shm/lockwatch-UID) is written as $UID.
set -eu

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$tmp/" ./cmd/lockwatch ./cmd/demo
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
		kill -9 -- "-$demo" 2>/dev/null
		exit 1
	fi
	sleep 0.1
done
grep 'has waited' "$tmp/stuck.err" | head -1 | clean >"$tmp/stuck-line"
run=$(sed -n 's/.*dump: \(.*\)\/p-[0-9]*-[0-9]*\.stuck.*/\1/p' "$tmp/stuck.err" | head -1)
kill -9 -- "-$demo"
wait "$demo" 2>/dev/null || true
[ -n "$run" ] && rm -rf "$run"

# Replace each marked block.
for doc in README.md docs/tutorial.md; do
	awk -v dir="$tmp" '
		/^<!-- capture:[a-z-]+ -->$/ {
			name = $0; sub(/^<!-- capture:/, "", name); sub(/ -->$/, "", name)
			print; want = 1; next
		}
		want && /^```/ { print "```"; want = 0; head = 1; next }
		head {
			# The command line shown ("$ make demo") is kept.
			if ($0 ~ /^\$ /) print
			while ((getline line < (dir "/" name)) > 0) print line
			close(dir "/" name)
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
