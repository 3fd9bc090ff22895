package activities_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
)

// testdata/object.ring.gz is the lab's object ring (swift-ring-builder 2.30: part power 8, 3
// replicas, 6 devices in 3 zones).
func TestParseRingFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "object.ring.gz"))
	require.NoError(t, err)
	ra, err := activities.ParseRingFile(data)
	require.NoError(t, err)
	require.Len(t, ra.Replica2Part2Dev, 3)
	assert.Len(t, ra.Replica2Part2Dev[0], 256)
	id := ra.DeviceID("127.0.0.22", "sdd")
	require.GreaterOrEqual(t, id, 0)
	parts := ra.PartitionsOf(id)
	assert.InDelta(t, 128, len(parts), 16, "about half of the partitions: one of two devices in its zone")
	for p, peers := range parts {
		require.Len(t, peers, 2, "partition %d: two other replicas", p)
		for _, d := range peers {
			assert.NotEqual(t, id, d)
		}
	}
	assert.Equal(t, -1, ra.DeviceID("127.0.0.22", "sdz"))
	_, err = activities.ParseRingFile([]byte("not gzip"))
	assert.Error(t, err)
}

func TestCoverPartitions(t *testing.T) {
	assigned := map[int][]int{1: {4, 5}, 2: {4, 5}, 3: {4, 5}, 4: {4, 5}}
	peers := map[int]map[int]bool{4: {1: true, 2: true, 3: true}, 5: {1: true}}
	c := activities.CoverPartitions(assigned, map[int]bool{1: true, 2: true}, peers)
	assert.Equal(t, activities.PartitionCoverage{Assigned: 4, Expected: 3, Have: 2}, c, "partition 4 holds no data anywhere: not expected")
}
