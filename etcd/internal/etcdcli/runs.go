package etcdcli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
)

// runRoot is the prefix under which every run's keys are.
const runRoot = "/lockwatch/"

// runInfo is what ps says of one run.
type runInfo struct {
	name             string
	processes, alive int
	held, waits      int
	keys             int
}

// listRuns reads the runs kept in etcd: one keys-only range read of
// /lockwatch/ (at most etcdreg.MaxKeys keys; more says so).
func listRuns(ctx context.Context, cli *clientv3.Client) ([]runInfo, bool, error) {
	resp, err := cli.Get(ctx, runRoot, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(etcdreg.MaxKeys))
	if err != nil {
		return nil, false, fmt.Errorf("etcdreg: list runs: %w (%v): check that the cluster runs and that the endpoints are right", etcdreg.ErrUnreachable, err)
	}
	runs := map[string]*runInfo{}
	locks := map[string]map[string]int{} // run -> lock -> contenders
	for _, kv := range resp.Kvs {
		parts := strings.Split(strings.TrimPrefix(string(kv.Key), runRoot), "/")
		if len(parts) < 2 {
			continue
		}
		ri := runs[parts[0]]
		if ri == nil {
			ri = &runInfo{name: parts[0]}
			runs[parts[0]] = ri
			locks[parts[0]] = map[string]int{}
		}
		ri.keys++
		switch {
		case parts[1] == "proc" && len(parts) == 3:
			ri.processes++
		case parts[1] == "alive" && len(parts) == 3:
			ri.alive++
		case parts[1] == "lock" && len(parts) == 4:
			locks[parts[0]][parts[2]]++
		}
	}
	var out []runInfo
	for name, ri := range runs {
		for _, n := range locks[name] {
			ri.held++
			ri.waits += n - 1
		}
		out = append(out, *ri)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, resp.More, nil
}

// ps lists the runs kept in etcd.
func ps(ctx context.Context, cli *clientv3.Client, stdout io.Writer) error {
	runs, more, err := listRuns(ctx, cli)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RUN\tPROCESSES\tALIVE\tLOCKS HELD\tWAITERS\tKEYS")
	for _, r := range runs {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\n", r.name, r.processes, r.alive, r.held, r.waits, r.keys)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if more {
		fmt.Fprintf(stdout, "(more than %d keys under %s: the rest were not read)\n", etcdreg.MaxKeys, runRoot)
	}
	return nil
}

// prune deletes the runs that have ended: no process of theirs has a live
// lease (none is alive, as far as etcd knows) and no lock is held; with
// names, only those of them. A live run is never deleted: the delete is
// conditional on no alive key under the run.
func prune(ctx context.Context, cli *clientv3.Client, names []string, stdout io.Writer) error {
	runs, _, err := listRuns(ctx, cli)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, r := range runs {
		if len(want) > 0 && !want[r.name] {
			continue
		}
		delete(want, r.name)
		if r.alive > 0 || r.held > 0 {
			fmt.Fprintf(stdout, "kept %s: %d process(es) alive, %d lock(s) held\n", r.name, r.alive, r.held)
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		// Deleted only if still ended: no alive key appeared meanwhile.
		_, err := cli.Txn(dctx).If(
			clientv3.Compare(clientv3.CreateRevision(runRoot+r.name+"/alive/"), "=", 0).WithPrefix(),
		).Then(clientv3.OpDelete(runRoot+r.name+"/", clientv3.WithPrefix())).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("etcdreg: prune %s: %w", r.name, err)
		}
		fmt.Fprintf(stdout, "removed %s (%d keys)\n", r.name, r.keys)
	}
	for n := range want {
		fmt.Fprintf(stdout, "no run %s\n", n)
	}
	return nil
}
