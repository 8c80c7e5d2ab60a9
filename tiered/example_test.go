package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/synspirit/tiercache/tiered"
)

type Article struct {
	ID    int
	Title string
}

func loadArticles(ctx context.Context, page, perPage int) ([]Article, error) {
	return []Article{{ID: 1, Title: "hello"}}, nil
}

// The Data API: a typed group with a loader, the original @cached(prefix, ttl).
func Example() {
	ctx := context.Background()
	c, err := tiered.New(ctx, tiered.Options{RedisURL: "redis://localhost:6379/0", KeyPrefix: "synspirit:"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	articles := tiered.NewGroup[[]Article](c, "data:articles:list", 5*time.Minute)
	page, perPage := 1, 20
	key := articles.Key(page, perPage)
	list, err := articles.GetOrLoad(ctx, key, func(ctx context.Context) ([]Article, error) {
		return loadArticles(ctx, page, perPage)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(list), "articles")

	// After the database changes: drop the cached page on every instance.
	_ = articles.Delete(ctx, key)
}

func ExampleGroup_Get() {
	ctx := context.Background()
	c, err := tiered.NewFromEnv(ctx) // REDIS_URL, CACHE_KEY_PREFIX, CACHE_DEFAULT_TIMEOUT
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	profiles := tiered.NewGroup[map[string]string](c, "user:profile", 10*time.Minute)
	p, err := profiles.Get(ctx, "456")
	switch {
	case errors.Is(err, tiered.ErrNotFound):
		fmt.Println("not cached")
	case errors.Is(err, tiered.ErrUnavailable):
		fmt.Println("redis is down")
	case err == nil:
		fmt.Println(p["name"])
	}
}

func ExampleStatsHandler() {
	c, err := tiered.New(context.Background(), tiered.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	http.Handle("/api/cache-stats", tiered.StatsHandler(c))
}

// A service that must come up even while Redis is down (a restart during an outage): New
// succeeds, GetOrLoad answers from the loader, and the cache connects when Redis answers.
func ExampleOptions_startWithoutRedis() {
	ctx := context.Background()
	c, err := tiered.New(ctx, tiered.Options{
		RedisURL:          "redis://localhost:6379/0",
		KeyPrefix:         "synspirit:",
		StartWithoutRedis: true,
	})
	if err != nil {
		fmt.Println(err) // bad options, bad credentials or a certificate error: not an outage
		return
	}
	defer c.Close()

	articles := tiered.NewGroup[[]Article](c, "data:articles:list", 5*time.Minute)
	list, err := articles.GetOrLoad(ctx, articles.Key(1, 20), func(ctx context.Context) ([]Article, error) {
		return loadArticles(ctx, 1, 20) // Redis down: every call lands here, L1 stays off
	})
	fmt.Println(len(list), err)
}

// Keys are stable hashes of their arguments, the same in every process: here page 1 of 10.
func ExampleMakeKey() {
	key, err := tiered.MakeKey(1, 10)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(key)
	// Output: 7f39a37c0116c0e37c1e0cf375ec5050
}

// The original design's URL forms: ?ssl=true is TLS, several hosts are a cluster.
func ExampleParseRedisURL() {
	for _, u := range []string{
		"redis://localhost:6379/2",
		"redis://cache.internal:6380/0?ssl=true",
		"redis://a:7000,b:7001,c:7002",
	} {
		opt, err := tiered.ParseRedisURL(u)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(opt.InitAddress, "db", opt.SelectDB, "tls", opt.TLSConfig != nil)
	}
	// Output:
	// [localhost:6379] db 2 tls false
	// [cache.internal:6380] db 0 tls true
	// [a:7000 b:7001 c:7002] db 0 tls false
}

// A value too large for its group is refused before anything is sent to Redis.
func ExampleErrTooLarge() {
	err := fmt.Errorf("tiered: set images:k: %w", tiered.ErrTooLarge)
	fmt.Println(errors.Is(err, tiered.ErrTooLarge))
	// Output: true
}

// A list page and the articles it shows carry the tag of each article; an edit of one
// article drops it and every page that shows it, on every instance, and no other page.
func ExampleCache_InvalidateTags() {
	ctx := context.Background()
	c, err := tiered.New(ctx, tiered.Options{RedisURL: "redis://localhost:6379/0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	articles := tiered.NewGroup[Article](c, "data:article", 5*time.Minute)
	pages := tiered.NewGroup[[]Article](c, "data:articles:list", 5*time.Minute)

	a, err := articles.GetOrLoad(ctx, "7", func(ctx context.Context) (Article, error) {
		return Article{ID: 7, Title: "hello"}, nil
	}, tiered.Tags("article:7"))
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = pages.GetOrLoad(ctx, pages.Key(1, 20), func(ctx context.Context) ([]Article, error) {
		// The tags are known once the page's IDs are: add them before reading the articles.
		tiered.AddTags(ctx, "article:7")
		return []Article{a}, nil
	})

	// After the database update of article 7:
	if err := c.InvalidateTags(ctx, "article:7"); err != nil {
		fmt.Println(err) // the update stands; the tagged values live until their TTL
	}
}

// A page of rows by ID: L1, then one pipeline per Redis node, then one query for the rest.
func ExampleGroup_GetOrLoadMany() {
	ctx := context.Background()
	c, err := tiered.New(ctx, tiered.Options{RedisURL: "redis://localhost:6379/0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	users := tiered.NewGroup[string](c, "user:name", 10*time.Minute, tiered.WithNotFoundTTL(time.Minute))
	names, err := users.GetOrLoadMany(ctx, []string{"1", "2", "404"}, func(ctx context.Context, missing []string) (map[string]string, error) {
		found := map[string]string{}
		for _, id := range missing {
			if id != "404" { // SELECT id, name FROM users WHERE id IN (...)
				found[id] = "user " + id
			}
		}
		return found, nil // "404" is left out: a miss, cached for a minute
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(names), "users")
}
