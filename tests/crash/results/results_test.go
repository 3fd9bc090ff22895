package results

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The table from fixture parts (testdata/parts): the crash matrix, the hostile corpus and three
// fault-proxy files (two of one test) merged per runbook; "check" of the other parts joins
// "check (daily)", the only case the crash matrix ran; totals add up, the worst is the largest,
// a 0 written prints 0 and only a column no part wrote prints "-".
func TestTableFromParts(t *testing.T) {
	files, err := ReadAll("testdata/parts")
	require.NoError(t, err)
	require.Len(t, files, 5)
	var b strings.Builder
	Print(&b, files)
	want := `reliability, from crash 2026-12-01 13:40 UTC (full); fault proxy, 3 tests, 2026-12-01 23:45 UTC to 2026-12-01 23:52 UTC (sample, rate 0.2 seed 1); hostile 2026-12-01 23:30 UTC (full)

| runbook | boundaries crashed | runs correct | side effects repeated | worst time to recover | faults injected | retries | hostile inputs refused |
| --- | --- | --- | --- | --- | --- | --- | --- |
| chat | - | - | - | - | - | - | 60/60 |
| check (daily) | 42 | 40/42 ✗ | 0 | 30.5 s | 0 | 81 | 88/88 |
| evacuate | 38 | 38/38 | 0 | 23.7 s | 9 | 44 | 250/251 ✗ |
| swift-disk | 34 | 34/34 | 0 | 26.6 s | 5 | 57 | 180/180 |
| swift-disk (--drain-first) | 134 | 134/134 | 1 | 70.5 s | - | 253 | - |
| **total** | 248 | 246/248 ✗ | 1 | 70.5 s | 14 | 435 | 578/579 ✗ |
`
	require.Equal(t, want, b.String())

	// Without the hostile part its column is "-" throughout, the total's too.
	var noHostile []File
	for _, f := range files {
		if f.Part != "hostile" {
			noHostile = append(noHostile, f)
		}
	}
	rows := Merge(noHostile)
	require.Len(t, rows, 4, "no chat row, and check is check (daily)")
	b.Reset()
	Print(&b, noHostile)
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n")[4:] {
		require.True(t, strings.HasSuffix(l, "| - |"), l)
	}
	require.Contains(t, b.String(), "| **total** | 248 | 246/248 ✗ | 1 | 70.5 s | 14 | 435 | - |")
}

// A part that writes a runbook both bare and as a variant keeps them apart, and the other parts'
// bare rows join the bare one.
func TestBareRowsJoinOnlyAnOnlyVariant(t *testing.T) {
	rows := Merge([]File{
		{Part: "crash", Rows: []Row{{Runbook: "swift-ring (--set-weight)", Retries: Int(1)}, {Runbook: "post-reboot-check (--start-instances)", Retries: Int(1)}}},
		{Part: "other", Rows: []Row{{Runbook: "swift-ring (--add)", Retries: Int(2)}}},
		{Part: "hostile", Rows: []Row{{Runbook: "swift-ring", HostileTotal: Int(3), HostileRefused: Int(3)}, {Runbook: "post-reboot-check", HostileTotal: Int(1), HostileRefused: Int(1)}}},
	})
	var labels []string
	for _, r := range rows {
		labels = append(labels, r.Runbook)
	}
	require.Equal(t, []string{"post-reboot-check (--start-instances)", "swift-ring", "swift-ring (--add)", "swift-ring (--set-weight)"}, labels,
		"two cases of swift-ring: its bare row stays; one of post-reboot-check: joined")
	require.Equal(t, 1, *rows[0].HostileTotal)
}

// Write replaces a part's file; ReadAll reads every part back.
func TestWriteReadAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "reliability")
	at := time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)
	require.NoError(t, Write(dir, File{Part: "faults-TestX", Measured: at, Rows: []Row{{Runbook: "evacuate", FaultsInjected: Int(1)}}}))
	require.NoError(t, Write(dir, File{Part: "faults-TestX", Measured: at, Rows: []Row{{Runbook: "evacuate", FaultsInjected: Int(4)}}}))
	require.NoError(t, Write(dir, File{Part: "hostile", Measured: at, Rows: []Row{{Runbook: "evacuate", HostileRefused: Int(2), HostileTotal: Int(2)}}}))
	files, err := ReadAll(dir)
	require.NoError(t, err)
	require.Len(t, files, 2)
	rows := Merge(files)
	require.Len(t, rows, 1)
	require.Equal(t, 4, *rows[0].FaultsInjected, "the rerun replaced the first file")
	require.Nil(t, rows[0].Retries)
}
