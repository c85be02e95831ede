package etcdreg_test

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockwatch/lockwatch/etcd/etcdreg"
	"github.com/lockwatch/lockwatch/etcd/etcdsrc"
	"github.com/lockwatch/lockwatch/report"
)

// The tests of the findings diagnose their runs as lockwatch-etcd does:
// through etcdsrc and lockwatch's report (which this package's own test
// files cannot import: etcdsrc imports etcdreg).
func init() {
	etcdreg.SetDiagnose(func(ctx context.Context, cli *clientv3.Client, run, localHost string, stuckAfter time.Duration, live bool) (*report.Report, error) {
		src := etcdsrc.Sources(cli, run, localHost)
		if !live {
			src.Stacks = nil
		}
		return report.Diagnose(ctx, src, report.Options{StuckAfter: stuckAfter, ProbeTimeout: 10 * time.Second})
	})
}
