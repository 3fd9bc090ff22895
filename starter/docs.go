package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/stackrun/stackrun/workflows"
)

// runbooksDoc renders docs/runbooks.md from the runbooks' declarations (workflows.Def): one
// table, one row per runbook. TestRunbooksDocIsCurrent keeps the file in step.
func runbooksDoc() (string, error) {
	var b strings.Builder
	b.WriteString(`# Runbooks

Generated from the runbooks' declarations (` + "`workflows.Define`" + `) by
` + "`STACKRUN_UPDATE_DOCS=1 go test ./starter -run TestRunbooksDocIsCurrent`" + `; do not edit by
hand. Every runbook also takes ` + "`--reason`, `--dry-run`, `--wait`" + ` (and the global ` + "`--as`, `--output`" + `).
Steps are those of a run with the default flags (some flags add steps; a run's status shows
them all). The naming rule and how to add one: [adding-a-runbook.md](adding-a-runbook.md).

| runbook | workflow type, input, file | flags | steps | what it does |
| --- | --- | --- | --- | --- |
`)
	for _, rb := range workflows.Runbooks {
		flags, err := bindInputFlags(pflag.NewFlagSet(rb.Name, pflag.ContinueOnError), rb.NewInput())
		if err != nil {
			return "", fmt.Errorf("%s: %w", rb.Name, err)
		}
		var fl []string
		for _, f := range flags {
			s := "`--" + f.Name + "`"
			if f.Required {
				s += " (required)"
			}
			fl = append(fl, s)
		}
		steps := "`" + strings.Join(rb.Steps, "`, `") + "`"
		types := fmt.Sprintf("`%s`, `%s`, `workflows/%s`", rb.Type, workflows.InputTypeName(rb), workflows.FileName(rb.Name))
		if len(rb.Formerly) > 0 {
			types += " (formerly `" + strings.Join(rb.Formerly, "`, `") + "`)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", rb.Name, types, strings.Join(fl, ", "), steps, strings.ReplaceAll(rb.Short, "|", `\|`))
	}
	return b.String(), nil
}
