// Package report renders runbook reports (workflows.Report) as Markdown for people and JSON for
// machines, and holds the small table helpers the operators' CLI prints with.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/workflows"
)

// JSON renders the report as indented JSON with the stable keys of workflows.Report.
func JSON(r *workflows.Report) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("report: nil report")
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return append(b, '\n'), nil
}

// severityOrder sorts findings: critical first.
var severityOrder = map[string]int{
	activities.SeverityCritical: 0,
	activities.SeverityWarning:  1,
	activities.SeverityInfo:     2,
}

// Markdown renders the report for people: title, status, summary, the state the run left its
// target in, plan, steps, findings by severity, decisions, refused signals and the audit trail.
func Markdown(r *workflows.Report) string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	title := r.Runbook
	if title == "" {
		title = "run"
	}
	fmt.Fprintf(&b, "# %s on %s\n\n", title, code(r.Target))
	if r.DryRun {
		b.WriteString("_Dry run: the plan only, nothing was changed._\n\n")
	}
	fmt.Fprintf(&b, "- **Status:** %s\n", r.Status)
	fmt.Fprintf(&b, "- **Run:** %s", code(r.WorkflowID))
	if r.RunID != "" {
		fmt.Fprintf(&b, " (run ID %s)", code(r.RunID))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "- **Requested by:** %s", inline(r.RequestedBy))
	if st := r.Start; st != nil {
		fmt.Fprintf(&b, " (%s)", startProof(st))
	}
	b.WriteString("\n")
	if r.Reason != "" {
		fmt.Fprintf(&b, "- **Reason:** %s\n", inline(r.Reason))
	}
	if !r.Started.IsZero() {
		fmt.Fprintf(&b, "- **Started:** %s\n", Time(r.Started))
	}
	if !r.Ended.IsZero() {
		fmt.Fprintf(&b, "- **Ended:** %s", Time(r.Ended))
		if !r.Started.IsZero() {
			fmt.Fprintf(&b, " (took %s)", Duration(r.Ended.Sub(r.Started)))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	if r.Summary != "" {
		fmt.Fprintf(&b, "%s\n\n", inline(r.Summary))
	}
	if r.LeftState != "" {
		fmt.Fprintf(&b, "**Left state: %s**\n\n", inline(r.LeftState))
	}

	if len(r.Plan) > 0 {
		b.WriteString("## Plan\n\n")
		for i, p := range r.Plan {
			fmt.Fprintf(&b, "%d. %s\n", i+1, inline(p))
		}
		b.WriteString("\n")
	}

	if len(r.Steps) > 0 {
		b.WriteString("## Steps\n\n")
		b.WriteString("| Step | State | Duration | Target | Attempts | Detail | Error |\n")
		b.WriteString("|---|---|---|---|---|---|---|\n")
		for _, s := range r.Steps {
			attempts := ""
			if s.Attempts > 0 {
				attempts = fmt.Sprint(s.Attempts)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n",
				cell(s.Name), cell(string(s.State)), StepDuration(s), cell(s.Target), attempts, cell(s.Detail), cell(s.Error))
		}
		b.WriteString("\n")
	}

	if len(r.Findings) > 0 {
		b.WriteString("## Findings\n\n")
		fs := append([]activities.Finding(nil), r.Findings...)
		sort.SliceStable(fs, func(i, j int) bool { return sevRank(fs[i].Severity) < sevRank(fs[j].Severity) })
		last := ""
		for _, f := range fs {
			if f.Severity != last {
				if last != "" {
					b.WriteString("\n")
				}
				fmt.Fprintf(&b, "### %s\n\n", capitalize(f.Severity))
				last = f.Severity
			}
			fmt.Fprintf(&b, "- **%s**: %s\n", inline(f.Subject), inline(f.Message))
		}
		b.WriteString("\n")
	}

	writeFiles(&b, r.Details["files"])

	if len(r.Decisions) > 0 {
		b.WriteString("## Decisions\n\n")
		b.WriteString("| When | Kind | Name | Outcome | By | Via | Comment | Signed |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|\n")
		for _, d := range r.Decisions {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n",
				Time(d.At), cell(d.Kind), cell(d.Name), cell(d.Outcome), cell(d.By), cell(d.Via), cell(d.Comment), cell(Signer(d)))
		}
		b.WriteString("\n")
	}

	if len(r.Refused) > 0 {
		b.WriteString("## Refused signals\n\n")
		b.WriteString("Refused messages changed nothing in the run.\n\n")
		b.WriteString("| When | Signal | Target | By | Reason | Via | Key claimed |\n")
		b.WriteString("|---|---|---|---|---|---|---|\n")
		for _, m := range r.Refused {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", Time(m.At), cell(m.Signal), cell(m.Target), cell(m.By), cell(m.Reason), cell(m.Via), cell(m.Key))
		}
		b.WriteString("\n")
	}

	if len(r.Audit) > 0 {
		b.WriteString("## Audit\n\n")
		b.WriteString("| When | Step | Activity | Target | Requested by | Result | Duration | Error |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|\n")
		for _, a := range r.Audit {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", Time(a.At), cell(a.Step), cell(a.Activity),
				cell(a.Target), cell(a.RequestedBy), cell(a.Result), Duration(a.Duration), cell(a.Error))
		}
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

func capitalize(s string) string {
	if s == "" {
		return "Unspecified"
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func sevRank(s string) int {
	if r, ok := severityOrder[s]; ok {
		return r
	}
	return len(severityOrder)
}

// code renders s as inline code (a placeholder when empty).
func code(s string) string {
	if s == "" {
		return "—"
	}
	return "`" + strings.ReplaceAll(s, "`", "'") + "`"
}

// inline keeps free text on one line.
func inline(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(inline(s), "|", `\|`)
}

// Time formats a timestamp for people (UTC, RFC 3339 to the second); "" for the zero time.
func Time(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Duration formats a duration for people, rounded to what matters.
func Duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// StepDuration is how long a step ran ("" when it has not started or not ended).
func StepDuration(s workflows.StepStatus) string {
	if s.Started == nil || s.Ended == nil {
		return ""
	}
	return Duration(s.Ended.Sub(*s.Started))
}

// Table writes rows under a header, aligned with text/tabwriter. Cells are kept on one line.
func Table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			c = inline(strings.ReplaceAll(c, "\t", " "))
			if c == "" {
				c = "-"
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprint(tw, "\n")
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	return tw.Flush()
}

// StepRows turns steps into rows for Table under StepHeader.
func StepRows(steps []workflows.StepStatus) [][]string {
	rows := make([][]string, len(steps))
	for i, s := range steps {
		attempts := ""
		if s.Attempts > 0 {
			attempts = fmt.Sprint(s.Attempts)
		}
		detail := s.Detail
		if s.Error != "" {
			if detail != "" {
				detail += "; "
			}
			detail += "error: " + s.Error
		}
		rows[i] = []string{s.Name, string(s.State), StepDuration(s), s.Target, attempts, detail}
	}
	return rows
}

// StepHeader is the header of StepRows.
var StepHeader = []string{"STEP", "STATE", "DURATION", "TARGET", "ATTEMPTS", "DETAIL"}

// Signer says who signed a decision: the operator's key, the chat gateway vouching for a chat
// user, unsigned (a gate the policy allows so), or the policy itself (a timeout).
func Signer(d workflows.Decision) string {
	switch {
	case d.Gateway != "":
		return fmt.Sprintf("chat gateway %s for %s (%s)", d.Gateway, d.ChatUser, d.Key)
	case d.Key != "":
		return d.By + " (" + d.Key + ")"
	case d.Unsigned:
		return "unsigned (allowed on this gate)"
	case d.By == "policy":
		return "policy"
	}
	return "-"
}

// startProof says how the start was proven.
func startProof(st *workflows.StartRecord) string {
	switch {
	case st.Parent != "":
		return "started by its parent run " + st.Parent
	case st.Unsigned && st.Schedule != "":
		return "unsigned: a run that changes nothing, started by schedule " + st.Schedule
	case st.Unsigned:
		return "unsigned: a run that changes nothing"
	case st.Gateway != "":
		return fmt.Sprintf("signed by chat gateway %s for %s, key %s", st.Gateway, st.ChatUser, st.Key)
	}
	return "signed with " + st.Key
}
