package activities

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// FileTransfer moves files over SFTP; *remote.Pool is the real one.
type FileTransfer interface {
	ReadFile(ctx context.Context, h remote.Host, remotePath string, limit int64) ([]byte, error)
	CopyFile(ctx context.Context, h remote.Host, src io.Reader, remotePath string, mode os.FileMode) (remote.FileSum, error)
	Checksum(ctx context.Context, h remote.Host, remotePath string) (remote.FileSum, error)
}

// Error types of the Swift activities (non-retryable: a person must look).
const (
	ErrTypeRingBuilder        = "RingBuilderError"
	ErrTypeRingChanged        = "RingChanged"
	ErrTypeRingNotSaved       = "RingNotSaved"
	ErrTypeReplicationTimeout = "ReplicationTimeout"
)

// Swift runs the Swift disk and ring activities: swift-ring-builder on the ring-builder host,
// disks on the storage nodes (catalogue commands over SSH) and ring files over SFTP.
type Swift struct {
	Hosts   *Hosts
	Files   FileTransfer
	Cluster SwiftCluster

	mu    sync.Mutex
	rings map[string][]byte // ring file contents by MD5, read once from the builder host
}

func (s *Swift) node(name string) (SwiftNodeInfo, error) {
	n, ok := s.Cluster.Nodes[name]
	if !ok {
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range s.Cluster.Nodes {
				if !yield(k) {
					return
				}
			}
		})
		return n, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("node %q is not a Swift node (swift.nodes: %s)", name, strings.Join(names, ", ")), ErrTypeNotFound, nil)
	}
	return n, nil
}

func (s *Swift) device(req DiskRequest) (SwiftNodeInfo, string, error) {
	n, err := s.node(req.Node)
	if err != nil {
		return n, "", err
	}
	p, ok := n.Devices[req.Device]
	if !ok {
		return n, "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s has no Swift device %q (swift.nodes.%s.devices)", req.Node, req.Device, req.Node), ErrTypeNotFound, nil)
	}
	return n, p, nil
}

func (s *Swift) role(host string) string {
	if inv, ok := s.Hosts.Inventory[host]; ok && len(inv.Roles) > 0 {
		return inv.Roles[0]
	}
	return ""
}

func (s *Swift) run(ctx context.Context, host, cmd string, args map[string]string) (remote.Result, error) {
	return s.Hosts.run(ctx, host, s.role(host), cmd, args)
}

func (s *Swift) remoteHost(name string) (remote.Host, error) {
	_, h, err := s.Hosts.lookup(name)
	return h, err
}

// nodeHost returns a Swift node and the host to reach it over SFTP.
func (s *Swift) nodeHost(name string) (SwiftNodeInfo, remote.Host, error) {
	n, err := s.node(name)
	if err != nil {
		return n, remote.Host{}, err
	}
	h, err := s.remoteHost(name)
	return n, h, err
}

func (s *Swift) builder(kind string) string { return path.Join(s.Cluster.BuilderDir, kind+".builder") }

func out(res remote.Result) string { return strings.TrimSpace(res.Stdout + "\n" + res.Stderr) }

// SwiftTopology returns the Swift configuration. It connects nowhere: runbooks check their
// input against it before any command runs.
func (s *Swift) SwiftTopology(ctx context.Context) (SwiftCluster, error) {
	if len(s.Cluster.Nodes) == 0 || s.Cluster.RingBuilderHost == "" {
		return SwiftCluster{}, temporal.NewNonRetryableApplicationError("no Swift cluster configured (swift.ring_builder_host, swift.nodes)", ErrTypeInvalidInput, nil)
	}
	return s.Cluster, nil
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// SortedNodes returns the cluster's node names, sorted.
func (c SwiftCluster) SortedNodes() []string {
	names := make([]string, 0, len(c.Nodes))
	//workflowcheck:ignore sorted below: workflows call this
	for k := range c.Nodes {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// StorageNodes returns the names of the nodes with devices, sorted.
func (c SwiftCluster) StorageNodes() []string {
	var names []string
	for _, k := range c.SortedNodes() {
		if len(c.Nodes[k].Devices) > 0 {
			names = append(names, k)
		}
	}
	return names
}
