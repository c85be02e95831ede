// Command ratios prints the table of docs/benchmarks.md ("Against its
// peers") from the output of the bench module's benchmarks: medians of each
// benchmark, and the ratios the goals are stated in. Given two files, it
// prints them side by side (old, then new). The column "issue 12 (before)"
// holds the figures of issue 12's text, measured before the work on another
// day: compare ratios within one run, not across columns.
//
//	go run ./ratios new.txt
//	go run ./ratios old.txt new.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// results maps "benchmark name/unit" to the measured values.
type results map[string][]float64

var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader) (results, error) {
	res := make(results)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", sc.Text(), err)
			}
			res[m[1]+" "+f[i+1]] = append(res[m[1]+" "+f[i+1]], v)
		}
	}
	return res, sc.Err()
}

// median of name's unit, or 0 if not measured.
func (r results) median(name, unit string) float64 {
	v := append([]float64(nil), r[name+" "+unit]...)
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

type row struct {
	figure string
	value  func(r results) string
	goal   string
	issue  string // the figure in issue 12's text, measured before the work (2 vCPU, CGO_ENABLED=0)
}

func num(v float64) string {
	switch {
	case v == 0:
		return "n/a"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "n/a"
	}
	return num(a/b) + "x"
}

func rows() []row {
	get := func(name, unit string) func(results) float64 {
		return func(r results) float64 { return r.median(name, unit) }
	}
	unc := func(impl, unit string) func(results) float64 { return get("BenchmarkUncontended/impl="+impl, unit) }
	one := func(impl, unit string) func(results) float64 { return get("BenchmarkOneLock/procs=2/impl="+impl, unit) }
	own := func(procs int, impl, unit string) func(results) float64 {
		return get(fmt.Sprintf("BenchmarkOwnLocks/procs=%d/impl=%s", procs, impl), unit)
	}
	create := func(locks int, unit string) func(results) float64 {
		return get(fmt.Sprintf("BenchmarkCreate/locks=%d/impl=lockreg", locks), unit)
	}
	pair := func(a, b func(results) float64) func(results) string {
		return func(r results) string { return num(a(r)) + " / " + num(b(r)) }
	}
	div := func(a, b func(results) float64) func(results) string {
		return func(r results) string { return ratio(a(r), b(r)) }
	}
	divs := func(a, b, c, d func(results) float64) func(results) string {
		return func(r results) string { return ratio(a(r), b(r)) + " / " + ratio(c(r), d(r)) }
	}
	return []row{
		{"uncontended Lock+Unlock, full record: wall / CPU ns", pair(unc("lockreg", "ns/op"), unc("lockreg", "cpu-ns/op")), "≤ 50 ns", "136.5 ns wall"},
		{"  the same / sync.Mutex (wall / CPU)", divs(unc("lockreg", "ns/op"), unc("sync.Mutex", "ns/op"),
			unc("lockreg", "cpu-ns/op"), unc("sync.Mutex", "cpu-ns/op")), "≤ 10x", "29.7x wall (sync.Mutex 4.6 ns)"},
		{"  record off: wall / CPU ns", pair(unc("lockreg-norecord", "ns/op"), unc("lockreg-norecord", "cpu-ns/op")), "", ""},
		{"  full record / CAS floor (CPU)", div(unc("lockreg", "cpu-ns/op"), unc("cas", "cpu-ns/op")), "", ""},
		{"  sync.Mutex / CAS floor: wall ns", pair(unc("sync.Mutex", "ns/op"), unc("cas", "ns/op")), "", "4.6 / 5.1"},
		{"  go-deadlock / flock / OFD lock: wall ns", func(r results) string {
			return num(unc("go-deadlock", "ns/op")(r)) + " / " + num(unc("flock", "ns/op")(r)) + " / " + num(unc("ofd", "ns/op")(r))
		}, "", "1100 / n/a / n/a"},
		{"2 processes, 1 lock, record on / off: wall ns per acquire", pair(one("lockreg", "ns/acq"), one("lockreg-norecord", "ns/acq")), "", "220 / 11.7"},
		{"  the same, CPU ns per acquire", pair(one("lockreg", "cpu-ns/acq"), one("lockreg-norecord", "cpu-ns/acq")), "", ""},
		{"  on / off (wall / CPU)", divs(one("lockreg", "ns/acq"), one("lockreg-norecord", "ns/acq"),
			one("lockreg", "cpu-ns/acq"), one("lockreg-norecord", "cpu-ns/acq")), "≤ 3x", "18.8x wall"},
		{"  CAS floor / flock / OFD: wall ns per acquire", func(r results) string {
			return num(one("cas", "ns/acq")(r)) + " / " + num(one("flock", "ns/acq")(r)) + " / " + num(one("ofd", "ns/acq")(r))
		}, "", ""},
		{"8 processes, 8 locks, record on / off: Mops/s (all processes)", pair(own(8, "lockreg", "Mops/s"), own(8, "lockreg-norecord", "Mops/s")), "", "3.25 / 211"},
		{"  the same, CPU ns per acquire", pair(own(8, "lockreg", "cpu-ns/acq"), own(8, "lockreg-norecord", "cpu-ns/acq")), "", ""},
		{"  on / off throughput per CPU", div(own(8, "lockreg-norecord", "cpu-ns/acq"), own(8, "lockreg", "cpu-ns/acq")), "≥ 0.5x", ""},
		{"  record on, 8 processes / 1: Mops/s", div(own(8, "lockreg", "Mops/s"), own(1, "lockreg", "Mops/s")), "", ""},
		{"  record on, 8 processes / 1: throughput per CPU", div(own(1, "lockreg", "cpu-ns/acq"), own(8, "lockreg", "cpu-ns/acq")), "1x: no sharing", ""},
		{"  record off, 8 processes / 1: throughput per CPU", div(own(1, "lockreg-norecord", "cpu-ns/acq"), own(8, "lockreg-norecord", "cpu-ns/acq")), "", ""},
		{"  CAS floor, 8 processes: Mops/s", func(r results) string { return num(own(8, "cas", "Mops/s")(r)) }, "", ""},
		{"creating a lock after 100 / 4,000: wall ns", pair(create(100, "ns/op"), create(4000, "ns/op")), "", "1400 / 14200"},
		{"  the same, user CPU ns", pair(create(100, "user-ns/op"), create(4000, "user-ns/op")), "", ""},
		{"  at 4,000 / at 100 (user CPU)", div(create(4000, "user-ns/op"), create(100, "user-ns/op")), "≈ 1x", "10.1x (wall)"},
	}
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: ratios [old.txt] new.txt")
		os.Exit(2)
	}
	var sets []results
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ratios:", err)
			os.Exit(1)
		}
		r, err := parse(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "ratios: %s: %v\n", path, err)
			os.Exit(1)
		}
		sets = append(sets, r)
	}
	head := "| figure | issue 12 (before) | median | goal |\n| --- | --- | --- | --- |"
	if len(sets) == 2 {
		head = "| figure | issue 12 (before) | old | new | goal |\n| --- | --- | --- | --- | --- |"
	}
	fmt.Println(head)
	for _, rw := range rows() {
		issue := rw.issue
		if issue == "" {
			issue = "-"
		}
		cells := []string{rw.figure, issue}
		for _, r := range sets {
			cells = append(cells, rw.value(r))
		}
		fmt.Printf("| %s | %s |\n", strings.Join(cells, " | "), rw.goal)
	}
}
