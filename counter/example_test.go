package counter_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"

	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/counter"
)

// Persistent counters: Redis holds the truth, and an increment creates a missing counter.
func ExampleCounters_Increment() {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	views := counter.New(client, counter.Options{KeyPrefix: "synspirit:"})
	key := counter.Key{Target: "article", ID: "123", Counter: "views"} // synspirit:count:article:123:views
	n, err := views.Increment(context.Background(), key, 1)
	if err != nil {
		log.Print(err) // a view that was not counted is not worth failing the page for
	}
	fmt.Println("views:", n)
}

// Cache mode, as in the original design: the like count lives in the database, Redis mirrors it
// for one minute. A like updates the database first, then the counter if it is cached; a page
// reads the counter, loading it from the database on a miss.
func ExampleCounters_GetOrLoad() {
	var db *sql.DB // the service's database
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	likes := counter.New(client, counter.Options{KeyPrefix: "synspirit:", TTL: counter.DefaultCacheTTL})
	key := counter.Key{Target: "article", ID: "123", Counter: "likes"}
	ctx := context.Background()

	like := func() error {
		if _, err := db.ExecContext(ctx, "UPDATE articles SET likes = likes + 1 WHERE id = 123"); err != nil {
			return err
		}
		_, err := likes.Increment(ctx, key, 1)
		if errors.Is(err, counter.ErrNotFound) {
			return nil // not cached: the next read loads the new count
		}
		return err
	}
	load := func(ctx context.Context) (n int64, err error) {
		err = db.QueryRowContext(ctx, "SELECT likes FROM articles WHERE id = 123").Scan(&n)
		return n, err
	}

	if err := like(); err != nil {
		log.Print(err)
	}
	n, err := likes.GetOrLoad(ctx, key, load)
	if err != nil {
		log.Print(err)
	}
	fmt.Println("likes:", n)
}

// A page of articles reads all its like counts in one round trip.
func ExampleCounters_GetMany() {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	likes := counter.New(client, counter.Options{KeyPrefix: "synspirit:"})
	ids := []string{"101", "102", "103"}
	keys := make([]counter.Key, len(ids))
	for i, id := range ids {
		keys[i] = counter.Key{Target: "article", ID: id, Counter: "likes"}
	}
	counts, err := likes.GetMany(context.Background(), keys)
	if err != nil {
		log.Print(err)
	}
	for _, k := range keys {
		fmt.Println(k.ID, counts[k]) // a missing counter reads as 0
	}
}

// A counter's key: target type, target id and counter name, escaped so that no two keys
// collide (a ':' inside a part is escaped).
func ExampleKey() {
	fmt.Println(counter.Key{Target: "article", ID: "123", Counter: "likes"})
	fmt.Println(counter.Key{Target: "user", ID: "a:b", Counter: "favourites"})
	// Output:
	// article:123:likes
	// user:a%3Ab:favourites
}
