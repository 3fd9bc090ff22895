package openstack

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2/pagination"
)

// listAll is the one List → AllPages → Extract of the package: every page of pager, extracted,
// with errors that say what was listed. Each List* helper is this plus a conversion to the
// package's plain struct.
func listAll[T any](ctx context.Context, what string, pager pagination.Pager, extract func(pagination.Page) ([]T, error)) ([]T, error) {
	pages, err := pager.AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	list, err := extract(pages)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return list, nil
}

// convert maps every element of in through f.
func convert[T, U any](in []T, f func(T) U) []U {
	out := make([]U, 0, len(in))
	for _, v := range in {
		out = append(out, f(v))
	}
	return out
}
