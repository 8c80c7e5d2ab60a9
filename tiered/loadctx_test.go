package tiered_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/synspirit/tiercache/internal/redistest"
	"github.com/synspirit/tiercache/tiered"
)

type loaderCtxKey struct{}

// A loader sees its caller's values (in a nested GetOrLoad too), its panic is an error, and its context
// ends when it returns, whether the caller's context can end or not.
func TestLoaderContextKeepsValuesAndEndsWithTheLoader(t *testing.T) {
	s := redistest.Start(t)
	c := newCache(t, s)
	g := tiered.NewGroup[string](c, "g", time.Minute)
	ctx := context.WithValue(context.Background(), loaderCtxKey{}, "span")

	// values reach the loader; a recursive GetOrLoad of another key under the loader's ctx
	v, err := g.GetOrLoad(ctx, "a", func(lctx context.Context) (string, error) {
		assert.Equal(t, "span", lctx.Value(loaderCtxKey{}))
		inner, err := g.GetOrLoad(lctx, "b", func(l2 context.Context) (string, error) {
			assert.Equal(t, "span", l2.Value(loaderCtxKey{}))
			return "B", nil
		})
		return "A" + inner, err
	})
	require.NoError(t, err)
	assert.Equal(t, "AB", v)

	// panic
	_, err = g.GetOrLoad(context.Background(), "p", func(context.Context) (string, error) { panic("boom") })
	var pe *tiered.PanicError
	require.True(t, errors.As(err, &pe), "%v", err)

	// the loader's context ends with the load (as with a cancellable caller)
	for _, cctx := range []context.Context{context.Background(), ctx} {
		ended := make(chan struct{})
		_, err = g.GetOrLoad(cctx, "x"+time.Now().String(), func(lctx context.Context) (string, error) {
			context.AfterFunc(lctx, func() { close(ended) })
			return "x", nil
		})
		require.NoError(t, err)
		select {
		case <-ended:
		case <-time.After(time.Second):
			t.Errorf("loader's context still live after GetOrLoad returned")
		}
	}
}
