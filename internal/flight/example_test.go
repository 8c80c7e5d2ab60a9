package flight_test

import (
	"context"
	"fmt"

	"github.com/synspirit/tiercache/internal/flight"
	"github.com/synspirit/tiercache/internal/lifetime"
)

func ExampleGroup() {
	life := lifetime.New()
	defer life.Close() // cancels loads in flight and waits for them

	g := flight.New[string](life)
	v, err := g.Do(context.Background(), "user:1", func(ctx context.Context) (string, error) {
		return "Ada", nil // concurrent callers of "user:1" share this one load
	})
	fmt.Println(v, err)

	_, err = g.Do(context.Background(), "user:2", func(ctx context.Context) (string, error) {
		panic("no such user")
	})
	fmt.Println(err)
	// Output:
	// Ada <nil>
	// loader panicked: no such user
}
