package main

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Instances started together on a new file all come up: one seeds, the others find the rows.
func TestStoresOpeningANewFileTogether(t *testing.T) {
	for round := range 20 {
		path := filepath.Join(t.TempDir(), "site.db")
		var wg sync.WaitGroup
		seeded := make([]bool, 4)
		errs := make([]error, 4)
		for i := range 4 {
			wg.Go(func() {
				s, err := openStore(path)
				if err != nil {
					errs[i] = err
					return
				}
				defer s.Close()
				seeded[i], errs[i] = s.migrate(context.Background())
			})
		}
		wg.Wait()
		n := 0
		for i := range 4 {
			require.NoError(t, errs[i], "round %d, store %d", round, i)
			if seeded[i] {
				n++
			}
		}
		require.Equal(t, 1, n, "round %d: one store seeds", round)
	}
}
