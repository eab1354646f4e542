// Package channel implements global channels stored in Redis, as Pomelo 0.5's
// globalChannelService does for its servers: a named channel whose members
// belong to many servers (executors), where any server can push a message to
// every member. Each push reaches each server that has members in the channel
// exactly once, as one Delivery listing that server's members; the server then
// forwards the message to its own clients.
//
// # Model
//
// A member is an opaque id (a user, a session) attached to one server id
// (normally the executor id gear hands the process in GEAR_EXECUTOR_ID).
// Add, AddMany and Leave change membership; Members and MembersOn read it;
// Destroy drops a channel; Channels lists them. Push snapshots the members of
// every server in the channel and appends one entry per server to that
// server's inbox, a Redis stream. Serve runs a server: it reads its inbox
// with a consumer group (XREADGROUP), calls the handler, then acknowledges
// and deletes the entry (XACK + XDEL), so a server that restarts picks up
// pushes queued while it was down.
//
// # Liveness
//
// Serve keeps a lease key with a TTL (Options.MemberTTL) alive for its server
// id. Members of a server whose lease expired are removed: lazily when a read
// or a push meets them, and by a sweeper that one live Serve at a time runs
// every MemberTTL. Add grants a server without a lease an initial one of
// MemberTTL, so members can be added before the server starts serving. If a
// server's lease was lost (Redis restarted with no persistence, or the server
// was cut off longer than MemberTTL), Serve calls the OnLeaseLost callback so
// the application can add its members again.
//
// # Delivery guarantees
//
// Push returns an error when any server's inbox could not be written (for
// example while Redis is down); it never drops a message silently. Within one
// Serve, a push id is handed to the handler at most once, even when Redis
// hiccups between the handler and the acknowledgement or when a caller retries
// PushWithID with the same id. An entry whose handler ran but whose process
// died before the acknowledgement is handed again to the next Serve of the
// same server id, flagged Delivery.Redelivered (at-least-once across process
// crashes). docs/CHANNEL.md explains why streams and not pub/sub, and documents
// the key layout as the wire protocol for applications not written in Go.
//
// # Not for
//
// This package is not a message broker: inboxes are not meant to hold messages
// for long, there is no ordering between different pushers, and message
// payloads live in Redis memory until the receiving server acknowledges them.
// It does not deliver to the clients themselves (the server's handler does).
// Run exactly one Serve per server id at a time.
package channel
