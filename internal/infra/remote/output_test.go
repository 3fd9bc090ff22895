package remote_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
)

// Output cut at the limit is refused by Whole (typed, non-retryable); whole output is not.
func TestWholeRefusesCutOutput(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.17"))
	p := newPool(t, srv, func(o *remote.Options) { o.MaxOutputBytes = 1000 })
	h := hostOf("compute1", srv)
	ctx := context.Background()

	res, err := p.Run(ctx, h, build(t, "zeros", map[string]string{"count": "5000"}))
	require.NoError(t, err)
	err = res.Whole()
	require.ErrorIs(t, err, remote.ErrTruncated)
	var te *remote.TruncatedError
	require.True(t, errors.As(err, &te))
	assert.Equal(t, 1000, te.Stdout)
	assert.Equal(t, "compute1", te.Host)
	assert.Contains(t, err.Error(), "ssh.max_output_bytes")
	assert.Equal(t, remote.TypeTruncated, remote.ErrorType(err))
	assert.False(t, remote.Retryable(err), "the same command prints as much again")

	res, err = p.Run(ctx, h, remote.Command{Name: "err", Argv: []string{"sh", "-c", "head -c 3000 /dev/zero >&2; echo ok"}})
	require.NoError(t, err)
	assert.ErrorIs(t, res.Whole(), remote.ErrTruncated, "stderr cut: the answer is not whole either")

	res, err = p.Run(ctx, h, build(t, "zeros", map[string]string{"count": "1000"}))
	require.NoError(t, err)
	assert.NoError(t, res.Whole(), "exactly the limit is whole")
}
