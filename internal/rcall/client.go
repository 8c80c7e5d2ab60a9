package rcall

import "github.com/redis/rueidis"

// Client is a cache's rueidis client as the cache hands it out: the client itself, and the
// Caller through which packages built on it (counters, a bus) share the cache's breaker,
// deadline and lifetime. Close does nothing: the cache owns the client.
type Client struct {
	rueidis.Client
	caller *Caller
}

// Wrap returns client as a *Client carrying caller.
func Wrap(client rueidis.Client, caller *Caller) *Client {
	return &Client{Client: client, caller: caller}
}

// Close does nothing: the cache that handed the client out closes it.
func (c *Client) Close() {}

// CallerOf returns the Caller a *Client carries, or nil for any other client.
func CallerOf(client rueidis.Client) *Caller {
	if c, ok := client.(*Client); ok {
		return c.caller
	}
	return nil
}
