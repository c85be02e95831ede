// Command ratios prints the table of docs/benchmarks.md ("Recording at full
// speed") from the output of the bench module's benchmarks: medians of each
// benchmark, and the ratios the goals are stated in. Given two files, it
// prints them side by side (old, then new).
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

func un(impl string) (string, string) { return "BenchmarkUncontended/impl=" + impl, "ns/op" }

func rows() []row {
	unc := func(impl string) func(results) float64 {
		return func(r results) float64 { return r.median(un(impl)) }
	}
	one := func(impl string) func(results) float64 {
		return func(r results) float64 { return r.median("BenchmarkOneLock/procs=2/impl="+impl, "ns/acq") }
	}
	own := func(procs int, impl string) func(results) float64 {
		return func(r results) float64 {
			return r.median(fmt.Sprintf("BenchmarkOwnLocks/procs=%d/impl=%s", procs, impl), "Mops/s")
		}
	}
	create := func(locks int) func(results) float64 {
		return func(r results) float64 {
			return r.median(fmt.Sprintf("BenchmarkCreate/locks=%d/impl=lockreg", locks), "ns/op")
		}
	}
	show := func(f func(results) float64, suffix string) func(results) string {
		return func(r results) string { return num(f(r)) + suffix }
	}
	div := func(a, b func(results) float64) func(results) string {
		return func(r results) string { return ratio(a(r), b(r)) }
	}
	return []row{
		{"uncontended Lock+Unlock, full record (ns)", show(unc("lockreg"), ""), "≤ 50"},
		{"  the same / sync.Mutex", div(unc("lockreg"), unc("sync.Mutex")), "≤ 10x"},
		{"  record off (ns)", show(unc("lockreg-norecord"), ""), ""},
		{"  sync.Mutex / CAS floor (ns)", func(r results) string { return num(unc("sync.Mutex")(r)) + " / " + num(unc("cas")(r)) }, ""},
		{"  go-deadlock / flock / OFD lock (ns)", func(r results) string {
			return num(unc("go-deadlock")(r)) + " / " + num(unc("flock")(r)) + " / " + num(unc("ofd")(r))
		}, ""},
		{"2 processes, 1 lock: record on / off (ns per acquire)", func(r results) string {
			return num(one("lockreg")(r)) + " / " + num(one("lockreg-norecord")(r))
		}, ""},
		{"  on / off", div(one("lockreg"), one("lockreg-norecord")), "≤ 3x"},
		{"  CAS floor / flock / OFD (ns per acquire)", func(r results) string {
			return num(one("cas")(r)) + " / " + num(one("flock")(r)) + " / " + num(one("ofd")(r))
		}, ""},
		{"8 processes, 8 locks: record on / off (Mops/s, all processes)", func(r results) string {
			return num(own(8, "lockreg")(r)) + " / " + num(own(8, "lockreg-norecord")(r))
		}, ""},
		{"  on / off", div(own(8, "lockreg"), own(8, "lockreg-norecord")), "≥ 0.5x"},
		{"  record on: 8 processes / 1 process", div(own(8, "lockreg"), own(1, "lockreg")), ""},
		{"  record off: 8 processes / 1 process", div(own(8, "lockreg-norecord"), own(1, "lockreg-norecord")), ""},
		{"  CAS floor, 8 processes (Mops/s)", show(own(8, "cas"), ""), ""},
		{"creating a lock after 100 / 4,000 (ns)", func(r results) string {
			return num(create(100)(r)) + " / " + num(create(4000)(r))
		}, ""},
		{"  at 4,000 / at 100", div(create(4000), create(100)), "≈ 1x"},
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
	head := "| figure | median | goal |\n| --- | --- | --- |"
	if len(sets) == 2 {
		head = "| figure | old | new | goal |\n| --- | --- | --- | --- |"
	}
	fmt.Println(head)
	for _, rw := range rows() {
		cells := []string{rw.figure}
		for _, r := range sets {
			cells = append(cells, rw.value(r))
		}
		fmt.Printf("| %s | %s |\n", strings.Join(cells, " | "), rw.goal)
	}
}
