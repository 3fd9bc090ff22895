package openstack

import (
	"context"
	"fmt"
	"strconv"

	"github.com/gophercloud/gophercloud/v2"
)

// AccountStat is the usage of the Swift account of the credentials' project.
type AccountStat struct {
	Containers int64
	Objects    int64
	BytesUsed  int64
}

// ObjectStoreAccountStat HEADs the Swift account.
func (c *Clients) ObjectStoreAccountStat(ctx context.Context) (AccountStat, error) {
	sc, err := c.need(c.ObjectStore, ServiceObjectStore)
	if err != nil {
		return AccountStat{}, err
	}
	// Swift answers HEAD on an account with 204 when it is empty and 200 otherwise (2.30 does);
	// gophercloud's accounts.Get accepts only 204, so ask directly and read the headers.
	resp, err := sc.Head(ctx, sc.ServiceURL(), &gophercloud.RequestOpts{OkCodes: []int{200, 204}})
	if err != nil {
		return AccountStat{}, fmt.Errorf("object-store account stat: %w", err)
	}
	num := func(h string) int64 {
		n, _ := strconv.ParseInt(resp.Header.Get(h), 10, 64)
		return n
	}
	return AccountStat{Containers: num("X-Account-Container-Count"), Objects: num("X-Account-Object-Count"), BytesUsed: num("X-Account-Bytes-Used")}, nil
}
