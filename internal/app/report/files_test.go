package report

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/workflows"
)

func TestMarkdownFiles(t *testing.T) {
	files := []activities.GuestFile{
		{Path: "/etc/fstab", Status: activities.FileOK, Size: 12, Bytes: 12, SHA256: "ab12", SHA256Of: "file", Content: "UUID=x /\n```\n"},
		{Path: "/bin/blob", Status: activities.FileOK, Size: 3, Bytes: 3, ContentBase64: "AAEC"},
		{Path: "/etc/evil", Status: activities.FileRefused, Detail: "resolves outside the guest file system"},
	}
	// As the report arrives from Temporal: details decoded from JSON.
	raw, _ := json.Marshal(map[string]any{"files": files})
	var details map[string]any
	if err := json.Unmarshal(raw, &details); err != nil {
		t.Fatal(err)
	}
	md := Markdown(&workflows.Report{Runbook: "inspect-disk", Target: "x", Status: workflows.StatusCompleted, Details: details})
	for _, want := range []string{"## Files", "### `/etc/fstab` — ok", "SHA-256 (file) `ab12`", "````\nUUID=x /\n```\n````\n",
		"base64 in the JSON report", "### `/etc/evil` — refused", "- resolves outside the guest file system"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "AAEC") {
		t.Error("binary content in the Markdown report")
	}
}
