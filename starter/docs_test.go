package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRunbooksDocIsCurrent fails when docs/runbooks.md is not what the declarations say;
// STACKRUN_UPDATE_DOCS=1 rewrites it.
func TestRunbooksDocIsCurrent(t *testing.T) {
	want, err := runbooksDoc()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "docs", "runbooks.md")
	if os.Getenv("STACKRUN_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with STACKRUN_UPDATE_DOCS=1 go test ./starter -run TestRunbooksDocIsCurrent)", err)
	}
	if string(got) != want {
		t.Errorf("docs/runbooks.md is stale: regenerate it with STACKRUN_UPDATE_DOCS=1 go test ./starter -run TestRunbooksDocIsCurrent")
	}
}
