package activities

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"
)

// NovaDB reads the Nova (cell) database and, for volume attachments, the Cinder database, through
// go-sql-driver/mysql with read-only accounts. The worker opens the pools lazily (sql.Open does
// not connect); nil means not configured. RW is the only writable pool, used by nothing but the
// gated database-rewrite fallback of recover-host.
type NovaDB struct {
	DB     *sql.DB // nova (cell) database: databases.nova_dsn
	Cinder *sql.DB // cinder database: databases.cinder_dsn
	RW     *sql.DB // nova (cell) database, writable: databases.nova_rw_dsn
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

// InstanceRewrite is one row of the database-rewrite fallback: the instance's host and node in
// the Nova database, from what they are to what they become.
type InstanceRewrite struct {
	ID       string `json:"id"`
	FromHost string `json:"from_host"`
	FromNode string `json:"from_node,omitempty"`
	ToHost   string `json:"to_host"`
	ToNode   string `json:"to_node,omitempty"`
}

// RewriteResult is the outcome of one guarded rewrite.
type RewriteResult struct {
	ID           string `json:"id"`
	RowsAffected int64  `json:"rows_affected"`
	// Already: no row changed because the row already had the new host and node (a retry).
	Already bool `json:"already,omitempty"`
}

// DBRewritePlan fills in, for each wanted rewrite (ID, FromHost = the dead host, ToHost), the
// instance's current node and the target's node (compute_nodes.hypervisor_hostname), read through
// the read-only account. It refuses an instance that is not (or no longer) on FromHost in the
// database, and a target with no compute node or several (the fallback handles one node per host).
func (n *NovaDB) DBRewritePlan(ctx context.Context, want []InstanceRewrite) ([]InstanceRewrite, error) {
	db, err := n.nova()
	if err != nil {
		return nil, err
	}
	nodes := map[string]string{}
	out := make([]InstanceRewrite, 0, len(want))
	for _, w := range want {
		var host, node sql.NullString
		err := db.QueryRowContext(ctx, "SELECT host, node FROM instances WHERE uuid = ? AND deleted = 0", w.ID).Scan(&host, &node)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("instance %s is not in the Nova database (deleted?)", w.ID), ErrTypeRefused, nil)
		}
		if err != nil {
			return nil, fmt.Errorf("nova database: instance %s: %w", w.ID, err)
		}
		if host.String != w.FromHost {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("instance %s is on %q in the Nova database, not on %s: not rewriting it", w.ID, host.String, w.FromHost), ErrTypeRefused, nil)
		}
		if _, ok := nodes[w.ToHost]; !ok {
			rows, err := db.QueryContext(ctx, "SELECT hypervisor_hostname FROM compute_nodes WHERE host = ? AND deleted = 0", w.ToHost)
			if err != nil {
				return nil, fmt.Errorf("nova database: compute nodes of %s: %w", w.ToHost, err)
			}
			var names []string
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					rows.Close()
					return nil, fmt.Errorf("nova database: %w", err)
				}
				names = append(names, s)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
			if len(names) != 1 {
				return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("host %s has %d compute node(s) in the Nova database %v: the rewrite needs exactly one", w.ToHost, len(names), names), ErrTypeRefused, nil)
			}
			nodes[w.ToHost] = names[0]
		}
		w.FromNode, w.ToNode = node.String, nodes[w.ToHost]
		out = append(out, w)
	}
	return out, nil
}

// DBRewriteInstanceHost rewrites one instance's host and node in the Nova database through the
// writable account (databases.nova_rw_dsn), in a transaction, guarded by the row still being on
// the source: UPDATE instances SET host, node WHERE uuid = ? AND host = <from> AND deleted = 0.
// It is idempotent: when no row changes because the row already has the new host and node (a
// retry after a lost answer), it reports RowsAffected 0 and Already; a row that is on some third
// host is refused.
func (n *NovaDB) DBRewriteInstanceHost(ctx context.Context, rw InstanceRewrite) (RewriteResult, error) {
	if n == nil || n.RW == nil {
		return RewriteResult{}, temporal.NewNonRetryableApplicationError("the writable Nova database (databases.nova_rw_dsn) is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	if rw.ID == "" || rw.FromHost == "" || rw.ToHost == "" || rw.ToNode == "" || rw.FromHost == rw.ToHost {
		return RewriteResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("incomplete rewrite %+v", rw), ErrTypeInvalidInput, nil)
	}
	res := RewriteResult{ID: rw.ID}
	tx, err := n.RW.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("nova database (rw): begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	r, err := tx.ExecContext(ctx, "UPDATE instances SET host = ?, node = ?, updated_at = UTC_TIMESTAMP() WHERE uuid = ? AND host = ? AND deleted = 0",
		rw.ToHost, rw.ToNode, rw.ID, rw.FromHost)
	if err != nil {
		return res, fmt.Errorf("nova database (rw): rewrite %s: %w", rw.ID, err)
	}
	if res.RowsAffected, err = r.RowsAffected(); err != nil {
		return res, fmt.Errorf("nova database (rw): rewrite %s: %w", rw.ID, err)
	}
	if res.RowsAffected > 1 {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("rewrite of %s would change %d rows: rolled back", rw.ID, res.RowsAffected), ErrTypeRefused, nil)
	}
	if res.RowsAffected == 0 {
		var host, node sql.NullString
		err := tx.QueryRowContext(ctx, "SELECT host, node FROM instances WHERE uuid = ? AND deleted = 0", rw.ID).Scan(&host, &node)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("instance %s is not in the Nova database (deleted?)", rw.ID), ErrTypeRefused, nil)
		case err != nil:
			return res, fmt.Errorf("nova database (rw): instance %s: %w", rw.ID, err)
		case host.String == rw.ToHost && node.String == rw.ToNode:
			res.Already = true
		default:
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("instance %s is on %q (node %q) in the Nova database, neither %s nor %s: not rewriting it", rw.ID, host.String, node.String, rw.FromHost, rw.ToHost), ErrTypeRefused, nil)
		}
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("nova database (rw): commit: %w", err)
	}
	return res, nil
}
