// Command table prints the reliability table (make reliability) from the results folder every
// part of the suite writes into (tests/crash/results: the format).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/stackrun/stackrun/tests/crash/results"
)

func main() {
	dir := flag.String("dir", results.Dir("."), "the results folder (STACKRUN_RELIABILITY_DIR)")
	flag.Parse()
	files, err := results.ReadAll(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if len(files) == 0 {
		fmt.Fprintf(os.Stderr, "no results in %s: run the parts first (make reliability)\n", *dir)
		os.Exit(1)
	}
	results.Print(os.Stdout, files)
}
