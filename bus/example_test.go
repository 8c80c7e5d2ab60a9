package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/rueidis"

	"github.com/synspirit/tiercache/bus"
)

func Example() {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := bus.New(ctx, client, bus.Options{
		Channel: "synspirit:invalidate",
		OnMessage: func(m bus.Message) {
			// Drop m.Keys, m.Groups (or everything if m.FlushAll) from the local cache.
		},
		OnReset: func() {
			// Messages may have been lost: drop the whole local cache.
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close() // before client.Close

	err = b.Publish(ctx, bus.Message{Keys: []string{"synspirit:data:articles:list:1"}})
	if err != nil {
		log.Print(err) // the other instances may keep a stale entry until its L1 TTL
	}
}

// The wire format is versioned and binary; Decode refuses anything that is not a message.
func ExampleEncode() {
	wire := bus.Encode(bus.Message{Origin: "a1", Seq: 7, Keys: []string{"synspirit:data:articles:7"}, Groups: []string{"data:articles:list"}})
	m, err := bus.Decode(wire)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Origin, m.Seq, m.Keys, m.Groups, m.FlushAll)
	_, err = bus.Decode([]byte("hello"))
	fmt.Println(errors.Is(err, bus.ErrMalformed))
	// Output:
	// a1 7 [synspirit:data:articles:7] [data:articles:list] false
	// true
}
