package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockwatch/lockwatch/internal/diag/probeclient"
)

// HoldersSchema names the holders command's JSON format (docs/json.md).
const HoldersSchema = "lockwatch.holders/v1"

// holdersOutput is the holders command's JSON document (docs/json.md).
type holdersOutput struct {
	Schema  string `json:"schema"`
	PID     int    `json:"pid"`
	File    string `json:"file"`    // the profile written
	Live    int    `json:"live"`    // drop-in mutexes in the process
	Mutexes int    `json:"mutexes"` // held or awaited ones, one or more samples each
	Holders int    `json:"holders"`
	Readers int    `json:"readers"`
	Waiters int    `json:"waiters"`
}

func (a *app) holdersCmd() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "holders PID",
		Short: "Save the lock-holders profile (pprof) of a probed process's drop-in mutexes",
		Long: `holders asks the probe of PID for its drop-in mutexes
(github.com/lockwatch/lockwatch/sync) that are held or awaited, and saves them
as a profile in pprof's format: one sample per holder, reader and waiter,
at its stack, labelled name, kind and role (holder, reader, waiter), valued
by how long it has held or waited. Read it with
  go tool pprof -traces FILE
  go tool pprof -tagfocus role=waiter -top FILE`,
		Example: `  lockwatch holders 4242                     # saves lockholders-4242.pb.gz
  go tool pprof -traces lockholders-4242.pb.gz
  lockwatch holders --file held.pb.gz -o json 4242`,
		Args:              oneArg("a PID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := strconv.Atoi(args[0]); err != nil {
				return usagef("%q is not a pid", args[0])
			}
			t, err := resolve(args[0])
			if err != nil {
				return err
			}
			if file == "" {
				file = "lockholders-" + args[0] + ".pb.gz"
			}
			c := &probeclient.Client{Path: probeclient.SocketPath(t.dir, t.id), Timeout: max(a.opts.ProbeTimeout, probeMin)}
			v, err := c.Mutexes(cmd.Context())
			if err != nil {
				return usagef("pid %d's probe did not answer (%v); is it running a probe of this version?", t.id.PID, err)
			}
			out := holdersOutput{Schema: HoldersSchema, PID: t.id.PID, File: file, Live: v.Live, Mutexes: len(v.Mutexes)}
			for _, m := range v.Mutexes {
				if m.Holder != nil {
					out.Holders++
				}
				out.Readers += len(m.Readers)
				out.Waiters += len(m.Waiters)
			}
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return usagef("%v; give another file with --file", err)
			}
			if err := probeclient.HoldersProfile(v).Write(f); err != nil {
				f.Close()
				return usagef("writing %s: %v", file, err)
			}
			if err := f.Close(); err != nil {
				return usagef("writing %s: %v", file, err)
			}
			if a.output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			fmt.Fprintf(a.stdout, "%s: pid %d: %d of %d drop-in mutexes held or awaited: %d holders, %d readers, %d waiters\n",
				file, out.PID, out.Mutexes, out.Live, out.Holders, out.Readers, out.Waiters)
			fmt.Fprintf(a.stdout, "read it with: go tool pprof -traces %s\n", file)
			return nil
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "where to save the profile (default lockholders-PID.pb.gz)")
	return c
}

// probeMin is the least time a probe is given to answer a request that
// reads a table (a profile, the mutexes).
const probeMin = 2 * time.Second
