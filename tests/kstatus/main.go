// kstatus-check reads status snapshots written by the e2e tests (tests/common/snapshots.rs) and
// checks that the real kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status) computes the
// verdict each snapshot expects. It prints a table and exits 1 on any mismatch, on a malformed
// snapshot, or when the directory lacks snapshots it must hold.
//
//	kstatus-check [-min N] [-expect-list FILE] [-require-lag] DIR
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	min := flag.Int("min", 1, "fail when DIR holds fewer snapshots than this")
	list := flag.String("expect-list", "", "file naming (one per line, # comments) snapshots DIR must hold")
	lag := flag.Bool("require-lag", false, "fail unless some snapshot has metadata.generation ahead of status.observedGeneration")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] DIR\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	req := Requirements{Min: *min, RequireLag: *lag}
	if *list != "" {
		names, err := ReadNameList(*list)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus-check:", err)
			os.Exit(2)
		}
		req.Names = names
	}
	report, err := CheckDir(flag.Arg(0), req)
	if report != nil {
		report.Print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus-check: FAIL:", err)
		os.Exit(1)
	}
	fmt.Printf("kstatus-check: %d snapshot(s) in %s agree with kstatus\n", len(report.Rows), flag.Arg(0))
}
