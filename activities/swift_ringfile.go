package activities

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// RingAssignment is what a ring file (object.ring.gz, format 1 of Swift 2.x) says about where
// each partition's replicas live: the refill check's measure of a device's share.
type RingAssignment struct {
	Devs []*RingFileDev // by id; nil where a device was removed
	// Replica2Part2Dev[r][p] is the device id of replica r of partition p.
	Replica2Part2Dev [][]uint16
}

// RingFileDev is one device of a ring file.
type RingFileDev struct {
	ID     int    `json:"id"`
	IP     string `json:"ip"`
	Device string `json:"device"`
}

// ParseRingFile reads a gzipped ring file: "R1NG", version 1, the JSON header's length and the
// header, then one array of 2-byte device ids per replica (the last may be short).
func ParseRingFile(data []byte) (RingAssignment, error) {
	var ra RingAssignment
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return ra, fmt.Errorf("ring file: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 256<<20))
	if err != nil {
		return ra, fmt.Errorf("ring file: %w", err)
	}
	if len(raw) < 10 || string(raw[:4]) != "R1NG" || binary.BigEndian.Uint16(raw[4:6]) != 1 {
		return ra, fmt.Errorf("ring file: not a version 1 ring (magic %q)", raw[:min(len(raw), 6)])
	}
	n := int(binary.BigEndian.Uint32(raw[6:10]))
	if 10+n > len(raw) {
		return ra, fmt.Errorf("ring file: header of %d bytes cut short", n)
	}
	var hdr struct {
		Devs         []*RingFileDev `json:"devs"`
		PartShift    int            `json:"part_shift"`
		ReplicaCount int            `json:"replica_count"`
		ByteOrder    string         `json:"byteorder"`
	}
	if err := json.Unmarshal(raw[10:10+n], &hdr); err != nil {
		return ra, fmt.Errorf("ring file header: %w", err)
	}
	if hdr.PartShift < 0 || hdr.PartShift > 32 || 32-hdr.PartShift > 24 || hdr.ReplicaCount < 1 || hdr.ReplicaCount > 16 {
		return ra, fmt.Errorf("ring file header: part_shift %d, replica_count %d", hdr.PartShift, hdr.ReplicaCount)
	}
	var order binary.ByteOrder = binary.LittleEndian
	if hdr.ByteOrder == "big" {
		order = binary.BigEndian
	}
	parts := 1 << (32 - hdr.PartShift)
	body := raw[10+n:]
	for r := 0; r < hdr.ReplicaCount && len(body) > 0; r++ {
		k := min(len(body)/2, parts)
		ids := make([]uint16, k)
		for i := range ids {
			ids[i] = order.Uint16(body[2*i:])
		}
		ra.Replica2Part2Dev = append(ra.Replica2Part2Dev, ids)
		body = body[2*k:]
	}
	ra.Devs = hdr.Devs
	return ra, nil
}

// DeviceID returns the id of the device at ip with the given name, or -1.
func (ra RingAssignment) DeviceID(ip, name string) int {
	for _, d := range ra.Devs {
		if d != nil && d.IP == ip && d.Device == name {
			return d.ID
		}
	}
	return -1
}

// PartitionsOf maps each partition that has a replica on device id to the other devices holding
// its other replicas.
func (ra RingAssignment) PartitionsOf(id int) map[int][]int {
	out := map[int][]int{}
	for _, p2d := range ra.Replica2Part2Dev {
		for p, d := range p2d {
			if int(d) == id {
				out[p] = nil
			}
		}
	}
	for _, p2d := range ra.Replica2Part2Dev {
		for p, d := range p2d {
			if peers, ok := out[p]; ok && int(d) != id {
				out[p] = append(peers, int(d))
			}
		}
	}
	return out
}

// partitionDirs reads `ls -1A <objects dir>`: the partitions present on a device.
func partitionDirs(listing string) map[int]bool {
	out := map[int]bool{}
	for _, f := range strings.Fields(listing) {
		if p, err := strconv.Atoi(f); err == nil {
			out[p] = true
		}
	}
	return out
}

// PartitionCoverage is the refill measure: of the partitions the ring gives the device that
// some other replica holder has data for (Expected), how many the device has (Have).
type PartitionCoverage struct {
	Assigned, Expected, Have int
}

// CoverPartitions compares the device's partition directories with its peers'.
func CoverPartitions(assigned map[int][]int, mine map[int]bool, peers map[int]map[int]bool) PartitionCoverage {
	c := PartitionCoverage{Assigned: len(assigned)}
	for p, others := range assigned {
		held := false
		for _, d := range others {
			held = held || peers[d][p]
		}
		if !held {
			continue
		}
		c.Expected++
		if mine[p] {
			c.Have++
		}
	}
	return c
}
