// Package bus is the invalidation bus of tiercache: it tells every other instance of a service,
// over one Redis pub/sub channel, which in-process (L1) cache entries to drop.
//
// # Publishing
//
// Publish hands a Message (keys, group names, or "flush everything") to the bus's one sender
// goroutine and waits for it to reach Redis. The sender works as a group commit: when it is
// idle a message goes out at once, with no timer delay; messages published while a PUBLISH is
// in flight are merged into the next one (keys and groups de-duplicated, FlushAll OR-ed), cut
// into several at MaxBatchKeys keys or MaxBatchBytes bytes. Each PUBLISH has a deadline
// (Options.PublishTimeout). On a Redis Cluster client the bus uses sharded pub/sub
// (SPUBLISH/SSUBSCRIBE), so the channel lives on one shard.
//
// # Wire format
//
// A message is a compact binary payload, version 1:
//
//	magic   "tcb" (3 bytes)
//	version 0x01
//	origin  uvarint length + bytes (1..MaxOriginLen): the sender's instance id
//	seq     uvarint: the sender's batch sequence number, from 1
//	flags   1 byte; bit 0 = FlushAll, other bits must be 0
//	nkeys   uvarint
//	ngroups uvarint
//	keys    nkeys times: uvarint length + bytes
//	groups  ngroups times: uvarint length + bytes
//
// Nothing may follow. Decode checks every length and count against the bytes that remain
// before allocating, and refuses payloads over MaxMessageSize, so garbage on the channel costs
// at most its own size; it is counted in Stats.Malformed and dropped. A future format gets a
// new version byte; this version rejects it as malformed rather than guess.
//
// # The reset contract
//
// Redis pub/sub is fire-and-forget: whatever is published while a subscriber is disconnected
// is lost to it. The bus therefore counts the server's subscribe confirmations. The first one
// completes New; every later one (after CLIENT KILL, a Redis restart, a network failure, or a
// resubscribe after any error) calls Options.OnReset, before any message of the new
// subscription is delivered. A receiver that drops its whole L1 in OnReset never serves an
// entry whose invalidation it missed. A reset can be spurious (no message was in fact lost),
// never missing.
//
// The subscription uses a dedicated connection of the client, discarded and replaced from
// scratch on any error, rather than Client.Receive: with RESP2, rueidis keeps subscriptions on
// a side connection that is not replaced when only it is killed, and Receive then retries
// against the dead connection forever.
package bus
