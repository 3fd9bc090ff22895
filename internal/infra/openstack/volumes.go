package openstack

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
)

// What the staged upgrade's Cinder smoke test needs: a volume created in the caller's project and
// deleted again (ListVolumes and GetVolume are in views.go).

// CreateVolume creates an empty volume of sizeGiB in the caller's project (the default type).
func (c *Clients) CreateVolume(ctx context.Context, name string, sizeGiB int) (Volume, error) {
	sc, err := c.need(c.BlockStorage, ServiceBlockStorage)
	if err != nil {
		return Volume{}, err
	}
	v, err := volumes.Create(ctx, sc, volumes.CreateOpts{Name: name, Size: sizeGiB}, nil).Extract()
	if err != nil {
		return Volume{}, fmt.Errorf("create volume %s: %w", name, err)
	}
	return volumeFrom(*v), nil
}

// DeleteVolume deletes a volume (asynchronous in Cinder: GetVolume answers 404 once it is gone).
func (c *Clients) DeleteVolume(ctx context.Context, id string) error {
	sc, err := c.need(c.BlockStorage, ServiceBlockStorage)
	if err != nil {
		return err
	}
	if err := volumes.Delete(ctx, sc, id, nil).ExtractErr(); err != nil {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	return nil
}
