package report

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/stackrun/stackrun/activities"
)

// writeFiles renders the files a run collected (inspect-disk's report detail "files"): one
// heading per file with its outcome, size and SHA-256, then its content in a fence longer than
// any backtick run inside it. Binary content stays in the JSON report (base64).
func writeFiles(b *strings.Builder, detail any) {
	if detail == nil {
		return
	}
	raw, err := json.Marshal(detail)
	if err != nil {
		return
	}
	var files []activities.GuestFile
	if json.Unmarshal(raw, &files) != nil || len(files) == 0 {
		return
	}
	b.WriteString("## Files\n\n")
	for _, f := range files {
		fmt.Fprintf(b, "### %s — %s\n\n", code(f.Path), f.Status)
		if f.Status == activities.FileOK || f.Status == activities.FileOverCap {
			fmt.Fprintf(b, "- size %d bytes, %d returned", f.Size, f.Bytes)
			if f.SHA256 != "" {
				fmt.Fprintf(b, ", SHA-256 (%s) %s", f.SHA256Of, code(f.SHA256))
			}
			b.WriteString("\n")
		}
		if f.Detail != "" {
			fmt.Fprintf(b, "- %s\n", inline(f.Detail))
		}
		switch {
		case f.ContentBase64 != "":
			b.WriteString("- binary content: base64 in the JSON report (`--output json`)\n")
		case f.Content != "":
			fence := "```"
			for strings.Contains(f.Content, fence) {
				fence += "`"
			}
			fmt.Fprintf(b, "\n%s\n%s", fence, f.Content)
			if !strings.HasSuffix(f.Content, "\n") {
				b.WriteString("\n")
			}
			b.WriteString(fence + "\n")
		}
		b.WriteString("\n")
	}
}
