package activities

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"
)

// NovaDB reads the Nova (cell) database and, for volume attachments, the Cinder database, through
// go-sql-driver/mysql with read-only accounts. The worker opens the pools lazily (sql.Open does
// not connect); nil means not configured.
type NovaDB struct {
	DB     *sql.DB // nova (cell) database: databases.nova_dsn
	Cinder *sql.DB // cinder database: databases.cinder_dsn
}

// VolumeAttachment is one volume attached to an instance of a host: the Nova block device
// mapping joined with Cinder's view of the volume.
type VolumeAttachment struct {
	InstanceID string `json:"instance_id"`
	VolumeID   string `json:"volume_id"`
	Device     string `json:"device,omitempty"`
	// Cinder's view; empty when the volume is not in the Cinder database.
	Status       string `json:"status,omitempty"`
	AttachStatus string `json:"attach_status,omitempty"`
	AttachedHost string `json:"attached_host,omitempty"`
	Problem      string `json:"problem,omitempty"`
}

func (n *NovaDB) nova() (*sql.DB, error) {
	if n == nil || n.DB == nil {
		return nil, temporal.NewNonRetryableApplicationError("the Nova database (databases.nova_dsn) is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	return n.DB, nil
}

// DBInstancesOnHost returns the UUIDs of the non-deleted instances the Nova database places on host:
// select uuid from instances where host = ? and deleted = 0.
func (n *NovaDB) DBInstancesOnHost(ctx context.Context, host string) ([]string, error) {
	db, err := n.nova()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, "SELECT uuid FROM instances WHERE host = ? AND deleted = 0 ORDER BY uuid", host)
	if err != nil {
		return nil, fmt.Errorf("nova database: instances on %s: %w", host, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("nova database: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// DBVolumeAttachments lists the volumes attached to the instances on host (Nova's
// block_device_mapping joined with its instances) and joins Cinder's volumes table to say what
// Cinder thinks of each; an attachment Cinder does not see as in-use on that instance has a
// Problem.
func (n *NovaDB) DBVolumeAttachments(ctx context.Context, host string) ([]VolumeAttachment, error) {
	db, err := n.nova()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT b.instance_uuid, b.volume_id, COALESCE(b.device_name, '')
		FROM block_device_mapping b JOIN instances i ON i.uuid = b.instance_uuid
		WHERE i.host = ? AND i.deleted = 0 AND b.deleted = 0 AND b.destination_type = 'volume' AND b.volume_id IS NOT NULL
		ORDER BY b.instance_uuid, b.volume_id`, host)
	if err != nil {
		return nil, fmt.Errorf("nova database: volume attachments on %s: %w", host, err)
	}
	var out []VolumeAttachment
	for rows.Next() {
		var a VolumeAttachment
		if err := rows.Scan(&a.InstanceID, &a.VolumeID, &a.Device); err != nil {
			rows.Close()
			return nil, fmt.Errorf("nova database: %w", err)
		}
		out = append(out, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return []VolumeAttachment{}, nil
	}
	if n.Cinder == nil {
		for i := range out {
			out[i].Problem = "Cinder database not configured (databases.cinder_dsn): attachment not checked"
		}
		return out, nil
	}
	ids := make([]any, 0, len(out))
	for _, a := range out {
		ids = append(ids, a.VolumeID)
	}
	q := `SELECT v.id, v.status, COALESCE(v.attach_status, ''), COALESCE(a.instance_uuid, ''), COALESCE(a.attached_host, '')
		FROM volumes v LEFT JOIN volume_attachment a ON a.volume_id = v.id AND a.deleted = 0
		WHERE v.deleted = 0 AND v.id IN (?` + strings.Repeat(",?", len(ids)-1) + `)`
	crow, err := n.Cinder.QueryContext(ctx, q, ids...)
	if err != nil {
		return nil, fmt.Errorf("cinder database: volumes: %w", err)
	}
	defer crow.Close()
	type cv struct{ status, attach, instance, host string }
	seen := map[string][]cv{}
	for crow.Next() {
		var id string
		var v cv
		if err := crow.Scan(&id, &v.status, &v.attach, &v.instance, &v.host); err != nil {
			return nil, fmt.Errorf("cinder database: %w", err)
		}
		seen[id] = append(seen[id], v)
	}
	if err := crow.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		a := &out[i]
		vs, ok := seen[a.VolumeID]
		if !ok {
			a.Problem = "volume not found in Cinder"
			continue
		}
		a.Status, a.AttachStatus = vs[0].status, vs[0].attach
		idx := slices.IndexFunc(vs, func(v cv) bool { return v.instance == a.InstanceID })
		switch {
		case idx < 0:
			a.Problem = "Cinder has no attachment of this volume to the instance"
		case vs[idx].status != "in-use":
			a.AttachedHost = vs[idx].host
			a.Problem = fmt.Sprintf("Cinder says the volume is %s", vs[idx].status)
		default:
			a.AttachedHost = vs[idx].host
		}
	}
	return out, nil
}
